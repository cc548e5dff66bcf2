#!/usr/bin/env bash
# Build a MinkowskiEngine 0.5.4 wheel against the torch of one Python environment, or find it
# in the wheel cache.
#
#   scripts/build_minkowski.sh PYTHON cpu|cuda               # prints the folder holding the wheel
#   scripts/build_minkowski.sh --print-key PYTHON cpu|cuda   # prints the cache key only
#
# PYTHON is the interpreter of the environment whose torch the extension is built against; the
# environment itself is left untouched (the wheel is installed by the caller).
#
# Environment knobs:
#   CECO3D_CACHE          sdist, build tools, CUDA compiler packages and built wheels
#                         (default: ${XDG_CACHE_HOME:-~/.cache}/ceco3d)
#   MAX_JOBS              parallel compile jobs (default: number of cores)
#   TORCH_CUDA_ARCH_LIST  GPU architectures of a CUDA build (default: "8.0;8.6;9.0+PTX": A100,
#                         RTX 30xx / A10 / A40, H100 / H200, and PTX that newer GPUs compile)
#   CUDA_HOME             a CUDA toolkit to compile with. Default: the first of CUDA_HOME,
#                         /usr/local/cuda and the nvcc on the PATH whose version is torch's CUDA
#                         version; else NVIDIA's nvcc packages of that version, installed with pip
#                         into the cache. The CUDA libraries' headers (cuBLAS, cuSPARSE, ...) come
#                         from the toolkit or from the NVIDIA packages installed with torch.
# pip's own variables apply to its downloads: PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR builds offline
# from wheels in DIR (setuptools<70, wheel, ninja) and the sdist already in the cache.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PRINT_KEY=0
if [[ "${1:-}" == --print-key ]]; then PRINT_KEY=1; shift; fi
[[ $# -eq 2 && ( "$2" == cpu || "$2" == cuda ) ]] \
    || { echo "usage: $0 [--print-key] PYTHON cpu|cuda" >&2; exit 2; }
PY="$1"
KIND="$2"
CACHE="${CECO3D_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ceco3d}"
ME_VERSION=0.5.4
ME_SHA256=b1879c00d0b0b1d30ba622cce239886a7e3c78ee9da1064cdfe2f64c2ab15f94
ME_PATCH="$ROOT/scripts/patches/minkowskiengine-$ME_VERSION.patch"
# Applied after ME_PATCH in CUDA builds only: it changes nothing that a CPU build compiles.
ME_CUDA_PATCH="$ROOT/scripts/patches/minkowskiengine-$ME_VERSION-cuda.patch"
# Applied after ME_PATCH in CPU builds only: the CPU convolution's row gathers and scatter-adds
# on OpenMP threads (docs/cpu_speed.md); a GPU build does not train on the CPU.
ME_CPU_PATCH="$ROOT/scripts/patches/minkowskiengine-$ME_VERSION-cpu.patch"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-8.0;8.6;9.0+PTX}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

T0=$(date +%s)
step() { printf '[build-me %4ss] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
die() { printf '[build-me] ERROR: %s\n' "$*" >&2; exit 1; }

read -r TORCH_VERSION TORCH_CUDA PYTAG TORCH_SITE < <("$PY" -W ignore - <<'EOF'
import pathlib, sys, torch
site = pathlib.Path(torch.__file__).resolve().parents[1]
print(torch.__version__, torch.version.cuda or "none", f"cp{sys.version_info[0]}{sys.version_info[1]}", site)
EOF
) || die "cannot import torch with $PY"

if [[ $KIND == cpu ]]; then
    PATCHES=("$ME_PATCH" "$ME_CPU_PATCH")
    # The OpenMP build of OpenBLAS, found first through the extension's RUNPATH: its GEMMs then
    # run on torch's OpenMP threads instead of a second pool of OpenBLAS threads that competes
    # with them for the cores (docs/cpu_speed.md). scripts/setup.sh installs it.
    OPENBLAS_OPENMP=$(ls -d /usr/lib/*/openblas-openmp /usr/lib64/openblas-openmp 2>/dev/null \
        | head -n 1 || true)
    [[ -n "$OPENBLAS_OPENMP" && -e "$OPENBLAS_OPENMP/libopenblas.so.0" ]] \
        || die "the OpenMP build of OpenBLAS is not installed (Debian/Ubuntu: apt-get install libopenblas0-openmp)"
    VARIANT=cpu-openblas_openmp
    PATCH_HASH=$(cat "${PATCHES[@]}" | sha256sum | cut -c1-8)
else
    [[ "$TORCH_CUDA" != none ]] \
        || die "torch $TORCH_VERSION at $TORCH_SITE is a CPU-only build: install a CUDA build of torch first"
    PATCHES=("$ME_PATCH" "$ME_CUDA_PATCH")
    ARCH_TAG=$(tr -d '. ' <<<"$TORCH_CUDA_ARCH_LIST" | tr ';' '-' | tr '+' '_')
    VARIANT="cu${TORCH_CUDA//./}-sm${ARCH_TAG}"
    PATCH_HASH=$(cat "${PATCHES[@]}" | sha256sum | cut -c1-8)
fi
KEY="me${ME_VERSION}-torch${TORCH_VERSION}-${PYTAG}-${VARIANT}-patch${PATCH_HASH}"
WHEEL_DIR="$CACHE/wheels/$KEY"
if [[ $PRINT_KEY == 1 ]]; then echo "$KEY"; exit 0; fi
if ls "$WHEEL_DIR"/*.whl >/dev/null 2>&1; then
    echo "$WHEEL_DIR"
    exit 0
fi
step "no cached MinkowskiEngine wheel for $KEY: building it"

# --- build tools ---------------------------------------------------------------------------
# setup.py needs setuptools<70, older than the environment's (torch asks for >=77): the tools go
# into a folder of their own, put before the environment's packages with PYTHONPATH.
TOOLS="$CACHE/build-tools/$PYTAG"
if ! PYTHONPATH="$TOOLS" "$PY" -c "import setuptools, wheel, ninja" 2>/dev/null; then
    step "installing setuptools<70, wheel and ninja into $TOOLS"
    rm -rf "$TOOLS" && mkdir -p "$CACHE/build-tools"
    # (pip's complaint that torch wants setuptools>=77 is expected: see $TOOLS.log)
    "$PY" -m pip install -q --target "$TOOLS.tmp" "setuptools<70" wheel ninja > "$TOOLS.log" 2>&1 \
        || { tail -n 20 "$TOOLS.log" >&2; die "could not install the build tools into $TOOLS.tmp"; }
    mv "$TOOLS.tmp" "$TOOLS"
fi
# setup.py runs 'pip uninstall MinkowskiEngine', even for its metadata; this pip, first on its
# PATH, keeps it from touching the environment.
mkdir -p "$TOOLS/noop-pip"
printf '#!/bin/sh\necho "(build-me: skipped pip $*)"\n' > "$TOOLS/noop-pip/pip"
chmod +x "$TOOLS/noop-pip/pip"
BUILD_PATH="$TOOLS/noop-pip:$TOOLS/bin:$PATH"

# --- source --------------------------------------------------------------------------------
mkdir -p "$CACHE/sdist"
SDIST="$CACHE/sdist/MinkowskiEngine-$ME_VERSION.tar.gz"
if [[ ! -f "$SDIST" ]] || ! echo "$ME_SHA256  $SDIST" | sha256sum -c --quiet - 2>/dev/null; then
    step "downloading the MinkowskiEngine $ME_VERSION source package"
    rm -f "$SDIST"
    TMPD=$(mktemp -d)
    (cd "$TMPD" && PATH="$BUILD_PATH" PYTHONPATH="$TOOLS" "$PY" -m pip download -q --no-deps \
        --no-binary :all: --no-build-isolation "minkowskiengine==$ME_VERSION" -d "$TMPD") \
        || die "could not download minkowskiengine==$ME_VERSION (is the package registry reachable?)"
    mv "$TMPD"/MinkowskiEngine-$ME_VERSION.tar.gz "$SDIST.tmp" && mv "$SDIST.tmp" "$SDIST"
    rm -rf "$TMPD"
fi
echo "$ME_SHA256  $SDIST" | sha256sum -c --quiet - \
    || { rm -f "$SDIST"; die "sha256 mismatch for $SDIST (removed; run again)"; }
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
tar -xzf "$SDIST" -C "$BUILD"
SRC="$BUILD/MinkowskiEngine-$ME_VERSION"
for p in "${PATCHES[@]}"; do
    patch -s -p1 -d "$SRC" < "$p" || die "$(basename "$p") does not apply to $SDIST"
done
step "sha256 verified; applied $(for p in "${PATCHES[@]}"; do printf '%s ' "$(basename "$p")"; done)"

# --- CUDA toolkit --------------------------------------------------------------------------
nvcc_release() { "$1/bin/nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9][0-9.]*\),.*/\1/p'; }

# One CUDA_HOME made of links: the compiler's toolkit first, then the headers and libraries of
# the NVIDIA packages (torch's, and any installed here), with the unversioned library names
# (libcusparse.so) that the link step asks for and the packages do not ship.
assemble_cuda_home() {
    local home="$1" compiler="$2" root entry lib
    shift 2
    mkdir -p "$home/include" "$home/lib64"
    ln -s lib64 "$home/lib"
    for entry in "$compiler"/*; do
        case "$(basename "$entry")" in include | lib | lib64) ;; *) ln -s "$entry" "$home/" ;; esac
    done
    for root in "$compiler" "$@"; do
        for entry in "$root"/include/* "$root"/lib64/* "$root"/lib/*; do
            [[ -e "$entry" ]] || continue
            case "$entry" in */include/*) dir=include ;; *) dir=lib64 ;; esac
            [[ -e "$home/$dir/$(basename "$entry")" ]] || ln -s "$entry" "$home/$dir/"
        done
    done
    for lib in "$home"/lib64/lib*.so.*; do
        entry="$home/lib64/$(basename "$lib" | sed 's/\.so\..*/.so/')"
        [[ -e "$entry" ]] || ln -s "$lib" "$entry"
    done
}

if [[ $KIND == cuda ]]; then
    COMPILER=""
    for candidate in "${CUDA_HOME:-}" /usr/local/cuda \
        "$(dirname "$(dirname "$(readlink -f "$(command -v nvcc || echo /nonexistent/bin/nvcc)")")")"; do
        if [[ -n "$candidate" && -x "$candidate/bin/nvcc" ]]; then
            release=$(nvcc_release "$candidate")
            if [[ "$release" == "$TORCH_CUDA" ]]; then COMPILER="$candidate"; break; fi
            step "skipping the nvcc in $candidate: CUDA $release, torch has CUDA $TORCH_CUDA"
        fi
    done
    if [[ -z "$COMPILER" ]]; then
        # The version torch itself pins (torch >= 2.9 depends on cuda-toolkit[...]==X.Y.Z).
        spec=$("$PY" -c "
import importlib.metadata as md, re
pins = [re.search(r'==\s*([0-9.]+)', r) for r in md.requires('torch') or [] if r.startswith('cuda-toolkit')]
print(pins[0].group(1) if pins and pins[0] else '$TORCH_CUDA.*')")
        NVCC_PKGS="$CACHE/cuda-toolkit/$spec"
        if [[ ! -d "$NVCC_PKGS" ]]; then
            step "no nvcc for CUDA $TORCH_CUDA: installing cuda-toolkit[nvcc,cccl]==$spec into $NVCC_PKGS"
            rm -rf "$NVCC_PKGS.tmp" && mkdir -p "$CACHE/cuda-toolkit"
            "$PY" -m pip install -q --target "$NVCC_PKGS.tmp" "cuda-toolkit[nvcc,cccl]==$spec" \
                > "$NVCC_PKGS.log" 2>&1 || die "could not install cuda-toolkit[nvcc,cccl]==$spec; set CUDA_HOME to a CUDA $TORCH_CUDA toolkit"
            mv "$NVCC_PKGS.tmp" "$NVCC_PKGS"
        fi
        COMPILER=$(dirname "$(dirname "$(find "$NVCC_PKGS/nvidia" -path '*/bin/nvcc' | head -n 1)")")
    fi
    export CUDA_HOME="$BUILD/cuda"
    # shellcheck disable=SC2046  # the package folders: nvidia/cu13 (CUDA 13) or nvidia/* (CUDA 12)
    assemble_cuda_home "$CUDA_HOME" "$COMPILER" $(find "$TORCH_SITE/nvidia" \
        ${NVCC_PKGS:+"$NVCC_PKGS/nvidia"} -mindepth 1 -maxdepth 1 -type d 2>/dev/null | sort)
    for header in cublas_v2.h cusparse.h curand.h cuda_runtime.h; do
        [[ -e "$CUDA_HOME/include/$header" ]] \
            || die "$header not found in $COMPILER or in torch's NVIDIA packages under $TORCH_SITE/nvidia"
    done
    BUILD_PATH="$CUDA_HOME/bin:$BUILD_PATH"
    FLAGS=(--force_cuda --blas=openblas)
    step "CUDA $TORCH_CUDA from $COMPILER, architectures $TORCH_CUDA_ARCH_LIST"
else
    FLAGS=(--cpu_only --blas=openblas)
    export LDFLAGS="${LDFLAGS:+$LDFLAGS }-Wl,-rpath,$OPENBLAS_OPENMP"
fi

# --- compile -------------------------------------------------------------------------------
step "compiling MinkowskiEngine ($VARIANT, MAX_JOBS=$MAX_JOBS); log: $BUILD/build.log"
(cd "$SRC" && PATH="$BUILD_PATH" PYTHONPATH="$TOOLS" "$PY" setup.py bdist_wheel "${FLAGS[@]}" \
    > "$BUILD/build.log" 2>&1) &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
    sleep 20
    done_files=$(grep -o -E '^\[[0-9]+/[0-9]+\]' "$BUILD/build.log" | tail -n 1 || true)
    step "  ... still compiling (ninja ${done_files:-[0/?]} source files started)"
done
if ! wait "$pid"; then
    cp "$BUILD/build.log" "$CACHE/build-failed-$KEY.log"
    tail -n 40 "$BUILD/build.log" >&2
    die "MinkowskiEngine build failed (last lines above; full log: $CACHE/build-failed-$KEY.log). See README, Troubleshooting."
fi
mkdir -p "$WHEEL_DIR.tmp"
cp "$SRC"/dist/*.whl "$WHEEL_DIR.tmp"/
rm -rf "$WHEEL_DIR" && mv "$WHEEL_DIR.tmp" "$WHEEL_DIR"
step "cached wheel in $WHEEL_DIR ($(( $(date +%s) - T0 )) s)"
echo "$WHEEL_DIR"
