#!/usr/bin/env bash
# Compile-check segdeploy's TensorRT plugin glue (segdeploy/plugins/trt/*.cpp) against TensorRT headers that
# YOU supply -- a TensorRT install's include/ directory, or NVIDIA's Apache-2.0 headers from a release tag of
# github.com/NVIDIA/TensorRT (include/NvInfer*.h). This script downloads nothing and writes nothing.
#
# usage: scripts/check_trt_headers.sh TRT_INCLUDE_DIR [CUDA_INCLUDE_DIR]
#   TRT_INCLUDE_DIR   directory containing NvInfer.h and NvInferVersion.h (TensorRT >= 10; 8.6 is unsupported)
#   CUDA_INCLUDE_DIR  directory containing cuda_runtime_api.h; default: $CUDA_HOME/include, else the include
#                     directory nvcc reports, else /usr/local/cuda/include
# environment: CXX (default g++) -- the host compiler, run with -std=c++17 -fsyntax-only -Wall -Wextra -Werror
#              (TensorRT/CUDA headers are -isystem, so their own deprecation warnings do not count);
#              SEGDEPLOY_CHECK_NVCC=1 -- also compile each file with nvcc -x cu (to /dev/null).
# exit status: 0 all files compile, 1 a file failed, 2 usage/missing headers.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  sed -n '2,14p' "$0" >&2
  exit 2
fi
TRT_INC=$1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ ! -f "$TRT_INC/NvInfer.h" || ! -f "$TRT_INC/NvInferVersion.h" ]]; then
  echo "error: $TRT_INC has no NvInfer.h/NvInferVersion.h; pass the include/ directory of your TensorRT headers" >&2
  exit 2
fi

find_cuda_include() {
  if [[ -n "${CUDA_HOME:-}" && -f "$CUDA_HOME/include/cuda_runtime_api.h" ]]; then echo "$CUDA_HOME/include"; return; fi
  if command -v nvcc >/dev/null 2>&1; then
    local inc
    inc=$(nvcc -x cu --dryrun -c /dev/null -o /dev/null 2>&1 | sed -n 's/.*INCLUDES="-I\([^"]*\)".*/\1/p' | head -1)
    if [[ -n "$inc" && -f "$inc/cuda_runtime_api.h" ]]; then echo "$inc"; return; fi
  fi
  if [[ -f /usr/local/cuda/include/cuda_runtime_api.h ]]; then echo /usr/local/cuda/include; return; fi
  echo ""
}
CUDA_INC=${2:-$(find_cuda_include)}
if [[ -z "$CUDA_INC" || ! -f "$CUDA_INC/cuda_runtime_api.h" ]]; then
  echo "error: cuda_runtime_api.h not found; pass the CUDA include directory as the second argument" >&2
  exit 2
fi

version() {
  local f="$TRT_INC/NvInferVersion.h" maj min pat
  maj=$(sed -n 's/^#define \(NV_TENSORRT_MAJOR\|TRT_MAJOR_ENTERPRISE\) \([0-9]\+\).*/\2/p' "$f" | head -1)
  min=$(sed -n 's/^#define \(NV_TENSORRT_MINOR\|TRT_MINOR_ENTERPRISE\) \([0-9]\+\).*/\2/p' "$f" | head -1)
  pat=$(sed -n 's/^#define \(NV_TENSORRT_PATCH\|TRT_PATCH_ENTERPRISE\) \([0-9]\+\).*/\2/p' "$f" | head -1)
  echo "${maj}.${min}.${pat}"
}

CXX=${CXX:-g++}
INCS=(-isystem "$TRT_INC" -isystem "$CUDA_INC" -I "$ROOT/segdeploy/plugins/csrc" -I "$ROOT/segdeploy/plugins/trt")
FLAGS=(-std=c++17 -Wall -Wextra -Werror "${INCS[@]}")
echo "TensorRT headers: $TRT_INC (version $(version)); CUDA headers: $CUDA_INC; compiler: $($CXX --version | head -1)"
status=0
for src in "$ROOT"/segdeploy/plugins/trt/*.cpp; do
  if "$CXX" "${FLAGS[@]}" -fsyntax-only "$src"; then
    echo "ok    $CXX -fsyntax-only $(basename "$src")"
  else
    echo "FAIL  $CXX -fsyntax-only $(basename "$src")"
    status=1
  fi
  if [[ "${SEGDEPLOY_CHECK_NVCC:-0}" == 1 ]]; then
    if nvcc -x cu -std=c++17 -Xcompiler=-Wall,-Wextra "${INCS[@]}" -c "$src" -o /dev/null; then
      echo "ok    nvcc -x cu $(basename "$src")"
    else
      echo "FAIL  nvcc -x cu $(basename "$src")"
      status=1
    fi
  fi
done
exit $status
