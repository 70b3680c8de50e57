"""Peak memory of one implementation: the meters for the CPU (VmHWM), CuPy's pool and torch.cuda.

Each meter has `start()` (before the model is built) and `stop()` -> MB above the level at start, or None,
and a `method` string the JSON records.
"""

from __future__ import annotations

import gc


def _proc_status_kb(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def release_free_heap() -> None:
    """Give freed heap memory back to the OS (glibc's malloc_trim), so that RSS counts only live memory
    and a new peak is not hidden by memory an earlier run freed but the allocator kept."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class CpuPeakMemory:
    """Peak resident memory above the level at `start`: Linux's VmHWM, reset through /proc/self/clear_refs.

    Writing "5" to clear_refs resets the high-water mark to the current RSS (Linux >= 4.0), so each
    implementation's peak is measured on its own without tracemalloc's slowdown.
    """

    method = (
        "cpu: process peak RSS (VmHWM, reset via /proc/self/clear_refs) minus RSS before building the model, "
        "freed heap returned to the OS first (malloc_trim); libraries' one-time setup is primed before"
    )

    @staticmethod
    def available() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")
            _proc_status_kb("VmHWM")
        except OSError:
            return False
        except KeyError:
            return False
        return True

    def start(self) -> None:
        gc.collect()
        release_free_heap()
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        self._baseline_kb = _proc_status_kb("VmRSS")

    def stop(self) -> float:
        return max(0, _proc_status_kb("VmHWM") - self._baseline_kb) / 1024.0


class CupyPeakMemory:
    """The peak of the bytes CuPy's memory pool has handed out to live arrays, above the level at `start`.

    Like torch.cuda.max_memory_allocated, and unlike the pool's total (which keeps every freed block
    cached): a cupy.cuda.MemoryHook sees each malloc from the pool and each free back to it.
    """

    method = ("gpu nets: peak bytes of live CuPy arrays (a cupy.cuda.MemoryHook counting the pool's mallocs "
              "and frees) above the level at start")

    def __init__(self, xp):
        meter = self

        class LiveBytes(xp.cuda.MemoryHook):
            name = "nets-bench-live-bytes"

            def malloc_postprocess(self, **kwargs):
                meter._blocks[kwargs.get("mem_ptr")] = kwargs.get("mem_size", 0)
                meter._live += kwargs.get("mem_size", 0)
                meter._peak = max(meter._peak, meter._live)

            def free_postprocess(self, **kwargs):  # blocks allocated before start do not count
                meter._live -= meter._blocks.pop(kwargs.get("mem_ptr"), 0)

        self._hook = LiveBytes()
        self._live = self._peak = 0
        self._blocks = {}

    def start(self) -> None:
        gc.collect()
        self._live = self._peak = 0
        self._blocks = {}
        self._hook.__enter__()

    def stop(self) -> float:
        self._hook.__exit__(None, None, None)
        return max(0, self._peak) / 2**20


class TorchCudaPeakMemory:
    """torch.cuda.max_memory_allocated above what was allocated at `start`."""

    method = "gpu torch: torch.cuda.max_memory_allocated() minus memory_allocated() before building the model"

    def __init__(self, torch):
        self._torch = torch

    def start(self) -> None:
        gc.collect()
        self._torch.cuda.empty_cache()
        self._torch.cuda.reset_peak_memory_stats()
        self._baseline = self._torch.cuda.memory_allocated()

    def stop(self) -> float:
        return max(0, self._torch.cuda.max_memory_allocated() - self._baseline) / 2**20


class NoPeakMemory:
    method = "unavailable"

    def start(self) -> None:
        pass

    def stop(self) -> None:
        return None
