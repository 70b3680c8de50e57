"""The arithmetic floor: the model's conv and linear layers as GEMMs, their FLOPs, and the device's GEMM rate."""

from __future__ import annotations

import math
import time

import numpy

from nets.baseline import torch_or_none


def layer_gemms(model_name: str, input_shape) -> list[dict]:
    """The conv and linear layers of the model as GEMMs per sample: [{name, m, k, n}], m per image.

    A linear layer is (1 x in) @ (in x out); a convolution, via im2col, (OH*OW x C*KH*KW) @ (C*KH*KW x F).
    Shapes come from the PyTorch model of the same architecture (forward hooks on one image), which is the
    only model whose layers say their output sizes in a standard way.
    """
    torch = torch_or_none()
    if torch is None:
        return []
    from nets.baseline.models import build_torch_model

    model = build_torch_model(model_name)
    gemms = []

    def hook(module, inputs, output):
        name = module_names[module]
        if isinstance(module, torch.nn.Linear):
            gemms.append({"name": name, "m": 1, "k": module.in_features, "n": module.out_features})
        elif isinstance(module, torch.nn.Conv2d):
            out_h, out_w = output.shape[-2:]
            kernel = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            gemms.append({"name": name, "m": out_h * out_w, "k": kernel, "n": module.out_channels})

    module_names = {module: name for name, module in model.named_modules()}
    handles = [
        module.register_forward_hook(hook)
        for module in model.modules()
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))
    ]
    with torch.no_grad():
        model(torch.zeros((1, *input_shape), dtype=torch.float32))
    for handle in handles:
        handle.remove()
    return gemms


def train_step_gemm_shapes(gemms, batch_size: int) -> list[tuple[int, int, int]]:
    """(M, K, N) of every matmul in one training step: forward, weight gradient, input gradient per layer.

    The first layer has no input gradient (nobody needs the gradient of the images), so it has two.
    """
    shapes = []
    for position, gemm in enumerate(gemms):
        m, k, n = gemm["m"] * batch_size, gemm["k"], gemm["n"]
        shapes += [(m, k, n), (k, m, n)] + ([(m, n, k)] if position > 0 else [])
    return shapes


def train_flops_per_image(gemms) -> int:
    """Training FLOPs per image: forward 2*MACs, backward twice that (weight and input gradients),
    less the first layer's input gradient. Bias, activation, pooling and Adam FLOPs are left out."""
    return sum(2 * m * k * n for m, k, n in train_step_gemm_shapes(gemms, 1))


def gemm_gflops(backend, shapes, repeats: int) -> float:
    """float32 GFLOP/s of `backend` over the given (M, K, N) matmuls: the best of at least 5 samples.

    The best, not the median: the floor is the fastest these GEMMs can go, and on a shared machine
    the slower samples measure the neighbours.
    """
    xp = backend.xp
    rng = numpy.random.default_rng(0)
    operands = []
    for m, k, n in shapes:
        a = backend.asarray(rng.standard_normal((m, k), dtype=numpy.float32))
        b = backend.asarray(rng.standard_normal((k, n), dtype=numpy.float32))
        operands.append((a, b, xp.empty((m, n), dtype=xp.float32)))
    flops = sum(2 * m * k * n for m, k, n in shapes)

    def one_pass():
        for a, b, out in operands:
            xp.matmul(a, b, out=out)

    one_pass()  # warm-up: BLAS threads, cuBLAS handles and kernels
    backend.synchronize()
    start = time.perf_counter()
    one_pass()
    backend.synchronize()
    first = time.perf_counter() - start
    passes = max(1, math.ceil(0.02 / max(first, 1e-7)))  # a timed sample of at least ~20 ms
    times = []
    for _ in range(max(5, repeats)):
        backend.synchronize()
        start = time.perf_counter()
        for _ in range(passes):
            one_pass()
        backend.synchronize()
        times.append((time.perf_counter() - start) / passes)
    return flops / min(times) / 1e9
