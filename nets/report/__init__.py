"""Results out: accuracy, per-class accuracy and confusion matrices, and the plots."""
