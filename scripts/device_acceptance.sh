#!/usr/bin/env bash
# segdeploy's device acceptance: the ONE command that proves the whole path on a machine with a GPU and TensorRT.
#
#   bash scripts/device_acceptance.sh             run every step (about 6-9 minutes on one GPU), then the verdict
#   bash scripts/device_acceptance.sh --dry-run   say which steps would run and which are skipped, and why; exit 0
#   options: --work DIR (default out/device_acceptance; an earlier run's is emptied, any other non-empty one
#            refused), -h/--help
#
# Steps (each with its own time limit; a failed step never stops the next one):
#   plugins      segdeploy plugins build: libsegdeploy_kernels.so, + libsegdeploy_trt_plugins.so (TensorRT >= 10)
#   export       the example (examples/shapes_unet.pt2) -> ONNX, FP16 and INT8 (Q/DQ) ONNX, calibration cache (CPU)
#   engines      segdeploy build: fp32, fp16, int8 engines (+ int8-implicit where TensorRT has it: 8.6, 10.x)
#   check-P      segdeploy check of each engine against PyTorch on calibration/shapes/val: the mIoU drift, gated
#   segnet       a SegNet (segdeploy.zoo, seeded): export -> model.trt.onnx -> fp32 engine with the plugins -> check
#   cpp          segdeploy bundle + its build.sh (C++ runner, smoke test vs ONNX Runtime maps), then segdeploy_infer's
#                class maps vs the Python TensorRT runner's on the bundled samples (same engine)
#   lean         a version-compatible plan loaded by the lean runtime (tensorrt_lean), vs the full runtime
#   kernels      the plugin kernels' GPU tests, memcheck and racecheck under compute-sanitizer
#                (tests/plugins/test_kernels_gpu.py, the tests benchmarks/gpu_session.sh runs)
# The last lines are the verdict table: step, PASS / FAIL / SKIP, seconds, what was measured or why it was skipped.
# Files: $WORK/logs/<step>.log, $WORK/summary.json (the table as JSON).
#
# Environment: PYTHON (default python3: needs segdeploy importable, torch with CUDA, tensorrt), TRTEXEC (not needed:
#   engines are built by segdeploy), SEGDEPLOY_DOCTOR_JSON (a saved `segdeploy doctor --json` document to decide from
#   instead of asking this machine: for tests of the plan).
# Exit status: 0 every required step passed (a step can be n/a: int8-implicit on TensorRT 11); 1 a step failed, or a
#   required step was skipped (this machine cannot prove the path: the verdict says what is missing); 2 usage.
#   --dry-run: 0.
# shellcheck disable=SC2329  # the step_* functions are called by name (run_step)
set -u
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
PY=${PYTHON:-python3}
WORK=$ROOT/out/device_acceptance
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --work) [ $# -ge 2 ] || { echo "error: --work needs a directory; see --help" >&2; exit 2; }; WORK=$2; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ && !/shellcheck/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "error: unknown option $1; see scripts/device_acceptance.sh --help" >&2; exit 2 ;;
  esac
  shift
done
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
EXAMPLE=examples/shapes_unet.pt2
CALIB=calibration/shapes/calib
VAL=calibration/shapes/val
CLASSES=background,circle,square,triangle,ring,star
# mIoU drop budget (points) per engine vs PyTorch on the validation split; SegNet (random weights: near-tied logits)
# is gated on pixel agreement instead
declare -A MAX_DROP=([fp32]=0.5 [fp16]=0.5 [int8]=1.5 [int8-implicit]=3.0)
SEGNET_MIN_AGREEMENT=95
CPP_MIN_AGREEMENT=99.9
T0=$(date +%s)
LIMIT=60  # the running step's time limit (run_step sets it)

say() { printf '[%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

# ------------------------------------------------------------------------------------------------ what is here
# probe: sets GPU, TRT, LEAN, HEADERS, NVCC, CMAKE, SANITIZER, CPP_DEPS, SEGDEPLOY (values or "") and *_WHY (reasons),
# from `segdeploy doctor --json` (the one account of what this machine can do) plus the tools doctor does not ask about.
probe() {
  local doc kv
  SEGDEPLOY="" GPU="" TRT="" LEAN="" HEADERS="" NVCC="" CMAKE=""
  SEGDEPLOY_WHY="" GPU_WHY="" TRT_WHY="" LEAN_WHY="" HEADERS_WHY="" NVCC_WHY="" CMAKE_WHY=""
  if [ -n "${SEGDEPLOY_DOCTOR_JSON:-}" ]; then
    doc=$(cat "$SEGDEPLOY_DOCTOR_JSON") || doc=""
  else
    doc=$("$PY" -m segdeploy doctor --json 2>/dev/null) || true
  fi
  kv=$(printf '%s' "$doc" | "$PY" -c '
import json, sys
try:
    probes = json.load(sys.stdin)["stages"]["doctor"]["probes"]
except Exception as e:
    print("SEGDEPLOY_WHY=segdeploy doctor did not answer (%s): is segdeploy importable by this Python?" % type(e).__name__)
    sys.exit(0)
def value(name):
    p = probes.get(name) or {}
    return p.get("value") if p.get("status") == "ok" else None
def why(name):
    p = probes.get(name) or {}
    return p.get("note") or p.get("error") or name + " not found"
gpus = value("gpu") or []
cuda = (value("torch") or {}).get("cuda_available")
trt, lean, headers = value("tensorrt") or {}, value("tensorrt_lean") or {}, value("tensorrt_headers") or {}
print("SEGDEPLOY=%s" % (value("segdeploy") or ""))
print("GPU=%s" % ((gpus[0]["name"] if gpus else "a CUDA GPU") if cuda else ""))
print("GPU_WHY=%s" % (why("gpu") if not gpus else "torch.cuda.is_available() is False (the TensorRT runner needs torch with CUDA)"))
print("TRT=%s" % (trt.get("version") or "" if trt.get("has_builder", True) else ""))
print("TRT_WHY=%s" % (why("tensorrt") if not trt else "the tensorrt module has no Builder"))
print("LEAN=%s" % ("%s %s" % (lean["module"], lean["version"]) if lean else ""))
print("LEAN_WHY=%s" % why("tensorrt_lean"))
print("HEADERS=%s" % (headers.get("dir") or ""))
print("HEADERS_WHY=%s" % why("tensorrt_headers"))
for key, name in (("NVCC", "nvcc"), ("CMAKE", "cmake")):
    print("%s=%s" % (key, value(name) or ""))
    print("%s_WHY=%s" % (key, why(name)))
' 2>/dev/null)
  while IFS='=' read -r key value; do
    case "$key" in
      SEGDEPLOY|GPU|TRT|LEAN|HEADERS|NVCC|CMAKE|SEGDEPLOY_WHY|GPU_WHY|TRT_WHY|LEAN_WHY|HEADERS_WHY|NVCC_WHY|CMAKE_WHY)
        printf -v "$key" '%s' "$value" ;;
    esac
  done <<< "$kv"
  [ -n "$SEGDEPLOY" ] || SEGDEPLOY_WHY=${SEGDEPLOY_WHY:-segdeploy is not importable by $PY}
  TRT=${TRT%%[!0-9.]*}
  SANITIZER=$(command -v compute-sanitizer 2>/dev/null || true)
  if [ -z "$SANITIZER" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ]; then SANITIZER=/usr/local/cuda/bin/compute-sanitizer; fi
  CPP_DEPS=1 CPP_WHY=""
  if ! [ -f /usr/include/png.h ] && ! [ -f /usr/local/include/png.h ]; then
    CPP_DEPS="" CPP_WHY="libpng headers not found (apt install libpng-dev)"
  elif ! [ -f /usr/include/nlohmann/json.hpp ] && ! "$PY" -c 'import nlohmann_json' 2>/dev/null; then
    CPP_DEPS="" CPP_WHY="nlohmann-json not found (apt install nlohmann-json3-dev, or pip install nlohmann-json)"
  fi
  DEVICE=x86
  if [ -r /proc/device-tree/compatible ]; then
    if tr '\0' '\n' < /proc/device-tree/compatible | grep -q tegra264; then DEVICE=thor
    elif tr '\0' '\n' < /proc/device-tree/compatible | grep -q tegra234; then DEVICE=orin
    fi
  fi
}

# ------------------------------------------------------------------------------------------------ the plan
# requires STEP: sets WHY to the first missing prerequisite of STEP ("" when it can run)
requires() {
  WHY=""
  local major=${TRT%%.*}
  case "$1" in
    export) [ -n "$SEGDEPLOY" ] || WHY=$SEGDEPLOY_WHY ;;
    plugins|kernels)
      if [ -z "$SEGDEPLOY" ]; then WHY=$SEGDEPLOY_WHY
      elif [ -z "$NVCC" ]; then WHY="no nvcc: $NVCC_WHY"
      elif [ -z "$CMAKE" ]; then WHY="no cmake: $CMAKE_WHY"
      elif [ "$1" = kernels ] && [ -z "$GPU" ]; then WHY="no GPU: $GPU_WHY"
      fi ;;
    engines|check-*|lean|cpp|segnet)
      if [ -z "$SEGDEPLOY" ]; then WHY=$SEGDEPLOY_WHY
      elif [ -z "$GPU" ]; then WHY="no GPU: $GPU_WHY"
      elif [ -z "$TRT" ]; then WHY="no TensorRT: $TRT_WHY"
      fi ;;
  esac
  [ -n "$WHY" ] && return 1
  case "$1" in
    check-int8-implicit) if [ "$major" = 11 ]; then WHY="n/a: TensorRT $TRT has no implicit INT8 (removed in 11)"; fi ;;
    segnet)
      if [ "$major" = 8 ]; then WHY="n/a: TensorRT $TRT has no IPluginV3 (segdeploy's plugins need 10+)"
      elif [ -z "$NVCC" ] || [ -z "$CMAKE" ]; then WHY="the plugin library cannot be built: no nvcc or cmake"
      elif [ -z "$HEADERS" ]; then WHY="the plugin library cannot be built: $HEADERS_WHY"
      fi ;;
    cpp)
      if [ -z "$NVCC" ] || [ -z "$CMAKE" ]; then WHY="the C++ runner cannot be built: no nvcc or cmake"
      elif [ -z "$CPP_DEPS" ]; then WHY="the C++ runner cannot be built: $CPP_WHY"
      fi ;;
    lean) [ -n "$LEAN" ] || WHY="no lean runtime module: $LEAN_WHY (pip install tensorrt-lean)" ;;
  esac
  [ -z "$WHY" ]
}

STEPS=(plugins export engines check-fp32 check-fp16 check-int8 check-int8-implicit segnet cpp lean kernels)
OPTIONAL=" lean "  # a skipped optional step does not fail the run (n/a steps never do)

# ------------------------------------------------------------------------------------------------ running
declare -A STATUS SECONDS_OF DETAIL
# run_step NAME LIMIT FUNC: FUNC (a function below) runs with its output in logs/NAME.log and sets DETAIL[NAME]
run_step() {
  local name=$1 limit=$2 fn=$3 t0 rc
  if ! requires "$name"; then
    STATUS[$name]=SKIP; SECONDS_OF[$name]=0; DETAIL[$name]=$WHY
    say "$name: skipped ($WHY)"
    return 0
  fi
  say "$name: running (limit ${limit}s; log $WORK/logs/$name.log)"
  t0=$(date +%s)
  DETAIL[$name]=""
  LIMIT=$limit "$fn" > "$WORK/logs/$name.log" 2>&1
  rc=$?
  SECONDS_OF[$name]=$(( $(date +%s) - t0 ))
  if [ "$rc" = 0 ]; then STATUS[$name]=PASS; else STATUS[$name]=FAIL; fi
  if [ "$rc" = 124 ]; then DETAIL[$name]="timed out after ${limit}s; ${DETAIL[$name]}"; fi
  if [ "$rc" != 0 ] && [ -z "${DETAIL[$name]}" ]; then
    DETAIL[$name]="exit $rc: $(grep -m1 '^error' "$WORK/logs/$name.log" || tail -n 1 "$WORK/logs/$name.log")"
  fi
  say "$name: ${STATUS[$name]} in ${SECONDS_OF[$name]}s ${DETAIL[$name]}"
}

# t CMD...: run CMD under the step's time limit (LIMIT)
t() { timeout --kill-after=10 "$LIMIT" "$@"; }
sd() { t "$PY" -m segdeploy "$@"; }

step_plugins() {
  sd plugins build --build-dir "$WORK/plugins" --json > "$WORK/plugins.json" || return $?
  [ -f "$WORK/plugins/lib/libsegdeploy_kernels.so" ] || { DETAIL[plugins]="no kernels library built"; return 1; }
  if [ -f "$WORK/plugins/lib/libsegdeploy_trt_plugins.so" ]; then
    DETAIL[plugins]="kernels + TensorRT plugin library (lib/)"
  else
    DETAIL[plugins]="kernels library only (no TensorRT >= 10 headers: the SegNet step needs the plugin library)"
  fi
}

step_export() {
  sd export "$EXAMPLE" --out "$WORK/shapes" --shape 1x3x128x128 --class-names "$CLASSES" --int8 --fp16 \
    --calib "$CALIB" --calib-size 32 --val "$VAL" || return $?
  DETAIL[export]="model.onnx, model.fp16.onnx, model.int8.onnx, model.calib.cache"
}

step_engines() {
  local precs=fp32,fp16,int8 extra=()
  if requires check-int8-implicit; then
    precs=$precs,int8-implicit
    # the export wrote the cache header of its target (the installed TensorRT; an older segdeploy: JetPack 6.2's
    # 10.3.0): only when it differs from this TensorRT is the header re-stamped for the build (the file is unchanged)
    if ! "$PY" - "$WORK/shapes/model.calib.cache" "$TRT" <<'EOF'
import sys

from segdeploy.trt.calibrator import read_cache_header
from segdeploy.trt.versions import trt_version_code

sys.exit(0 if read_cache_header(sys.argv[1]).code == trt_version_code(".".join(sys.argv[2].split(".")[:3])) else 1)
EOF
    then
      extra=(--rewrite-calib-header)
    fi
  fi
  sd build "$WORK/shapes" --precision "$precs" "${extra[@]}" || return $?
  DETAIL[engines]="$precs with TensorRT $TRT on $GPU${extra[*]:+ (cache header re-stamped: ${extra[*]})}"
}

# check_engine PRECISION: segdeploy check of model.PRECISION.engine vs PyTorch on the validation split
check_engine() {
  local p=$1 rc
  t "$PY" -m segdeploy check --reference "$EXAMPLE" --candidate "$WORK/shapes/model.$p.engine" \
    --data "$VAL/images" --masks "$VAL/masks" --max-miou-drop "${MAX_DROP[$p]}" --device cuda --json \
    > "$WORK/check.$p.json"
  rc=$?
  DETAIL[check-$p]=$("$PY" - "$WORK/check.$p.json" "${MAX_DROP[$p]}" <<'EOF' 2>/dev/null || echo "no report (exit $rc)"
import json, sys
c = json.load(open(sys.argv[1]))["stages"]["check"]["metrics"]
print("mIoU %.2f -> %.2f (drop %.3f points, budget %s), pixel agreement %.3f%%" % (
    100 * c["reference"]["miou"], 100 * c["candidate"]["miou"], -c["drift"]["miou_points"], sys.argv[2],
    100 * c["agreement"]["pixel_accuracy"]))
EOF
)
  return "$rc"
}
step_check_fp32() { check_engine fp32; }
step_check_fp16() { check_engine fp16; }
step_check_int8() { check_engine int8; }
step_check_int8_implicit() { check_engine int8-implicit; }

step_segnet() {
  local lib=$WORK/plugins/lib/libsegdeploy_trt_plugins.so rc
  [ -f "$lib" ] || { DETAIL[segnet]="the plugins step built no plugin library"; return 1; }
  t "$PY" -c "import torch; from segdeploy.zoo import create; torch.manual_seed(0); \
torch.save(create('segnet', num_classes=4).state_dict(), '$WORK/segnet.pt')" || return $?
  sd export --model segdeploy.zoo.segnet:segnet --model-arg num_classes=4 --weights "$WORK/segnet.pt" \
    --out "$WORK/segnet" --shape 1x3x64x64 --max-batch 2 || return $?
  [ -f "$WORK/segnet/model.trt.onnx" ] || { DETAIL[segnet]="the export wrote no model.trt.onnx"; return 1; }
  sd build "$WORK/segnet" --precision fp32 --plugins "$lib" || return $?
  t "$PY" -m segdeploy check --model segdeploy.zoo.segnet:segnet --model-arg num_classes=4 --weights "$WORK/segnet.pt" \
    --candidate "$WORK/segnet/model.fp32.engine" --plugins "$lib" --data "$VAL/images" \
    --min-agreement "$SEGNET_MIN_AGREEMENT" --json > "$WORK/check.segnet.json"
  rc=$?
  DETAIL[segnet]=$("$PY" -c "import json, sys; c = json.load(open(sys.argv[1]))['stages']['check']['metrics']; \
print('plugins pool/unpool in the engine; pixel agreement with PyTorch %.3f%% (gate %s%%)' % \
(100 * c['agreement']['pixel_accuracy'], sys.argv[2]))" "$WORK/check.segnet.json" "$SEGNET_MIN_AGREEMENT" 2>/dev/null \
    || echo "no report (exit $rc)")
  return "$rc"
}

step_cpp() {
  local b=$WORK/bundle p stem n=0 bad=0
  sd bundle "$WORK/shapes" --out "$b" --target "$DEVICE" --precision fp32,fp16 --num-samples 4 --no-archive || return $?
  # build.sh builds the engines with `python3 -m segdeploy build` when python3 has segdeploy and TensorRT: this Python
  mkdir -p "$WORK/bin" && printf '#!/bin/sh\nexec %q "$@"\n' "$(command -v "$PY")" > "$WORK/bin/python3" &&
    chmod +x "$WORK/bin/python3" || return 1
  (cd "$b" && PATH=$WORK/bin:$PATH t bash build.sh) || { DETAIL[cpp]="build.sh failed (see the log)"; return 1; }
  t "$PY" - "$b" "$WORK/pymaps" <<'EOF' || return $?
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from segdeploy.datasets import Dataset, Entry
from segdeploy.evaluation import PredictionLoop
from segdeploy.exportdir import ExportDir
from segdeploy.runners import open_runner

bundle, out = Path(sys.argv[1]), Path(sys.argv[2])
ed = ExportDir.open(bundle / "model", verify=False)
images = sorted((bundle / "samples" / "images").glob("*.png"))
for engine in sorted((bundle / "engines").glob("model.*.engine")):
    precision = engine.name.split(".")[1]
    (out / precision).mkdir(parents=True, exist_ok=True)
    runner = open_runner(str(engine), kind="tensorrt")
    try:
        ds = Dataset([Entry(p.stem, str(p)) for p in images], description="bundle samples")
        for pred in PredictionLoop(ds, {"python": runner}, ed.preprocess, ed.profile, batch_size=1):
            Image.fromarray(pred.maps["python"].astype(np.uint8), mode="L").save(out / precision / f"{pred.stem}.png")
    finally:
        runner.close()
EOF
  for p in fp32 fp16; do
    for img in "$b"/samples/images/*.png; do
      stem=$(basename "$img" .png)
      n=$((n + 1))
      if ! t "$b/build/runtime/segdeploy_infer" "$b/engines/model.$p.engine" "$b/model/manifest.json" "$img" \
          "$WORK/pymaps/$p/$stem.cpp.png" --compare "$WORK/pymaps/$p/$stem.png" --min-agreement "$CPP_MIN_AGREEMENT"; then
        bad=$((bad + 1))
      fi
    done
  done
  DETAIL[cpp]="build.sh smoke test passed; segdeploy_infer vs the Python runner: $((n - bad))/$n maps >= $CPP_MIN_AGREEMENT% equal"
  [ "$bad" = 0 ]
}

step_lean() {
  rm -rf "$WORK/vc" && cp -r "$WORK/shapes" "$WORK/vc" || return 1
  sd build "$WORK/vc" --precision fp32 --version-compatible || return $?
  DETAIL[lean]=$(t "$PY" - "$WORK/vc/model.fp32.engine" <<'EOF'
import sys

import numpy as np

from segdeploy.runners.tensorrt import TensorRTOptions, TensorRTRunner

x = np.random.default_rng(0).standard_normal((2, 3, 128, 160)).astype(np.float32)
outs = {}
for runtime in ("full", "lean"):
    r = TensorRTRunner(sys.argv[1], TensorRTOptions(runtime=runtime, version_compatible=True, trust_host_code=True))
    r.open()
    try:
        outs[runtime] = (r.infer(x), r.describe()["module"], r.describe()["tensorrt"])
    finally:
        r.close()
(full, _, fv), (lean, lm, lv) = outs["full"], outs["lean"]
agree = float((full.argmax(1) == lean.argmax(1)).mean())
print(f"lean {lm} {lv} loaded the plan of TensorRT {fv}: max|diff| {np.abs(full - lean).max():.2e}, "
      f"argmax agreement {100 * agree:.3f}%")
sys.exit(0 if agree >= 0.999 else 1)
EOF
) || return $?
}

step_kernels() {
  local lib=$WORK/plugins/lib/libsegdeploy_kernels.so
  [ -f "$lib" ] || { DETAIL[kernels]="the plugins step built no kernels library"; return 1; }
  SEGDEPLOY_KERNELS_LIB=$lib t "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs tests/plugins/test_kernels_gpu.py \
    || return $?
  if [ -n "$SANITIZER" ]; then
    DETAIL[kernels]="GPU tests passed, incl. memcheck + racecheck under $SANITIZER"
  else
    DETAIL[kernels]="GPU tests passed; compute-sanitizer not found: memcheck/racecheck skipped"
  fi
}

LIMITS=([0]=240 [1]=240 [2]=420 [3]=90 [4]=90 [5]=90 [6]=90 [7]=300 [8]=360 [9]=240 [10]=240)

# ------------------------------------------------------------------------------------------------ main
probe
if [ "$DRY" = 1 ]; then
  echo "device acceptance --dry-run: Python $PY, segdeploy ${SEGDEPLOY:-not importable ($SEGDEPLOY_WHY)}"
  echo "  GPU                  ${GPU:-none ($GPU_WHY)}"
  echo "  TensorRT             ${TRT:-none ($TRT_WHY)}"
  echo "  lean runtime         ${LEAN:-none ($LEAN_WHY)}"
  echo "  TensorRT headers     ${HEADERS:-none ($HEADERS_WHY)}"
  echo "  nvcc / cmake         ${NVCC:-none} / ${CMAKE:-none}"
  echo "  compute-sanitizer    ${SANITIZER:-none (the kernels step then runs without memcheck/racecheck)}"
  echo "  C++ runner deps      $([ -n "$CPP_DEPS" ] && echo "libpng + nlohmann-json found" || echo "$CPP_WHY")"
  echo "  bundle target        $DEVICE"
  echo "steps:"
  for i in "${!STEPS[@]}"; do
    name=${STEPS[$i]}
    if requires "$name"; then
      printf '  %-20s RUN   (limit %ss)\n' "$name" "${LIMITS[$i]}"
    else
      printf '  %-20s SKIP  %s\n' "$name" "$WHY"
    fi
  done
  echo "dry run: nothing was run"
  exit 0
fi

MARK=.segdeploy-device-acceptance  # an earlier run's directory is emptied; nothing else ever is
if [ -d "$WORK" ] && [ -n "$(ls -A "$WORK")" ] && [ ! -f "$WORK/$MARK" ]; then
  echo "error: $WORK is not empty and not an earlier acceptance run; pass --work DIR (new or empty)" >&2
  exit 1
fi
if ! { rm -rf "$WORK" && mkdir -p "$WORK/logs" && : > "$WORK/$MARK"; }; then
  echo "error: cannot create $WORK; pass --work DIR" >&2
  exit 1
fi
say "device acceptance in $WORK: GPU ${GPU:-none}, TensorRT ${TRT:-none}, segdeploy ${SEGDEPLOY:-none}"
for i in "${!STEPS[@]}"; do
  name=${STEPS[$i]}
  run_step "$name" "${LIMITS[$i]}" "step_${name//-/_}"
done

# ------------------------------------------------------------------------------------------------ verdict
rc=0
echo
printf '%-20s %-5s %6s  %s\n' step result time detail
json=""
for name in "${STEPS[@]}"; do
  s=${STATUS[$name]} d=${DETAIL[$name]}
  printf '%-20s %-5s %5ss  %s\n' "$name" "$s" "${SECONDS_OF[$name]}" "$d"
  if [ "$s" = FAIL ]; then rc=1; fi
  if [ "$s" = SKIP ] && [ "${d#n/a}" = "$d" ] && [ "${OPTIONAL/ $name /}" = "$OPTIONAL" ]; then rc=1; fi
  json+=$(printf '{"step": "%s", "result": "%s", "seconds": %s, "detail": %s},' "$name" "$s" "${SECONDS_OF[$name]}" \
    "$("$PY" -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$d" 2>/dev/null || echo '""')")
done
total=$(( $(date +%s) - T0 ))
printf '{"total_seconds": %s, "tensorrt": "%s", "gpu": "%s", "passed": %s, "steps": [%s]}\n' "$total" "$TRT" "$GPU" \
  "$([ $rc = 0 ] && echo true || echo false)" "${json%,}" > "$WORK/summary.json"
if [ "$rc" = 0 ]; then
  echo "VERDICT: PASS -- the whole path works on this machine (${total}s; $WORK/summary.json)"
else
  echo "VERDICT: NOT PROVEN -- a step failed or a required step was skipped (${total}s; logs in $WORK/logs)"
fi
exit "$rc"
