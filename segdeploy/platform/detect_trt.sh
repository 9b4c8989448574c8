#!/bin/sh
# Print the TensorRT version of this machine as major.minor.patch (e.g. 10.3.0), exit 0.
# Exit 1 with a message on stderr when no TensorRT is found.
#
# Order (the same as segdeploy.platform.tensorrt_version.detect_tensorrt_version, keep them in step):
#   1. the tensorrt Python module:  $PYTHON -c 'import tensorrt; print(tensorrt.__version__)'
#   2. dpkg-query over $SEGDEPLOY_ROOT/var/lib/dpkg: tensorrt, libnvinfer-bin, libnvinfer-dev,
#      libnvinfer11, libnvinfer10, libnvinfer8 (first installed one wins)
#   3. NvInferVersion.h in $SEGDEPLOY_ROOT/usr/include, /usr/include/aarch64-linux-gnu,
#      /usr/include/x86_64-linux-gnu, /usr/local/cuda/include
# Environment:
#   PYTHON          interpreter for step 1 (default: python3 from PATH)
#   SEGDEPLOY_ROOT  root of the tree for steps 2-3 (default: empty, i.e. /), for chroots and tests
# Options: -v  say on stderr which step answered.

set -u

verbose=0
case "${1:-}" in
    -v) verbose=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    "") ;;
    *) echo "detect_trt.sh: unknown option $1 (use -v or --help)" >&2; exit 2 ;;
esac

root="${SEGDEPLOY_ROOT:-}"
root="${root%/}"
python="${PYTHON:-python3}"

say() {
    if [ "$verbose" -eq 1 ]; then
        echo "detect_trt.sh: $*" >&2
    fi
}

# major.minor.patch prefix of $1 (empty when $1 does not start with one)
normalize() {
    printf '%s\n' "$1" | sed -n 's/^\([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\).*/\1/p'
}

# 1. Python module
if command -v "$python" >/dev/null 2>&1; then
    v=$("$python" -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null | tail -n 1)
    v=$(normalize "${v:-}")
    if [ -n "$v" ]; then
        say "from the Python module ($python)"
        echo "$v"
        exit 0
    fi
fi

# 2. dpkg-query
admindir="$root/var/lib/dpkg"
if command -v dpkg-query >/dev/null 2>&1 && [ -f "$admindir/status" ]; then
    for pkg in tensorrt libnvinfer-bin libnvinfer-dev libnvinfer11 libnvinfer10 libnvinfer8; do
        # shellcheck disable=SC2016  # ${Status} and ${Version} are dpkg-query fields, not shell variables
        line=$(dpkg-query --admindir="$admindir" -W -f='${Status} ${Version}\n' "$pkg" 2>/dev/null)
        case "$line" in
            *" installed "*)
                deb=${line##* }
                deb=${deb#*:}
                v=$(normalize "$deb")
                if [ -n "$v" ]; then
                    say "from dpkg package $pkg ($deb)"
                    echo "$v"
                    exit 0
                fi
                ;;
        esac
    done
fi

# 3. NvInferVersion.h
define_value() {  # define_value FILE NAME -> the value of '#define NAME value', one macro alias followed
    val=$(awk -v n="$2" '$1 == "#define" && $2 == n { print $3; exit }' "$1")
    case "$val" in
        ''|*[!0-9]*)
            if [ -n "$val" ]; then
                val=$(awk -v n="$val" '$1 == "#define" && $2 == n { print $3; exit }' "$1")
            fi
            ;;
    esac
    case "$val" in
        ''|*[!0-9]*) echo "" ;;
        *) echo "$val" ;;
    esac
}

for dir in usr/include usr/include/aarch64-linux-gnu usr/include/x86_64-linux-gnu usr/local/cuda/include; do
    header="$root/$dir/NvInferVersion.h"
    if [ -f "$header" ]; then
        major=$(define_value "$header" NV_TENSORRT_MAJOR)
        minor=$(define_value "$header" NV_TENSORRT_MINOR)
        patch=$(define_value "$header" NV_TENSORRT_PATCH)
        if [ -n "$major" ] && [ -n "$minor" ] && [ -n "$patch" ]; then
            say "from $header"
            echo "$major.$minor.$patch"
            exit 0
        fi
        say "$header has no NV_TENSORRT_MAJOR/MINOR/PATCH"
    fi
done

echo "detect_trt.sh: no TensorRT found (no 'import tensorrt' in $python, no installed tensorrt/libnvinfer" \
     "package, no NvInferVersion.h under ${root:-/}); install TensorRT (Jetson: JetPack's" \
     "python3-libnvinfer and libnvinfer-bin; x86: pip install tensorrt)" >&2
exit 1
