"""Results out: accuracy, per-class accuracy and confusion matrices (evaluation.py), the plots (plots.py, curves.py,
figures.py), a run's files as the scripts meet them (runs.py: the newest checkpoint, the metrics of its run) and a
user's pictures through predict.py (pictures.py)."""
