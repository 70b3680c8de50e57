#!/usr/bin/env bash
# Everything a machine with an NVIDIA GPU must show, in one command, well inside 10 minutes on an H200:
#
#   bash scripts/gpu_check.sh OUTDIR
#
#   1. environment: nvidia-smi, versions, backend.gpu_problem() must be None      -> OUTDIR/summary.txt
#   2. the captured step first: 20 replayed steps match 20 eager ones on CuPy      -> OUTDIR/capture.log
#      then the test suite; the backend fixture's gpu cases run on CuPy (none may skip) -> OUTDIR/tests.log
#   3. 2-epoch training on --device gpu: CNN and MLP, nets (captured) and torch,   -> OUTDIR/train.log, train.json
#      and the nets CNN eager (--graph off)
#   4. bench.py on the gpu: nets and torch, eager and captured (CUDA graphs), plus -> OUTDIR/bench.log,
#      kernel launches per step; and the cpu beside it                                bench_gpu.json, bench_cpu.json
#
# Needs no network and no package index: CuPy, a CUDA build of torch, numpy, click, tqdm and pytest must be
# installed already; wheels carried in .whl/ are installed first (pip --no-index --no-deps) when it exists.
# Data: .devdata/fashion-mnist (copy it there before the repository travels; see docs/gpu.md), else
# Debian's /usr/share/datasets/fashion-mnist, else a synthetic learnable set (accuracy then means little).
# One failing step does not stop the others; the exit code is 0 only when every step passed.
# OUTDIR gets 8 small files. Per-step time limits (seconds) can be changed through the environment:
# CAPTURE_LIMIT, TESTS_LIMIT, TRAIN_LIMIT (each of the five runs), BENCH_GPU_LIMIT, LAUNCH_LIMIT, BENCH_CPU_LIMIT;
# the defaults add up to about 10 minutes if every step ran to its limit (about 4-5 expected on an H200).

set -u
usage="usage: bash scripts/gpu_check.sh OUTDIR   (tests, short trainings and benchmarks on the GPU, logged in OUTDIR)"
case "${1:-}" in
  -h|--help) echo "$usage"; exit 0 ;;
  -*) echo "$usage" >&2; exit 2 ;;
esac
if [ $# -ne 1 ]; then
  echo "$usage" >&2
  exit 2
fi
REPO="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
cd "$REPO" || exit 2
# The interpreter: $PYTHON, else the first of python3 and python that imports cupy, else python3.
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null && "$candidate" -c "import cupy" >/dev/null 2>&1; then
      PY="$candidate"
      break
    fi
  done
  PY="${PY:-python3}"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
CAPTURE_LIMIT="${CAPTURE_LIMIT:-60}"
TESTS_LIMIT="${TESTS_LIMIT:-150}"
TRAIN_LIMIT="${TRAIN_LIMIT:-35}"
BENCH_GPU_LIMIT="${BENCH_GPU_LIMIT:-120}"
LAUNCH_LIMIT="${LAUNCH_LIMIT:-45}"
BENCH_CPU_LIMIT="${BENCH_CPU_LIMIT:-60}"
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
RESULTS=()
FAILED=0
START_ALL=$(date +%s)

say() { echo "$*" | tee -a "$SUMMARY"; }

# record NAME RC SECONDS NOTE: one line of the final summary; rc 124/137 is a time-out.
record() {
  local status="PASS"
  if [ "$2" -ne 0 ]; then
    status="FAIL (exit $2)"
    { [ "$2" -eq 124 ] || [ "$2" -eq 137 ]; } && status="FAIL (time limit)"
    FAILED=1
  fi
  RESULTS+=("$(printf '%-26s %-18s %5ss  %s' "$1" "$status" "$3" "${4:-}")")
}

# shrink FILE: keep a log small enough to travel (head and tail of a long one).
shrink() {
  local file="$1"
  if [ -f "$file" ] && [ "$(wc -c <"$file")" -gt 1500000 ]; then
    { head -n 300 "$file"; echo "... [$(wc -l <"$file") lines, cut to head and tail] ..."; tail -n 3000 "$file"; } \
      >"$file.cut" && mv "$file.cut" "$file"
  fi
}

# ---------------------------------------------------------------- 1. environment
say "== gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), repo $REPO, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi 2>&1 | tee -a "$SUMMARY"
else
  say "nvidia-smi: not found"
fi
if compgen -G ".whl/*.whl" >/dev/null; then
  say "== installing carried wheels from .whl/ (no index, no deps)"
  "$PY" -m pip install --no-index --no-deps .whl/*.whl 2>&1 | tail -n 5 | tee -a "$SUMMARY"
fi
t0=$(date +%s)
"$PY" - <<'EOF' 2>&1 | tee -a "$SUMMARY"
import importlib, platform, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # click.__version__
print("python", platform.python_version(), sys.executable)
missing = []
for name in ("numpy", "cupy", "torch", "click", "tqdm", "pytest", "threadpoolctl", "hypothesis", "matplotlib"):
    try:
        module = importlib.import_module(name)
        print(f"{name:14s}", getattr(module, "__version__", "?"))
    except Exception as error:
        print(f"{name:14s} MISSING ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})")
        missing.append(name)
try:
    import torch
    print("torch cuda    ", torch.version.cuda, "available:", torch.cuda.is_available(),
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
    print("cudnn         ", torch.backends.cudnn.version() if torch.cuda.is_available() else None)
except Exception:
    pass
try:
    import cupy
    print("cupy cuda     ", cupy.cuda.runtime.runtimeGetVersion(), "driver", cupy.cuda.runtime.driverGetVersion())
except Exception:
    pass
import backend
problem = backend.gpu_problem()
if problem is not None:
    print("FAIL: backend.gpu_problem() says:", problem)
    sys.exit(1)
gpu = backend.get_backend("gpu")
print("backend gpu ok:", gpu.device_name(), gpu.library_versions())
if {"click", "tqdm", "pytest"} & set(missing):
    print("NOTE: missing", ", ".join(sorted({"click", "tqdm", "pytest"} & set(missing))),
          "- carry wheels in .whl/ (pip download them elsewhere) for the steps that need them")
EOF
rc=${PIPESTATUS[0]}
record "gpu backend" "$rc" "$(($(date +%s) - t0))" "backend.gpu_problem() is None"

# ---------------------------------------------------------------- 2. the captured step, then the test suite
say "== the captured step against the eager one on CuPy (limit ${CAPTURE_LIMIT}s) -> capture.log"
t0=$(date +%s)
timeout -k 10 "$CAPTURE_LIMIT" "$PY" -m pytest -q -rs -p no:cacheprovider --tb=short tests/test_graph_step.py \
  tests/test_capture.py >"$OUT/capture.log" 2>&1
rc=$?
note="$(tail -n 1 "$OUT/capture.log")"
if [ "$rc" -eq 0 ] && grep -q "no GPU backend here" "$OUT/capture.log"; then
  rc=3
  note="the gpu cases skipped: $note"
fi
record "captured step (pytest)" "$rc" "$(($(date +%s) - t0))" "$note"
say "== tests (limit ${TESTS_LIMIT}s) -> tests.log"
t0=$(date +%s)
timeout -k 10 "$TESTS_LIMIT" "$PY" -m pytest -q -rs -p no:cacheprovider --tb=short >"$OUT/tests.log" 2>&1
rc=$?
gpu_skips=$(grep -c "no GPU backend here" "$OUT/tests.log")
note="$(tail -n 1 "$OUT/tests.log")"
if [ "$rc" -eq 0 ] && [ "$gpu_skips" -gt 0 ]; then
  rc=3
  note="$gpu_skips gpu cases skipped: $note"
fi
shrink "$OUT/tests.log"
record "tests (pytest)" "$rc" "$(($(date +%s) - t0))" "$note"

# ---------------------------------------------------------------- 3. training on the gpu
DATA=""
DATA_NOTE=""
for candidate in .devdata/fashion-mnist /usr/share/datasets/fashion-mnist; do
  if [ -d "$candidate" ] && ls "$candidate"/train-images-idx3-ubyte* >/dev/null 2>&1; then
    DATA="$candidate"
    DATA_NOTE="fashion-mnist from $candidate"
    break
  fi
done
if [ -z "$DATA" ]; then
  DATA="$SCRATCH/synthetic"
  DATA_NOTE="SYNTHETIC data (no .devdata/fashion-mnist): accuracy only shows that learning happens"
  "$PY" -c "from tests.idx_files import write_dataset; write_dataset('$DATA', n_train=12000, n_test=2000, seed=0)"
fi
say "== training, 2 epochs on the gpu, $DATA_NOTE (limit ${TRAIN_LIMIT}s each) -> train.log, train.json"
: >"$OUT/train.log"
RUNS="cnn:nets cnn:torch mlp:nets mlp:torch cnn:nets-eager"
for run in $RUNS; do
  model="${run%%:*}"
  impl="${run#*:}"
  graph=auto
  if [ "$impl" = nets-eager ]; then
    graph=off
  fi
  t0=$(date +%s)
  echo "---- $model $impl: scripts/train.py --device gpu --model $model --impl ${impl%-eager} --graph $graph --epochs 2" \
    >>"$OUT/train.log"
  timeout -k 10 "$TRAIN_LIMIT" "$PY" scripts/train.py --device gpu --model "$model" --impl "${impl%-eager}" \
    --graph "$graph" --epochs 2 --dataset fashion-mnist --data-dir "$DATA" --no-download --no-save \
    --metrics-json "$SCRATCH/train_${model}_${impl}.json" >>"$OUT/train.log" 2>&1
  rc=$?
  accuracy="$(grep -h "test accuracy" "$OUT/train.log" | tail -n 1)"
  [ "$rc" -ne 0 ] && accuracy="$(tail -n 1 "$OUT/train.log")"
  echo "$rc $(($(date +%s) - t0))" >"$SCRATCH/train_${model}_${impl}.rc"
  record "train $model $impl" "$rc" "$(($(date +%s) - t0))" "$accuracy"
done
"$PY" - "$SCRATCH" "$OUT/train.json" "$DATA_NOTE" <<'EOF'
import json, sys
from pathlib import Path
scratch, out, note = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
runs = {}
for model, impl in (("cnn", "nets"), ("cnn", "torch"), ("mlp", "nets"), ("mlp", "torch"), ("cnn", "nets-eager")):
    key = f"{model}_{impl}"
    rc, seconds = (scratch / f"train_{key}.rc").read_text().split()
    metrics_path = scratch / f"train_{key}.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else None
    runs[key] = {"exit_code": int(rc), "wall_seconds": int(seconds), "metrics": metrics}
out.write_text(json.dumps({"data": note, "runs": runs}, indent=1) + "\n")
EOF
shrink "$OUT/train.log"

# ---------------------------------------------------------------- 4. benchmarks
say "== bench.py --device gpu (limit ${BENCH_GPU_LIMIT}s), then kernel launches, then --device cpu (limit ${BENCH_CPU_LIMIT}s) -> bench.log"
: >"$OUT/bench.log"
t0=$(date +%s)
echo "---- bench gpu" >>"$OUT/bench.log"
timeout -k 10 "$BENCH_GPU_LIMIT" "$PY" scripts/bench.py --device gpu --models mlp,cnn --batch-sizes 32,128,256 \
  --repeats 5 --sample-seconds 0.1 --json "$OUT/bench_gpu.json" >>"$OUT/bench.log" 2>&1
rc=$?
record "bench gpu" "$rc" "$(($(date +%s) - t0))" "bench_gpu.json"
# Counting launches runs the PyTorch profiler (CUPTI) beside CuPy: kept apart, so that a crash there
# cannot cost the timings above.
t0=$(date +%s)
echo "---- kernel launches per step (torch.profiler)" >>"$OUT/bench.log"
timeout -k 10 "$LAUNCH_LIMIT" "$PY" scripts/bench.py --device gpu --models mlp,cnn --batch-sizes 128 --repeats 1 --warmup 2 \
  --sample-seconds 0.02 --count-launches >>"$OUT/bench.log" 2>&1
rc=$?
record "kernel launches" "$rc" "$(($(date +%s) - t0))" "tables in bench.log"
t0=$(date +%s)
echo "---- bench cpu" >>"$OUT/bench.log"
timeout -k 10 "$BENCH_CPU_LIMIT" "$PY" scripts/bench.py --device cpu --models mlp,cnn --batch-sizes 32,128,256 \
  --repeats 3 --sample-seconds 0.1 --channels-last --seed-loop 2000 --json "$OUT/bench_cpu.json" >>"$OUT/bench.log" 2>&1
rc=$?
record "bench cpu" "$rc" "$(($(date +%s) - t0))" "bench_cpu.json"
shrink "$OUT/bench.log"

# ---------------------------------------------------------------- summary
say ""
say "== gpu bench tables"
sed -n '/^---- bench gpu/,/^---- kernel launches/p' "$OUT/bench.log" | grep -E '^(\||##|[a-z]+: float32 GEMM)' \
  | tee -a "$SUMMARY"
sed -n '/^---- kernel launches/,/^---- bench cpu/p' "$OUT/bench.log" \
  | awk '/kernels \/ train step/ {on = 1} on && /^\|/ {print} on && /^$/ {on = 0}' | tee -a "$SUMMARY"
say ""
say "== summary ($(($(date +%s) - START_ALL)) s in all)"
for line in "${RESULTS[@]}"; do
  say "$line"
done
if [ "$FAILED" -eq 0 ]; then
  say "ALL PASSED"
else
  say "SOME STEPS FAILED (logs in $OUT)"
fi
exit "$FAILED"
