"""The networks: layers with hand-written gradients, losses, the MLP and the CNN, their parameter buffer."""
