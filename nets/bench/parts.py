"""Attribute what one real training step costs to its parts: each layer's forward and backward, the loss
head and the optimizer, by wrapping those calls on a live engine (nets/train/engine.py) while steps run.

    with attributed(engine, wrap) as parts:   # wrap(function, key) -> a function with the same behaviour
        engine.train_step(x, labels)
    parts                                     # [(part, pass)] in step order: ("conv1", "forward"), ...

Used by the launch counts (launches.py) and by the profile of a step's times (profile.py).
"""

from __future__ import annotations

import contextlib


class _WrappedHead:
    """A loss head whose call goes through `wrap`; everything else is the head's own."""

    def __init__(self, head, call):
        self._head, self._call = head, call

    def __call__(self, logits, labels):
        return self._call(logits, labels)

    def __getattr__(self, name):
        return getattr(self._head, name)


@contextlib.contextmanager
def attributed(engine, wrap):
    """Route the step's parts through wrap(function, (part, pass)) inside the block; yields the part keys."""
    model, optimizer = engine.model, engine.optimizer
    parts = [(name, "forward") for name, _ in model.layers] + [("loss", "forward")]
    parts += [(name, "backward") for name, _ in reversed(model.layers)] + [("optimizer", "backward")]
    for name, layer in model.layers:
        layer.forward = wrap(layer.forward, (name, "forward"))
        layer.backward = wrap(layer.backward, (name, "backward"))
    head = engine.head
    engine.head = _WrappedHead(head, wrap(head, ("loss", "forward")))
    optimizer.step = wrap(optimizer.step, ("optimizer", "backward"))
    try:
        yield parts
    finally:
        for _, layer in model.layers:
            del layer.forward, layer.backward
        engine.head = head
        del optimizer.step


def timer(clock, times: dict):
    """A `wrap` for `attributed` that appends each call's seconds, read by clock() around it, to times[key]."""
    def wrap(function, key):
        def timed(*args, **kwargs):
            start = clock()
            result = function(*args, **kwargs)
            times.setdefault(key, []).append(clock() - start)
            return result
        return timed
    return wrap
