#!/usr/bin/env bash
# The ONE prepared GPU session: everything segdeploy needs a CUDA GPU for, in one command, results as files.
#
# 1. Here (CPU, once, ~30 s): export the example so the GPU machine needs no exporter (out/ is git-ignored):
#        bash benchmarks/gpu_session.sh --prepare
# 2. On the lent GPU machine (from the repo root; OUT is the folder whose files come back):
#        run(command="bash benchmarks/gpu_session.sh", carry=["out/gpu_session"], timeout_s=480)
#    Elsewhere: OUT=/some/dir bash benchmarks/gpu_session.sh  (default OUT: out/gpu_session_results).
#
# Steps (each under its own timeout, 390 s in all at worst; expected 3-4 min on an H200):
#   build      CMake + nvcc: libsegdeploy_kernels.so for the local GPU (SEGDEPLOY_CUDA_ARCH, default native)   75 s
#   pytest     tests/plugins/test_kernels_gpu.py, all GPU tests except the compute-sanitizer wrappers           80 s
#   memcheck   compute-sanitizer --tool memcheck on the smoke, misaligned, side-stream, arbitrary-index,
#              edge-case and Mask R-CNN-size tests (caching allocator off)                                     70 s
#   racecheck  compute-sanitizer --tool racecheck on the smoke test                                            30 s
#   plugins    benchmarks/plugins.py: our kernels vs PyTorch/torchvision CUDA vs measured D2D copy bandwidth,
#              8x64x512x512 pool/unpool, 1000-box RoiAlign 7x7/14x14, FP32 and FP16                           45 s
#   bench      segdeploy bench of the example: torch CUDA vs torch CPU vs ONNX Runtime CPU (FP32, INT8)        45 s
#              (+45 s: a retry with the TorchScript copy when this machine's torch cannot load the .pt2)
# Files written to $OUT (at most 8, flat): summary.json, session.log, build.log, pytest_gpu.log, sanitizer.log,
# plugins_bench.json, bench_gpu.json, bench_gpu.txt.
# A step that fails or times out is recorded (rc 124 = timeout) and the next step still runs; exit status 0
# when every step passed, else 1.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
PREP=$ROOT/out/gpu_session
CLASSES=background,circle,square,triangle,ring,star

if [ "${1:-}" = "--prepare" ]; then
    set -e
    rm -rf "$PREP" && mkdir -p "$PREP"
    $PY -m segdeploy export examples/shapes_unet.pt2 --out "$PREP/shapes" --shape 1x3x128x128 --int8 \
        --calib calibration/shapes/calib --class-names "$CLASSES" -q
    # the GPU machine's torch may be older than the one that wrote the .pt2: a TorchScript copy is the fallback
    $PY - "$PREP/shapes_unet.ts" <<'EOF'
import sys, warnings
import torch
from segdeploy.zoo.unet import compact_unet
warnings.simplefilter("ignore", FutureWarning)
ep = torch.export.load("examples/shapes_unet.pt2")
m = compact_unet(num_classes=6, in_channels=3, base=16)
m.load_state_dict(ep.state_dict, strict=True)  # the trained weights in the plain module
m.eval()
x = torch.randn(1, 3, 128, 128)
with torch.no_grad():
    assert torch.equal(m(x), ep.module()(x)), "rebuilt module differs from the .pt2"
torch.jit.trace(m, x).save(sys.argv[1])
EOF
    du -sh "$PREP"
    echo "prepared $PREP; now run: bash benchmarks/gpu_session.sh (carry out/gpu_session)"
    exit 0
fi

OUT=${OUT:-$ROOT/out/gpu_session_results}
mkdir -p "$OUT"
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
LOG=$OUT/session.log
: > "$LOG"
BUILD=$ROOT/build/gpu-session
LIB=$BUILD/lib/libsegdeploy_kernels.so
ARCH=${SEGDEPLOY_CUDA_ARCH:-native}
T_START=$(date +%s)
STEPS=""

say() { echo "[$(( $(date +%s) - T_START ))s] $*" | tee -a "$LOG"; }

# step NAME TIMEOUT LOGFILE CMD... : run with a timeout, log to LOGFILE (appended), record rc and seconds.
step() {
    local name=$1 limit=$2 logfile=$3; shift 3
    say "step $name (timeout ${limit}s): $*"
    local t0=$(date +%s)
    echo "=== $name: $* ===" >> "$logfile"
    timeout --kill-after=10 "$limit" "$@" >> "$logfile" 2>&1
    local rc=$?
    local dt=$(( $(date +%s) - t0 ))
    say "step $name: rc $rc in ${dt}s"
    tail -n 5 "$logfile" | sed "s/^/    /" >> "$LOG"
    STEPS="$STEPS{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $dt},"
    return $rc
}

say "environment"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1
    nvcc --version 2>&1 | tail -n 2
    command -v compute-sanitizer || echo "compute-sanitizer: not on PATH"
    cmake --version 2>&1 | head -n 1
    $PY -c "import sys, torch, onnxruntime; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'ort', onnxruntime.__version__, onnxruntime.get_available_providers())" 2>&1
    $PY -c "import tensorrt; print('tensorrt', tensorrt.__version__)" 2>&1 | tail -n 1
} >> "$LOG" 2>&1

# 1. build the kernels library for this GPU
step build 75 "$OUT/build.log" bash -c "cmake -S . -B '$BUILD' -DSEGDEPLOY_CUDA_ARCH=$ARCH -DSEGDEPLOY_WITH_TENSORRT=OFF \
    -DCMAKE_BUILD_TYPE=Release && cmake --build '$BUILD' -j \$(nproc) --target segdeploy_kernels"
if [ -f "$LIB" ]; then
    export SEGDEPLOY_KERNELS_LIB=$LIB
    SAN_TESTS="smoke or misaligned or side_stream or arbitrary or edge_cases or mask_rcnn"
    # 2. numerical GPU tests (the sanitizer wrappers run as steps 3-4 instead)
    step pytest 80 "$OUT/pytest_gpu.log" $PY -m pytest -v -p no:cacheprovider -m gpu tests/plugins/test_kernels_gpu.py \
        -k "not under_compute_sanitizer"
    # 3-4. compute-sanitizer (PyTorch's caching allocator off, so out-of-bounds accesses hit unallocated memory)
    SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
    step memcheck 70 "$OUT/sanitizer.log" env PYTORCH_NO_CUDA_MEMORY_CACHING=1 SEGDEPLOY_UNDER_SANITIZER=1 \
        "$SAN" --tool memcheck --error-exitcode 99 \
        $PY -m pytest -q -p no:cacheprovider tests/plugins/test_kernels_gpu.py -k "$SAN_TESTS"
    step racecheck 30 "$OUT/sanitizer.log" env PYTORCH_NO_CUDA_MEMORY_CACHING=1 SEGDEPLOY_UNDER_SANITIZER=1 \
        "$SAN" --tool racecheck --error-exitcode 99 \
        $PY -m pytest -q -p no:cacheprovider tests/plugins/test_kernels_gpu.py -k smoke
    # 5. kernels vs PyTorch CUDA vs copy bandwidth (JSON on stdout)
    step plugins 45 "$OUT/plugins.err" bash -c "$PY benchmarks/plugins.py --lib '$LIB' --iters 20 > '$OUT/plugins_bench.json'"
    cat "$OUT/plugins.err" >> "$LOG" 2>/dev/null; rm -f "$OUT/plugins.err"
else
    say "no kernels library was built: GPU tests, sanitizer and kernel benchmark skipped (see build.log)"
    STEPS="$STEPS{\"step\": \"pytest\", \"rc\": null, \"skipped\": \"no library\"},"
fi

# 6. segdeploy bench of the example on this machine (the exported directory came with `carry`)
if [ -f "$PREP/shapes/manifest.json" ]; then
    BENCH_ARGS=(--runner torch-cuda --runner torch --runner ort-cpu --shape 1x3x128x128 --shape 8x3x256x256
                --iters 15 --warmup 3 --report "$OUT/bench_gpu.json")
    if ! step bench 45 "$OUT/bench_gpu.txt" $PY -m segdeploy bench examples/shapes_unet.pt2 "$PREP/shapes" "${BENCH_ARGS[@]}"; then
        say "the .pt2 did not run here (older torch?): retrying with the TorchScript copy"
        step bench_ts 45 "$OUT/bench_gpu.txt" $PY -m segdeploy bench "$PREP/shapes_unet.ts" "$PREP/shapes" "${BENCH_ARGS[@]}"
    fi
else
    say "out/gpu_session/shapes is missing: run 'bash benchmarks/gpu_session.sh --prepare' here and carry out/gpu_session"
    STEPS="$STEPS{\"step\": \"bench\", \"rc\": null, \"skipped\": \"not prepared\"},"
fi

TOTAL=$(( $(date +%s) - T_START ))
echo "{\"total_seconds\": $TOTAL, \"steps\": [${STEPS%,}]}" > "$OUT/summary.json"
say "done in ${TOTAL}s; files in $OUT:"
ls -la "$OUT" | tee -a "$LOG"
if grep -q '"rc": [1-9]' "$OUT/summary.json" || grep -q '"rc": null' "$OUT/summary.json"; then
    exit 1
fi
exit 0
