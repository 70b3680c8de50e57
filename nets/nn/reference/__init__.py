"""The reference: every layer, the loss and the optimizers in their plainest correct form, to read first.

A layer is a plain object with `params` and `grads`, dicts in PyTorch's names and shapes ("weight", "bias"),
`forward(x, train=True) -> y`, which keeps what backward needs when train, and `backward(dy) -> dx`, which
sets `grads`. Each forward and backward fits on one screen, allocates what it returns, and takes `xp` (NumPy
or CuPy) from its input, so the same code runs on the CPU, on a GPU and on the strict CuPy stand-in.

Read in this order:
    layers.py    Linear, ReLU, Flatten
    conv.py      im2col as a loop over kernel offsets, col2im as its adjoint, Conv2d
    pooling.py   MaxPool2d, keeping the argmax of each window
    loss.py      softmax cross-entropy
    optim.py     SGD and Adam, one tensor at a time, with torch.optim's rules
    models.py    the MLP and the CNN: the stages of nets/nn/architecture.py as these layers, forward, loss and
                 backward (train.py --layers reference trains them); import it as nets.nn.reference.models
    init.py      how every builder draws the first weights

Nothing here imports the fast code it judges: the fast layers (nets/nn/layers, nets/nn/losses.py, nets/optim)
compute the same functions and borrow the helpers (init.py, conv.output_size, loss.check_logits_and_labels);
tests/test_reference.py holds them to these, and these to PyTorch. docs/reading.md walks from here to there.
"""

from nets.nn.reference.conv import Conv2d, col2im, im2col
from nets.nn.reference.layers import Flatten, Linear, ReLU
from nets.nn.reference.loss import softmax_cross_entropy
from nets.nn.reference.optim import SGD, Adam, build_reference_optimizer
from nets.nn.reference.pooling import MaxPool2d

__all__ = ["Adam", "Conv2d", "Flatten", "Linear", "MaxPool2d", "ReLU", "SGD", "build_reference_optimizer", "col2im",
           "im2col", "softmax_cross_entropy"]
