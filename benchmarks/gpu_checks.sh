#!/usr/bin/env bash
# GPU checks in one short run (about 10 minutes on one recent GPU), from the repository root:
#
#   bash benchmarks/gpu_checks.sh [OUT_DIR]        # default gpu_results/<device name>
#
# 1. CuPy parity: the alignment on the GPU gives the CPU answer (tests/test_align.py -k gpu);
# 2. the Keras training and prediction tests on the GPU backend (TensorFlow when importable,
#    else KERAS_BACKEND=torch);
# 3. the alignment benchmark (regional vs global) on the GPU at a small size;
# 4. the scale benchmark at small sizes (--sizes, default 1000,5000).
# Every step writes its log and numbers into OUT_DIR, with device.txt naming the device and
# summary.txt one line per step (rc=0: passed). A failing step does not stop the others;
# the exit code is 1 if any failed. DRY_RUN=1 prints the commands without running them.
# Environment: PYTHON (default python3), SCALE_SIZES (default 1000,5000).
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
from scipion_deepalign.core.backend import gpu_available
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
step() {  # step NAME COMMAND...: run, log to OUT/NAME.log, one summary line
    local name=$1; shift
    if [ "${DRY_RUN:-0}" = 1 ]; then echo "[dry run] $name: $*"; return; fi
    local start=$SECONDS
    "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc $((SECONDS - start)) s ($device)" | tee -a "$OUT/summary.txt"
    [ "$rc" -eq 0 ] || failed=1
}

step cupy_parity "$PY" -m pytest -q -rs scipion_deepalign/tests/test_align.py -k gpu
step keras_gpu "$PY" -m pytest -q -rs scipion_deepalign/tests/test_cnn_model.py \
    scipion_deepalign/tests/test_cnn_train.py scipion_deepalign/tests/test_cnn_predict.py
step bench_align "$PY" benchmarks/bench_align.py --n 500 --device gpu --repeat 1 \
    --out "$OUT/bench_align.md"
step bench_scale "$PY" benchmarks/bench_scale.py --sizes "${SCALE_SIZES:-1000,5000}" \
    --device gpu --epochs 1 --images-per-epoch 4000 --global-sample 200 \
    --work "$OUT/scale_work" --report "$OUT/scale.md" --plot "$OUT/scale.png"
echo "results in $OUT"
exit $failed
