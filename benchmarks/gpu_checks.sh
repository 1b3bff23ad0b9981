#!/usr/bin/env bash
# GPU checks in one short run, from the repository root; the steps' time limits add up to
# 10 minutes (a lent device's budget is 15, its start included):
#
#   bash benchmarks/gpu_checks.sh [OUT_DIR]        # default gpu_results/<device name>
#
# 1. CuPy parity: the alignment on the GPU gives the CPU answer (CTF applied and flipped,
#    regional windows, fallback, refinement; tests -k "gpu or cupy");
# 2. the Keras training and prediction tests on the GPU backend (TensorFlow when importable,
#    else KERAS_BACKEND=torch);
# 3. the alignment benchmark (regional vs global) on the GPU at 64 px;
# 4. only with SCALE=1 (it does not fit the 10 minutes): the scale benchmark (--sizes
#    SCALE_SIZES, default 1000,4000) and the alignment benchmark at 120 px with a CNN trained
#    and predicting on the GPU;
# 5. regional vs global at 128 px on 20 000 particles (issue 23's GPU target: the regional
#    search >= 5x faster), both with the default refinement, searched at 8 A (64 px);
# 6. the accuracy benchmark's default variant on 8zpm at SNR 0.05 (the map from SHARED_DATA,
#    default ../shared/data; on a machine where ../shared is absent, copy 8zpm_64_2A.mrc into
#    a folder of the checkout and name it: SHARED_DATA=that/folder).
# Every step writes its log and numbers into OUT_DIR, with device.txt naming the device and
# summary.txt one line per step (rc=0: passed; 124: stopped at its time limit). A failing step
# does not stop the others; the exit code is 1 if any failed. DRY_RUN=1 prints the commands
# without running them. Environment: PYTHON (default python3), DEVICE (default gpu; cpu for a
# smoke run of this script), SCALE=1, SCALE_SIZES, ALIGN_N (default 2000), SMALL=1 (tiny
# sizes, to try the script itself on a CPU), SHARED_DATA.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg TF_CPP_MIN_LOG_LEVEL=2

device=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
device=${device:-no-nvidia-gpu}
OUT=${1:-gpu_results/$(echo "$device" | tr -cs 'A-Za-z0-9._-' '_')}
mkdir -p "$OUT"
if ! "$PY" -c "import tensorflow" >/dev/null 2>&1; then
    export KERAS_BACKEND=torch
fi
: > "$OUT/summary.txt"
{
    echo "device: $device"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
    echo "KERAS_BACKEND=${KERAS_BACKEND:-tensorflow}"
    "$PY" - <<'EOF' 2>&1 || true
import importlib
for name in ("numpy", "cupy", "torch", "tensorflow", "keras"):
    try:
        mod = importlib.import_module(name)
        print(name, getattr(mod, "__version__", "?"))
    except Exception as exc:  # absent or broken: say so
        print(name, "not available:", type(exc).__name__)
from scipion_deepalign.core.runtime.backend import gpu_available
print("cupy GPU answers:", gpu_available())
try:
    import torch
    print("torch CUDA:", torch.cuda.is_available())
except Exception:
    pass
EOF
} > "$OUT/device.txt"
cat "$OUT/device.txt"

failed=0
step() {  # step NAME LIMIT_S COMMAND...: run, log to OUT/NAME.log, one summary line
    local name=$1 limit=$2; shift 2
    if [ "${DRY_RUN:-0}" = 1 ]; then echo "[dry run] $name: $*"; return; fi
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc $((SECONDS - start)) s ($device)" | tee -a "$OUT/summary.txt"
    [ "$rc" -eq 0 ] || failed=1
}

DEV=${DEVICE:-gpu}
if [ "${SMALL:-0}" = 1 ]; then
    align_n=40; sizes=${SCALE_SIZES:-60,120}; tiny=(--box 32 --epochs 1 --images-per-epoch 256)
    big=(--box 48 --n 20 --n-train 60 --epochs 1)
    large=(--box 48 --pixel-size 2 --target-resolution 8 --n 60)
else
    align_n=${ALIGN_N:-2000}; sizes=${SCALE_SIZES:-1000,4000}; tiny=()
    big=(--box 120 --n 600 --n-train 600 --epochs 3)
    large=(--box 128 --pixel-size 2 --target-resolution 8 --n 20000)
fi
tests=scipion_deepalign/tests
step cupy_parity 90 "$PY" -m pytest -q -rs -p no:cacheprovider "$tests/core/align/test_align.py" \
    "$tests/core/runtime/test_backend.py" "$tests/core/align/test_gpu_parity.py" -k "gpu or cupy"
step keras_gpu 120 "$PY" -m pytest -q -rs -p no:cacheprovider "$tests/core/cnn/test_cnn_model.py" \
    "$tests/core/cnn/test_cnn_train.py" "$tests/core/cnn/test_cnn_predict.py"
step bench_align 60 "$PY" benchmarks/bench_align.py --n "$align_n" --device "$DEV" --repeat 2 \
    ${tiny[@]:+--box 32} --out "$OUT/bench_align.md"
if [ "${SCALE:-0}" = 1 ]; then
step bench_scale 330 "$PY" benchmarks/bench_scale.py --sizes "$sizes" --device "$DEV" \
    --global-sample 200 ${tiny[@]+"${tiny[@]}"} \
    --work "$OUT/scale_work" --report "$OUT/scale.md" --plot "$OUT/scale.png"
step bench_align_120px 200 "$PY" benchmarks/bench_align.py "${big[@]}" --cnn --device "$DEV" \
    --repeat 2 --out "$OUT/bench_align_120px.md"
fi
step bench_align_128px_20k 150 "$PY" benchmarks/bench_align.py "${large[@]}" --k 4 --refine \
    --device "$DEV" --repeat 1 --out "$OUT/bench_align_128px_20k.md"
data=${SHARED_DATA:-../shared/data}
if [ -f "$data/8zpm_64_2A.mrc" ]; then
    quick=(); [ "${SMALL:-0}" = 1 ] && quick=(--quick)
    step bench_accuracy 180 "$PY" benchmarks/bench_accuracy.py --maps 8zpm --snr 0.05 \
        --all-variants-on none --device "$DEV" --data "$data" ${quick[@]+"${quick[@]}"} \
        --out "$OUT/bench_accuracy.md"
else
    echo "bench_accuracy skipped: no 8zpm_64_2A.mrc in $data (set SHARED_DATA)" \
        | tee -a "$OUT/summary.txt"
fi
echo "results in $OUT"
exit $failed
