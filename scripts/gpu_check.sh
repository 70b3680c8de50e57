#!/usr/bin/env bash
# What a machine with an NVIDIA GPU must show, in one command that fits one device call, however it ends:
#
#   bash scripts/gpu_check.sh OUTDIR              # on the GPU: CuPy, and a CUDA build of torch where there is one
#   bash scripts/gpu_check.sh --standin OUTDIR    # every step on the strict CuPy stand-in instead (any machine)
#
# The steps, GPU questions first; each runs under its own limit or the time left to the deadline, whichever is
# less, and is reported PASS, FAIL, CUT (stopped by the deadline) or SKIP (not started, and why):
#   1. the environment: nvidia-smi, versions, what is missing, backend.gpu_problem()            summary.txt
#   2. the cuBLAS lookup and every GEMM layout on CuPy (tests/test_direct_cublas.py)             gemm.log
#   3. the captured step against the eager one (tests/test_graph_step.py)                        capture.log
#   4. the rest of the suite's gpu cases (pytest -m gpu), and no others                          tests.log
#   5. a one-epoch run of each model on tiny data, untimed (CuPy compiles every kernel into its
#      cache), then short trainings: CNN and MLP, nets captured and torch; the CNN with
#      --graph off; the MLP with the notebook's recipe (batch 1, captured)                       train.log, train.json
#   6. bench.py on the GPU: nets eager and captured, torch eager and CUDA graphs; then kernel
#      launches per step (the stand-in's count, and the PyTorch profiler's)                     bench.log, bench.json
# With --standin the same steps run the stand-in's cases (pytest -m standin), train on --device standin (tiny data;
# torch's runs are skipped) and count launches at batch 1 and 32 with bench.py --count-launches (beside a token CPU
# timing).
#
# Time: GPU_CHECK_SECONDS (default 420) is the deadline of all the work; a step's own limit (seconds) can be set
# with ENV_SECONDS, GEMM_SECONDS, CAPTURE_SECONDS, TESTS_SECONDS, WARMUP_SECONDS, TRAIN_SECONDS (each run) and
# BENCH_SECONDS (each bench run). The summary is written whatever ends the script: the last step, a failure, the
# deadline, or a signal (INT, TERM, HUP). OUTDIR gets at most the 8 files named above, nothing else.
# Needs no network: wheels carried in .whl/ are installed first (pip --no-index --no-deps) and nothing else is.
# Data: .devdata/fashion-mnist, else Debian's /usr/share/datasets/fashion-mnist, else a synthetic learnable set.
# Exit code: 0 when every step passed, 1 otherwise (2 for a usage error, 128+N for signal N).

set -u
usage="usage: bash scripts/gpu_check.sh [--standin] OUTDIR   (the GPU's checks, trainings and benchmarks, in OUTDIR)"
STANDIN=0
if [ "${1:-}" = "--standin" ]; then
  STANDIN=1
  shift
fi
case "${1:-}" in
  -h|--help) echo "$usage"; exit 0 ;;
  -*|"") echo "$usage" >&2; exit 2 ;;
esac
if [ $# -ne 1 ]; then
  echo "$usage" >&2
  exit 2
fi
REPO="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$1" || exit 2
OUT="$(cd "$1" && pwd)"
cd "$REPO" || exit 2
# The interpreter: $PYTHON, else the first of the checkout's .venv/bin/python, python3 and python that imports
# cupy, else python3.
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in "$REPO/.venv/bin/python" python3 python; do
    if command -v "$candidate" >/dev/null && "$candidate" -c "import cupy" >/dev/null 2>&1; then
      PY="$candidate"
      break
    fi
  done
  PY="${PY:-python3}"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
START=$(date +%s)
END=$((START + ${GPU_CHECK_SECONDS:-420}))
MIN_STEP=5  # a step is not started with less time left than this
SCRATCH="$(mktemp -d)"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
RESULTS=()
FAILED=0
CHILD="" CURRENT_STEP="" STEP_STARTED=0
if [ "$STANDIN" -eq 1 ]; then
  DEVICE=standin MARK=standin MODE="the strict CuPy stand-in"
else
  DEVICE=gpu MARK=gpu MODE="the GPU"
fi

say() { echo "$*" | tee -a "$SUMMARY"; }

# record NAME STATUS SECONDS NOTE: a line of the summary now, and in the table at the end.
record() {
  local line
  line="$(printf '%-30s %-34s %5ss  %s' "$1" "$2" "$3" "${4:-}")"
  RESULTS+=("$line")
  case "$2" in
    PASS*|"SKIP (torch trains on a GPU only)") ;;
    *) FAILED=1 ;;
  esac
  echo "   $line" | tee -a "$SUMMARY"
}

# shrink FILE: keep a log small enough to travel (its head and tail).
shrink() {
  if [ -f "$1" ] && [ "$(wc -c <"$1")" -gt 1500000 ]; then
    { head -n 300 "$1"; echo "... [$(wc -l <"$1") lines, cut to head and tail] ..."; tail -n 3000 "$1"; } >"$1.cut" &&
      mv "$1.cut" "$1"
  fi
}

finish() {
  trap - EXIT INT TERM HUP
  [ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null && wait "$CHILD" 2>/dev/null
  for log in gemm.log capture.log tests.log train.log bench.log; do shrink "$OUT/$log"; done
  find "$OUT" -name '*.cut' -delete
  {
    echo ""
    echo "== summary: $MODE, $(($(date +%s) - START)) s of a ${GPU_CHECK_SECONDS:-420} s deadline"
    printf '%s\n' "${RESULTS[@]}"
    if [ "$FAILED" -eq 0 ]; then echo "ALL PASSED"; else echo "SOME STEPS DID NOT PASS (logs in $OUT)"; fi
  } | tee -a "$SUMMARY"
  rm -rf "$SCRATCH"
}

on_signal() {  # the step under way, if any, is the one the signal stopped
  if [ -n "$CHILD" ]; then
    record "$CURRENT_STEP" "FAIL (signal $1)" "$(($(date +%s) - STEP_STARTED))" "stopped from outside"
  else
    record "(between steps)" "FAIL (signal $1)" 0 "stopped from outside"
  fi
  finish
  exit $((128 + $2))
}
trap finish EXIT
trap 'on_signal INT 2' INT
trap 'on_signal TERM 15' TERM
trap 'on_signal HUP 1' HUP

# step NAME OWN_LIMIT LOG COMMAND...: run COMMAND (output appended to LOG) under min(OWN_LIMIT, time left) and record
# it (DEFER=1: leave the record to the caller), with NOTE as its note when it passed, else the log's last line. The
# command runs in the background and is waited for, so a signal reaches the trap at once. Returns its exit code.
step() {
  local name="$1" own="$2" log="$3" left limit started rc note
  shift 3
  left=$((END - $(date +%s)))
  STEP_ELAPSED=0
  if [ "$left" -lt "$MIN_STEP" ]; then
    STEP_STATUS="SKIP (deadline: $((left > 0 ? left : 0)) s left)"
    [ "${DEFER:-0}" -eq 1 ] || record "$name" "$STEP_STATUS" 0
    return 125
  fi
  limit=$((own < left ? own : left))
  echo "---- $name (limit ${limit} s): $*" >>"$log"
  started=$(date +%s)
  CURRENT_STEP="$name" STEP_STARTED="$started"
  timeout -k 5 "$limit" "$@" >>"$log" 2>&1 &
  CHILD=$!
  wait "$CHILD"
  rc=$?
  CHILD=""
  STEP_ELAPSED=$(($(date +%s) - started))
  STEP_STATUS=PASS note="${NOTE:-}"
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    STEP_STATUS="FAIL (its ${own} s limit)"
    [ "$limit" -lt "$own" ] && STEP_STATUS="CUT (deadline, after ${STEP_ELAPSED} s)"
  elif [ "$rc" -ne 0 ]; then
    STEP_STATUS="FAIL (exit $rc)"
  fi
  [ "$rc" -eq 0 ] || note="$(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-110)"
  [ "${DEFER:-0}" -eq 1 ] || record "$name" "$STEP_STATUS" "$STEP_ELAPSED" "$note"
  return "$rc"
}

# missing NAME: whether the environment step found NAME missing (asked of Python itself if that step did not say).
missing() {
  if [ -f "$SCRATCH/missing" ]; then grep -qx "$1" "$SCRATCH/missing"; else ! "$PY" -c "import $1" >/dev/null 2>&1; fi
}

# pytest_step NAME OWN_LIMIT LOG PYTEST-ARGUMENTS...: the suite's cases of this mode; one of them skipped is a failure.
pytest_step() {
  local name="$1" own="$2" log="$3" rc status result
  shift 3
  if missing pytest; then
    record "$name" "SKIP (pytest is missing)" 0 "carry its wheel in .whl/"
    return
  fi
  DEFER=1 step "$name" "$own" "$log" "$PY" -m pytest -q -rs -p no:cacheprovider --tb=short \
    --basetemp "$SCRATCH/pytest" -m "$MARK" "$@"
  rc=$?
  status="$STEP_STATUS"
  result="$(grep -E '[0-9]+ (passed|failed|skipped|deselected|errors?)|no tests ran' "$log" | tail -n 1 | tr -d '=' |
    sed 's/^ *//; s/ *$//')"
  if [ "$rc" -eq 0 ] && grep -qE "no GPU backend here|cupy is not importable here" "$log"; then
    status="FAIL (cases of $MARK skipped)"
    result="$result; $(grep -m 1 -oE "(no GPU backend here|cupy is not importable)[^.]*" "$log")"
  fi
  record "$name" "$status" "$STEP_ELAPSED" "$(basename "$log"): ${result:-no result}"
  return "$rc"
}

# ---------------------------------------------------------------- 1. the environment
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
say "== gpu_check on $MODE, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(hostname), repo $REPO, commit $COMMIT, python $PY"
if [ "$STANDIN" -eq 0 ]; then
  if command -v nvidia-smi >/dev/null; then
    timeout 20 nvidia-smi 2>&1 | tee -a "$SUMMARY"
  else
    say "nvidia-smi: not found"
  fi
fi
if compgen -G ".whl/*.whl" >/dev/null; then
  say "== installing the wheels carried in .whl/ (no index, no dependencies)"
  timeout 120 "$PY" -m pip install --no-index --no-deps .whl/*.whl 2>&1 | tail -n 5 | tee -a "$SUMMARY"
fi
cat >"$SCRATCH/environment.py" <<'EOF'
import importlib, platform, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # click.__version__
device, missing_list = sys.argv[1], sys.argv[2]
print("python", platform.python_version(), sys.executable)
missing = []
for name in ("numpy", "cupy", "torch", "click", "tqdm", "pytest", "hypothesis", "matplotlib", "threadpoolctl"):
    try:
        module = importlib.import_module(name)
        print(f"{name:14s}", getattr(module, "__version__", "?"))
    except Exception as error:
        print(f"{name:14s} MISSING ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})")
        missing.append(name)
with open(missing_list, "w") as names:
    names.write("".join(f"{name}\n" for name in missing))
if missing:
    print("missing:", ", ".join(missing), "- the steps that need them say so, the others go on; carry wheels in .whl/")
try:
    import torch
    print("torch cuda    ", torch.version.cuda, "available:", torch.cuda.is_available(),
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
except Exception:
    pass
import backend
if device == "standin":
    print("backend standin ok:", backend.get_backend("standin").library_versions())
    sys.exit(0)
try:
    import cupy
    print("cupy cuda     ", cupy.cuda.runtime.runtimeGetVersion(), "driver", cupy.cuda.runtime.driverGetVersion())
except Exception:
    pass
problem = backend.gpu_problem()
if problem is not None:
    print("FAIL: backend.gpu_problem() says:", problem)
    sys.exit(1)
gpu = backend.get_backend("gpu")
print("backend gpu ok:", gpu.device_name(), gpu.library_versions())
EOF
NOTE="backend ready" step "environment" "${ENV_SECONDS:-60}" "$SCRATCH/environment.log" \
  "$PY" "$SCRATCH/environment.py" "$DEVICE" "$SCRATCH/missing"
grep -v "^----" "$SCRATCH/environment.log" | tee -a "$SUMMARY"

# ---------------------------------------------------------------- 2-4. the suite: GPU questions first
say "== the cuBLAS lookup and every GEMM layout, the captured step against eager ones, the other $MARK cases"
pytest_step "cublas lookup and gemm" "${GEMM_SECONDS:-60}" "$OUT/gemm.log" tests/test_direct_cublas.py
pytest_step "captured against eager" "${CAPTURE_SECONDS:-90}" "$OUT/capture.log" tests/test_graph_step.py
pytest_step "the suite's $MARK cases" "${TESTS_SECONDS:-150}" "$OUT/tests.log" tests \
  --ignore=tests/test_direct_cublas.py --ignore=tests/test_graph_step.py

# ---------------------------------------------------------------- 5. kernel cache, then trainings
DATA="" DATA_NOTE=""
TINY="$SCRATCH/tiny"
"$PY" -c "from tests.idx_files import write_dataset; write_dataset('$TINY', n_train=512, n_test=128, seed=0)" \
  >>"$OUT/train.log" 2>&1
if [ "$STANDIN" -eq 1 ]; then
  DATA="$TINY" DATA_NOTE="synthetic, 512 images (the stand-in computes on the CPU)"
else
  for candidate in .devdata/fashion-mnist /usr/share/datasets/fashion-mnist; do
    if [ -d "$candidate" ] && ls "$candidate"/train-images-idx3-ubyte* >/dev/null 2>&1; then
      case "$candidate" in /*) DATA="$candidate" ;; *) DATA="$REPO/$candidate" ;; esac
      DATA_NOTE="fashion-mnist from $candidate"
      break
    fi
  done
  if [ -z "$DATA" ]; then
    DATA="$SCRATCH/synthetic"
    DATA_NOTE="SYNTHETIC data (no .devdata/fashion-mnist): accuracy only shows that learning happens"
    "$PY" -c "from tests.idx_files import write_dataset; write_dataset('$DATA', n_train=12000, n_test=2000, seed=0)" \
      >>"$OUT/train.log" 2>&1
  fi
fi
# TRAIN NAME ...: scripts/train.py run from the scratch folder (nothing lands in the repository), its metrics there.
TRAIN=(bash -c 'cd "$0" && name="$1" && shift && exec "$@" --metrics-json "$0/$name.json"' "$SCRATCH")
TRAIN_ARGUMENTS=("$PY" "$REPO/scripts/train.py" --device "$DEVICE" --no-save --no-download)
say "== kernel cache: an epoch of each model on tiny data (untimed), trainings on $DATA_NOTE -> train.log, train.json"
for model in mlp cnn; do
  NOTE="kernels compiled and cached" step "warm-up $model" "${WARMUP_SECONDS:-60}" "$OUT/train.log" \
    "${TRAIN[@]}" "warmup_$model" "${TRAIN_ARGUMENTS[@]}" --model "$model" --epochs 1 --dataset fashion-mnist \
    --data-dir "$TINY" --quiet
done
RUNS="cnn_nets:cnn:nets:auto:2 mlp_nets:mlp:nets:auto:2 cnn_torch:cnn:torch:auto:2 mlp_torch:mlp:torch:auto:2"
RUNS="$RUNS cnn_nets_eager:cnn:nets:off:2 mlp_notebook:mlp:nets:auto:1"
for run in $RUNS; do
  IFS=: read -r name model impl graph epochs <<<"$run"
  recipe=default
  [ "$name" = mlp_notebook ] && recipe=notebook
  if [ "$impl" = torch ] && { [ "$STANDIN" -eq 1 ] || missing torch; }; then
    why="torch is missing"
    [ "$STANDIN" -eq 1 ] && why="torch trains on a GPU only"
    record "train $name" "SKIP ($why)" 0
    echo "- SKIP ($why)" >"$SCRATCH/$name.rc"
    continue
  fi
  NOTE="" step "train $name" "${TRAIN_SECONDS:-40}" "$OUT/train.log" "${TRAIN[@]}" "$name" "${TRAIN_ARGUMENTS[@]}" \
    --model "$model" --impl "$impl" --graph "$graph" --epochs "$epochs" --recipe "$recipe" --dataset fashion-mnist \
    --data-dir "$DATA"
  echo "$? $STEP_STATUS" >"$SCRATCH/$name.rc"
  sed -n "/^---- train $name (/,\$p" "$OUT/train.log" | grep -E "test accuracy|CUDA graph|runs eager" |
    sed 's/^/      /' >>"$SUMMARY"
done
"$PY" - "$SCRATCH" "$OUT/train.json" "$DATA_NOTE" "$RUNS" <<'EOF' >>"$OUT/train.log" 2>&1
import json, sys
from pathlib import Path
scratch, out, note, runs = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4].split()
result = {}
for run in runs:
    name = run.split(":")[0]
    rc = scratch / f"{name}.rc"
    status = rc.read_text().split(maxsplit=1) if rc.exists() else ["-", "not run"]
    metrics = scratch / f"{name}.json"
    result[name] = {"run": run, "exit_code": status[0], "status": status[-1].strip(),
                    "metrics": json.loads(metrics.read_text()) if metrics.exists() else None}
out.write_text(json.dumps({"data": note, "runs": result}, indent=1) + "\n")
EOF

# ---------------------------------------------------------------- 6. the bench, then kernel launches
say "== bench.py, then kernel launches per step -> bench.log, bench.json"
if [ "$STANDIN" -eq 1 ]; then
  NOTE="stand-in launch counts, batch 1 and 32" step "launches (stand-in)" "${BENCH_SECONDS:-150}" "$OUT/bench.log" \
    "$PY" scripts/bench.py --device cpu --count-launches --models mlp,cnn --batch-sizes 1,32 --repeats 1 --warmup 1 \
    --sample-seconds 0.01 --gemm-size 64 --json "$OUT/bench.json"
else
  NOTE="bench.json" step "bench gpu" "${BENCH_SECONDS:-150}" "$OUT/bench.log" "$PY" scripts/bench.py --device gpu \
    --models mlp,cnn --batch-sizes 32,128,256 --repeats 5 --sample-seconds 0.1 --json "$OUT/bench.json"
  # The PyTorch profiler (CUPTI) beside CuPy, apart: a crash there cannot cost the timings above.
  NOTE="tables in bench.log" step "launches (stand-in, profiler)" "${BENCH_SECONDS:-150}" "$OUT/bench.log" \
    "$PY" scripts/bench.py --device gpu --models mlp,cnn --batch-sizes 1,128 --repeats 1 --warmup 2 \
    --sample-seconds 0.02 --count-launches
fi
if [ -f "$OUT/bench.log" ]; then
  echo "" >>"$SUMMARY"
  echo "== bench tables" >>"$SUMMARY"
  grep -E '^(\||##|[a-z]+: float32 GEMM|[a-z]+, batch [0-9]+:)' "$OUT/bench.log" >>"$SUMMARY"
fi
exit "$FAILED"
