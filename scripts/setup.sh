#!/usr/bin/env bash
# Create the project virtual environment and build MinkowskiEngine 0.5.4 into it.
#
#   scripts/setup.sh            # idempotent; a second run takes seconds
#   CECO3D_FORCE_SETUP=1 scripts/setup.sh   # redo every step
#
# Environment knobs:
#   CECO3D_VENV    virtual environment to create/use      (default: <repo>/.venv)
#   CECO3D_CACHE   cache for the MinkowskiEngine sdist and built wheels
#                  (default: ${XDG_CACHE_HOME:-~/.cache}/ceco3d)
#   CECO3D_TORCH   torch requirement installed when the venv has no torch (default: torch==2.13.0).
#                  On a CUDA machine, install the CUDA build of torch into the venv first
#                  (or point CECO3D_TORCH at it); the MinkowskiEngine build then follows torch.
#   CECO3D_ME_CUDA auto (default: CUDA build when torch has CUDA, nvcc exists and a GPU answers),
#                  0 (force CPU-only) or 1 (force CUDA).
#   MAX_JOBS       parallel compile jobs (default: number of cores)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CECO3D_VENV:-$ROOT/.venv}"
CACHE="${CECO3D_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ceco3d}"
TORCH_REQ="${CECO3D_TORCH:-torch==2.13.0}"
ME_VERSION=0.5.4
ME_SHA256=b1879c00d0b0b1d30ba622cce239886a7e3c78ee9da1064cdfe2f64c2ab15f94
ME_PATCH="$ROOT/scripts/patches/minkowskiengine-$ME_VERSION.patch"
# open3d (ceco3d-predict, ceco3d-view): the CPU-only wheel where PyPI has one for the platform,
# else the full one. Only those two commands import it, so training and prep never load it.
O3D_VERSION=0.20.0
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

T0=$(date +%s)
step() { printf '[setup %4ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# The stamp records what this environment was built from; unchanged inputs mean nothing to do.
stamp_inputs() {
    cat "$ROOT/pyproject.toml" "$ME_PATCH" "$ROOT/scripts/setup.sh"
    echo "$TORCH_REQ ${CECO3D_ME_CUDA:-auto}"
}
STAMP="$VENV/.ceco3d-setup"
if [[ -z "${CECO3D_FORCE_SETUP:-}" && -f "$STAMP" ]] \
    && [[ "$(stamp_inputs | sha256sum | cut -d' ' -f1)" == "$(cat "$STAMP")" ]] \
    && "$VENV/bin/python" -c "import MinkowskiEngine, ceco3d, open3d" 2>/dev/null; then
    step "environment $VENV is up to date"
    exit 0
fi

# --- 1. Python and system libraries --------------------------------------------------------
PY="${PYTHON:-python3}"
"$PY" -c 'import sys; assert sys.version_info >= (3, 10), sys.version' 2>/dev/null \
    || die "Python >= 3.10 is required (found: $("$PY" --version 2>&1)). Set PYTHON=/path/to/python3.x"

have_openblas() {
    local header
    for header in /usr/include/*/openblas*/cblas.h /usr/include/openblas/cblas.h \
        /usr/include/cblas.h /usr/include/*/cblas.h; do
        [[ -e "$header" ]] && return 0
    done
    return 1
}
if ! have_openblas; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        step "installing libopenblas-dev (apt-get)"
        apt-get install -y -q libopenblas-dev >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q libopenblas-dev >/dev/null; } \
            || die "apt-get install libopenblas-dev failed"
    else
        die "OpenBLAS headers not found. Install them first, e.g.: sudo apt-get install libopenblas-dev"
    fi
fi
# open3d's Python module links libusb-1.0 (for its RealSense support) even in the CPU wheel.
have_libusb() {
    local lib
    for lib in /usr/lib/*/libusb-1.0.so.0 /lib/*/libusb-1.0.so.0 /usr/lib64/libusb-1.0.so.0 \
        /usr/lib/libusb-1.0.so.0; do
        [[ -e "$lib" ]] && return 0
    done
    return 1
}
if ! have_libusb; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        step "installing libusb-1.0-0, needed by open3d (apt-get)"
        apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q libusb-1.0-0 >/dev/null; } \
            || die "apt-get install libusb-1.0-0 failed"
    else
        die "libusb-1.0.so.0 not found (open3d needs it). Install it first, e.g.: sudo apt-get install libusb-1.0-0"
    fi
fi
for tool in g++ patch; do
    command -v "$tool" >/dev/null || die "'$tool' not found. Install it, e.g.: sudo apt-get install build-essential patch"
done

# --- 2. Virtual environment and the package -----------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
    step "creating virtual environment $VENV"
    "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
if ! "$VPY" -c "import torch" 2>/dev/null; then
    step "installing $TORCH_REQ"
    "$VPY" -m pip install -q "$TORCH_REQ"
fi
step "installing ceco3d (editable) and its dependencies"
"$VPY" -m pip install -q -e "$ROOT[dev]"

if ! "$VPY" -c "import open3d, sys; sys.exit(open3d.__version__ != sys.argv[1])" "$O3D_VERSION" 2>/dev/null; then
    step "installing open3d $O3D_VERSION"
    "$VPY" -m pip install -q "open3d-cpu==$O3D_VERSION" 2>/dev/null \
        || "$VPY" -m pip install -q "open3d==$O3D_VERSION" \
        || die "could not install open3d-cpu or open3d $O3D_VERSION for this platform"
fi

read -r TORCH_VERSION TORCH_CUDA PYTAG < <("$VPY" - <<'EOF'
import sys, torch
print(torch.__version__, torch.version.cuda or "none", f"cp{sys.version_info[0]}{sys.version_info[1]}")
EOF
)

# --- 3. MinkowskiEngine: cached wheel, or fetch + verify + patch + build ---------------------
want_cuda=0
case "${CECO3D_ME_CUDA:-auto}" in
    1) want_cuda=1 ;;
    0) want_cuda=0 ;;
    auto) if [[ "$TORCH_CUDA" != none ]] && command -v nvcc >/dev/null \
              && "$VPY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
              want_cuda=1
          fi ;;
esac
VARIANT=$([[ $want_cuda == 1 ]] && echo "cu${TORCH_CUDA//./}" || echo cpu)
KEY="me${ME_VERSION}-torch${TORCH_VERSION}-${PYTAG}-${VARIANT}-patch$(sha256sum "$ME_PATCH" | cut -c1-8)"
WHEEL_DIR="$CACHE/wheels/$KEY"

installed_key=$("$VPY" -W ignore -c "import MinkowskiEngine, pathlib; print(pathlib.Path(MinkowskiEngine.__file__).parent.joinpath('_ceco3d_build_key').read_text().strip())" 2>/dev/null || true)
if [[ "$installed_key" == "$KEY" ]]; then
    step "MinkowskiEngine $KEY already installed"
else
    if ! ls "$WHEEL_DIR"/*.whl >/dev/null 2>&1; then
        step "no cached MinkowskiEngine wheel for $KEY: building it (several minutes)"
        mkdir -p "$CACHE/sdist"
        SDIST="$CACHE/sdist/MinkowskiEngine-$ME_VERSION.tar.gz"
        # A separate build environment: MinkowskiEngine's setup.py needs setuptools<70 and
        # uninstalls MinkowskiEngine from whatever environment runs it.
        BVENV="$CACHE/build-env/torch$TORCH_VERSION-$PYTAG"
        if [[ ! -x "$BVENV/bin/python" ]]; then
            step "creating build environment $BVENV"
            "$PY" -m venv "$BVENV"
            # torch without its dependency pins: it asks for setuptools>=77, which the sdist's
            # setup.py cannot use (pip's resolver complaint about that is expected; see the log).
            { "$BVENV/bin/python" -m pip install -q --no-deps "torch==$TORCH_VERSION" \
                && "$BVENV/bin/python" -m pip install -q "numpy" "wheel" "setuptools<70" ninja \
                    typing-extensions sympy networkx jinja2 fsspec filelock; } \
                > "$BVENV.log" 2>&1 || { tail -n 20 "$BVENV.log" >&2; die "could not create $BVENV"; }
        fi
        if [[ ! -f "$SDIST" ]] || ! echo "$ME_SHA256  $SDIST" | sha256sum -c --quiet - 2>/dev/null; then
            step "downloading the MinkowskiEngine $ME_VERSION source package"
            rm -f "$SDIST"
            TMPD=$(mktemp -d)
            # PATH: setup.py runs 'pip uninstall MinkowskiEngine' even for metadata.
            (cd "$TMPD" && PATH="$BVENV/bin:$PATH" "$BVENV/bin/python" -m pip download -q --no-deps --no-binary :all: \
                --no-build-isolation "minkowskiengine==$ME_VERSION" -d "$TMPD") \
                || die "could not download minkowskiengine==$ME_VERSION (is the package registry reachable?)"
            mv "$TMPD"/MinkowskiEngine-$ME_VERSION.tar.gz "$SDIST.tmp" && mv "$SDIST.tmp" "$SDIST"
            rm -rf "$TMPD"
        fi
        echo "$ME_SHA256  $SDIST" | sha256sum -c --quiet - \
            || { rm -f "$SDIST"; die "sha256 mismatch for $SDIST (removed; run again)"; }
        step "sha256 verified; extracting and applying scripts/patches/$(basename "$ME_PATCH")"
        BUILD=$(mktemp -d)
        trap 'rm -rf "$BUILD"' EXIT
        tar -xzf "$SDIST" -C "$BUILD"
        SRC="$BUILD/MinkowskiEngine-$ME_VERSION"
        patch -s -p1 -d "$SRC" < "$ME_PATCH"
        if [[ $want_cuda == 1 ]]; then FLAGS=(--force_cuda --blas=openblas); else FLAGS=(--cpu_only --blas=openblas); fi
        step "compiling MinkowskiEngine ($VARIANT, MAX_JOBS=$MAX_JOBS); log: $BUILD/build.log"
        (cd "$SRC" && PATH="$BVENV/bin:$PATH" "$BVENV/bin/python" setup.py bdist_wheel "${FLAGS[@]}" \
            > "$BUILD/build.log" 2>&1) &
        pid=$!
        while kill -0 "$pid" 2>/dev/null; do
            sleep 20
            done_files=$(grep -o -E '^\[[0-9]+/[0-9]+\]' "$BUILD/build.log" | tail -n 1 || true)
            step "  ... still compiling (ninja ${done_files:-[0/?]} source files started)"
        done
        if ! wait "$pid"; then
            tail -n 40 "$BUILD/build.log" >&2
            die "MinkowskiEngine build failed (last lines above). See README, Troubleshooting."
        fi
        mkdir -p "$WHEEL_DIR.tmp"
        cp "$SRC"/dist/*.whl "$WHEEL_DIR.tmp"/
        rm -rf "$WHEEL_DIR" && mv "$WHEEL_DIR.tmp" "$WHEEL_DIR"
        step "cached wheel in $WHEEL_DIR"
    fi
    step "installing MinkowskiEngine from $WHEEL_DIR"
    "$VPY" -m pip install -q --no-deps --force-reinstall "$WHEEL_DIR"/*.whl
    "$VPY" -W ignore -c "import MinkowskiEngine, pathlib, sys; pathlib.Path(MinkowskiEngine.__file__).parent.joinpath('_ceco3d_build_key').write_text(sys.argv[1])" "$KEY"
fi

step "checking the installation"
"$VPY" - <<'EOF'
import warnings
warnings.filterwarnings("ignore")
import torch, MinkowskiEngine as ME
coords = torch.IntTensor([[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
x = ME.SparseTensor(torch.ones(3, 2), coordinates=coords)
y = ME.MinkowskiConvolution(2, 4, kernel_size=3, dimension=3)(x)
assert y.F.shape == (3, 4)
print(f"  torch {torch.__version__}, MinkowskiEngine {ME.__version__}, CUDA: {ME.is_cuda_available()}")
EOF
stamp_inputs | sha256sum | cut -d' ' -f1 > "$STAMP"
step "done: activate with 'source ${VENV#$ROOT/}/bin/activate'"
