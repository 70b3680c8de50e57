"""Softmax cross-entropy on integer labels: the training step's lean head, beside the reference function.

    loss, dlogits = softmax_cross_entropy(logits, labels)     # the reference (nets/nn/reference/loss.py)
    head = SoftmaxCrossEntropy(classes=10)                    # what a training step runs (nets/train/engine.py)
    dlogits = head(logits, labels)                            # and the batch's loss and hits are totalled
    loss_sum, hits = head.totals()                            # on the device, read here in one sync

Both compute the mean loss over the batch and dlogits = (softmax(logits) - onehot(labels)) / N with
log-sum-exp around the row maximum, so large logits neither overflow nor lose precision.
"""

from __future__ import annotations

import numpy

from backend import array_module, gemm

from nets.nn.reference.loss import check_logits_and_labels, softmax_cross_entropy

__all__ = ["SoftmaxCrossEntropy", "softmax_cross_entropy"]

# workspaces (batch sizes) whose totals one head keeps; a run uses two (its batch size and the last batch)
MAX_WORKSPACES = 16


class SoftmaxCrossEntropy:
    """The loss head of a training step: dlogits into a buffer it keeps, and running totals on the device.

    For a batch of N rows and K classes, in 12 kernel launches and no host sync (nothing but matrix
    products, gathers and elementwise passes, so it runs the same on NumPy):

        shifted = logits - rowmax;  e = exp(shifted);  S = e @ W               W (K, 2): every row [N, 1]
                                                                                S[:, 0] = N * sum_e, S[:, 1] = sum_e
        dlogits = e / (N * sum_e) + take(-eye / N, labels)                      (softmax - onehot) / N
        M = [[shifted, log(sum_e)], [take(N * eye, argmax), 0]]                 (2, N*K + N)
        u = [take(-eye / N, labels), 1 / N]                                     (N*K + N,)
        totals += M @ u = [mean loss, -hits]

    The products do the reductions: M @ u weighs each sample's picked logit and log-sum-exp by 1 / N and
    counts the rows whose argmax is their label, in one GEMM. Each batch size has its workspace (fixed
    buffers for every array, as a captured CUDA graph needs) and its row of the totals.
    Labels must lie in 0..classes-1; the training data is checked when it is loaded.
    """

    def __init__(self, classes: int):
        self.classes = int(classes)
        self._workspaces: dict = {}
        self._totals = None  # (MAX_WORKSPACES, 2) on the device: [sum of batch means, -hits] per batch size
        self._rows: list[int] = []  # the batch size of each totals row

    def _workspace(self, n, dtype, xp):
        key = (n, numpy.dtype(dtype), id(xp))
        space = self._workspaces.get(key)
        if space is not None:
            return space
        k = self.classes
        if self._totals is None or array_module(self._totals) is not xp:
            self._totals, self._rows = xp.zeros((MAX_WORKSPACES, 2), dtype=dtype), []
            self._workspaces.clear()
        if len(self._rows) == MAX_WORKSPACES:
            raise RuntimeError(f"a loss head keeps totals for at most {MAX_WORKSPACES} batch sizes.")
        eye = numpy.eye(k)
        host_u = numpy.zeros(n * k + n)
        host_u[n * k:] = 1.0 / n
        host_m = numpy.zeros((2, n * k + n))
        matrix, u = xp.asarray(host_m, dtype=dtype), xp.asarray(host_u, dtype=dtype)
        space = {
            "matrix": matrix, "u": u,
            "shifted": matrix[0, :n * k].reshape(n, k), "log_sum": matrix[0, n * k:],
            "hits": matrix[1, :n * k].reshape(n, k), "onehot": u[:n * k].reshape(n, k),
            "exp": xp.empty((n, k), dtype=dtype), "sums": xp.empty((n, 2), dtype=dtype),
            "weights": xp.asarray(numpy.tile([[float(n), 1.0]], (k, 1)), dtype=dtype),
            "minus_eye_over_n": xp.asarray(-eye / n, dtype=dtype), "eye_times_n": xp.asarray(eye * n, dtype=dtype),
            "stats": xp.empty(2, dtype=dtype), "totals": self._totals[len(self._rows)],
            "winners": xp.empty(n, dtype=numpy.int64), "rowmax": xp.empty((n, 1), dtype=dtype),
        }
        self._rows.append(n)
        self._workspaces[key] = space
        return space

    def __call__(self, logits, labels):
        """logits (N, K), labels (N,) int on the device -> dlogits (N, K), a buffer kept for this batch size."""
        xp = array_module(logits, labels)
        n = logits.shape[0]
        if logits.ndim != 2 or logits.shape[1] != self.classes or labels.shape != (n,):
            check_logits_and_labels(logits, labels)
            raise ValueError(f"this head takes (N, {self.classes}) logits, got {tuple(logits.shape)}.")
        space = self._workspace(n, logits.dtype, xp)
        shifted, exp, sums, onehot = space["shifted"], space["exp"], space["sums"], space["onehot"]
        # The row maxima over the middle axis of an (N, K, 1) view: CUB's segmented reduction takes only the last
        # axes of a C-contiguous array, so CuPy runs its own reduction kernel, straight into the workspace, at every
        # batch size (CUB would hand out a fresh array and copy it into out=, which a captured graph cannot hold).
        rowmax = space["rowmax"]
        xp.max(logits[:, :, None], axis=1, keepdims=True, out=rowmax[:, :, None])
        xp.subtract(logits, rowmax, out=shifted)
        xp.exp(shifted, out=exp)
        gemm(exp, space["weights"], sums)  # [N * sum_e, sum_e] per row
        xp.log(sums[:, 1], out=space["log_sum"])
        xp.take(space["minus_eye_over_n"], labels, axis=0, out=onehot)
        xp.divide(exp, sums[:, :1], out=exp)
        exp += onehot
        winners = logits.argmax(axis=1, out=space["winners"])  # CUB's argmax is a whole-array one: CuPy's own kernel
        xp.take(space["eye_times_n"], winners, axis=0, out=space["hits"])
        gemm(space["matrix"], space["u"], space["stats"])
        space["totals"] += space["stats"]
        return exp

    def totals(self) -> tuple[float, int]:
        """(sum of per-sample losses, correct predictions) since the last reset, read in one host sync."""
        if self._totals is None:
            return 0.0, 0
        from backend import to_numpy

        rows = to_numpy(self._totals).astype(numpy.float64)[:len(self._rows)]
        sizes = numpy.asarray(self._rows, dtype=numpy.float64)
        return float((rows[:, 0] * sizes).sum()), int(round(-float(rows[:, 1].sum())))

    def reset(self) -> None:
        """Start new totals (one memset)."""
        if self._totals is not None:
            self._totals.fill(0)
