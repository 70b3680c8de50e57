"""Run a script with one failure injected into the direct cuBLAS path of the strict stand-in, for the tests of
train.py's fall-back (tests/test_graph_cli.py):

    python tests/standin_faults.py STAGE scripts/train.py --device standin ...

STAGE is what fails, as it could on a GPU: "lookup" (CuPy's libcublas cannot be loaded: the ImportError CuPy's
`from cupy_backends.cuda.libs import cublas` raises), "create", "set-stream", "set-workspace" (cublasCreate_v2,
cublasSetStream_v2, cublasSetWorkspace_v2 return a bad status), "layout" (the operands of a product are refused
before any cuBLAS call, as backend/layout.py refuses a layout cuBLAS cannot read).
"""

import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend import cublas  # noqa: E402  (needs the path above)
from backend.standin import StrictCupy  # noqa: E402
from backend.standin.cublas import EmulatedCublas  # noqa: E402

STATUS_NOT_INITIALIZED, STATUS_ALLOC_FAILED, STATUS_INVALID_VALUE = 1, 3, 7


def not_found(self):
    raise ImportError('Failure finding "libcublas.so.13 or libcublas.so.12": No such file')


def returns(status):
    return lambda self, *arguments: status


def refused(a, b, out):
    raise ValueError(f"gemm: a of shape {tuple(a.shape)} is neither C- nor F-contiguous; cuBLAS reads matrices with "
                     "one packed axis (pass a contiguous array or its transpose).")


FAULTS = {
    "lookup": (StrictCupy, "emulated_cublas", not_found),
    "create": (EmulatedCublas, "cublasCreate_v2", returns(STATUS_ALLOC_FAILED)),
    "set-stream": (EmulatedCublas, "cublasSetStream_v2", returns(STATUS_NOT_INITIALIZED)),
    "set-workspace": (EmulatedCublas, "cublasSetWorkspace_v2", returns(STATUS_INVALID_VALUE)),
    "layout": (cublas, "gemm_arguments", refused),
}


def main():
    stage, script, *arguments = sys.argv[1:]
    owner, name, fault = FAULTS[stage]
    setattr(owner, name, fault)
    sys.argv = [script, *arguments]
    sys.path.insert(0, str(Path(script).resolve().parent))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
