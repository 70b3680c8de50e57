"""The networks: layers with hand-written gradients, losses, the MLP and the CNN, their parameter buffer, what a
model config describes (architecture.py), and inference over many images in batches (inference.py). reference/
holds every layer, the loss and the optimizers in their plainest form: read it first (docs/reading.md)."""
