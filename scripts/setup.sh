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
#                  0 (force CPU-only) or 1 (force CUDA; no GPU needed: `make setup-cuda`).
#   MAX_JOBS, TORCH_CUDA_ARCH_LIST, CUDA_HOME: see scripts/build_minkowski.sh, which builds
#                  MinkowskiEngine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CECO3D_VENV:-$ROOT/.venv}"
# Absolute: the MinkowskiEngine build runs its interpreter from inside a temporary folder.
[[ "$VENV" == /* ]] || VENV="$PWD/$VENV"
TORCH_REQ="${CECO3D_TORCH:-torch==2.13.0}"
# open3d (ceco3d-predict, ceco3d-view): the CPU-only wheel where PyPI has one for the platform,
# else the full one. Only those two commands import it, so training and prep never load it.
O3D_VERSION=0.20.0
export PIP_DISABLE_PIP_VERSION_CHECK=1

T0=$(date +%s)
step() { printf '[setup %4ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# The stamp records what this environment was built from; unchanged inputs mean nothing to do.
stamp_inputs() {
    cat "$ROOT/pyproject.toml" "$ROOT"/scripts/patches/*.patch "$ROOT/scripts/setup.sh" \
        "$ROOT/scripts/build_minkowski.sh"
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

# A system library found by any of the paths (globs) after "--", else installed with apt-get as
# root, else an error that says what to install.
need_system_library() {
    local package="$1" what="$2" path
    shift 3
    for path in "$@"; do
        [[ -e "$path" ]] && return 0
    done
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        step "installing $package, $what (apt-get)"
        apt-get install -y -q "$package" >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q "$package" >/dev/null; } \
            || die "apt-get install $package failed"
    else
        die "$package ($what) is not installed. Install it first, e.g.: sudo apt-get install $package"
    fi
}
need_system_library libopenblas-dev "OpenBLAS headers, to build MinkowskiEngine" -- \
    /usr/include/*/openblas*/cblas.h /usr/include/openblas/cblas.h /usr/include/cblas.h \
    /usr/include/*/cblas.h
# The OpenMP build of OpenBLAS, which the MinkowskiEngine CPU build runs its GEMMs with (README,
# "CPU training speed"; scripts/build_minkowski.sh).
need_system_library libopenblas0-openmp "OpenBLAS's OpenMP build, for MinkowskiEngine" -- \
    /usr/lib/*/openblas-openmp/libopenblas.so.0 /usr/lib64/openblas-openmp/libopenblas.so.0
# open3d's Python module links libusb-1.0 (for its RealSense support) even in the CPU wheel.
need_system_library libusb-1.0-0 "needed by open3d" -- \
    /usr/lib/*/libusb-1.0.so.0 /lib/*/libusb-1.0.so.0 /usr/lib64/libusb-1.0.so.0 \
    /usr/lib/libusb-1.0.so.0
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
installed_key=$("$VPY" -W ignore -c "import MinkowskiEngine, pathlib; print(pathlib.Path(MinkowskiEngine.__file__).parent.joinpath('_ceco3d_build_key').read_text().strip())" 2>/dev/null || true)
want_cuda=0
case "${CECO3D_ME_CUDA:-auto}" in
    1) want_cuda=1
       [[ "$TORCH_CUDA" != none ]] || die "CECO3D_ME_CUDA=1, but the torch in $VENV ($TORCH_VERSION) is a \
CPU-only build. Install a CUDA build of torch into $VENV first (pip may have picked a CPU wheel \
from a find-links folder or index in its configuration: see 'pip config list' and PIP_FIND_LINKS)" ;;
    0) want_cuda=0 ;;
    # auto also keeps a CUDA build that `make setup-cuda` made on a machine without a GPU.
    auto) if [[ "$TORCH_CUDA" != none ]] && { [[ "$installed_key" == *-cu[0-9]* ]] \
              || { command -v nvcc >/dev/null \
                   && "$VPY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; }; }; then
              want_cuda=1
          fi ;;
esac
KIND=$([[ $want_cuda == 1 ]] && echo cuda || echo cpu)
BUILD_ME=(bash "$ROOT/scripts/build_minkowski.sh")
KEY=$("${BUILD_ME[@]}" --print-key "$VPY" "$KIND")
# Keys differ in the GPU architectures only (…-sm90-patch… against the default's): keep the
# installed build unless TORCH_CUDA_ARCH_LIST asks for others.
same_but_arch() { [[ "${1%%-sm*}" == "${2%%-sm*}" && "${1##*-patch}" == "${2##*-patch}" ]]; }
if [[ "$installed_key" == "$KEY" ]] \
    || { [[ -z "${TORCH_CUDA_ARCH_LIST:-}" ]] && same_but_arch "$installed_key" "$KEY"; }; then
    step "MinkowskiEngine $installed_key already installed"
else
    step "MinkowskiEngine $KEY: cached wheel, or a build (several minutes; CUDA: tens of minutes)"
    WHEEL_DIR=$("${BUILD_ME[@]}" "$VPY" "$KIND") || die "MinkowskiEngine build failed (see above)"
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
# Which OpenBLAS and how many OpenMP runtimes the process loaded (docs/cpu_speed.md).
maps = {line.split()[-1] for line in open("/proc/self/maps") if "/" in line}
blas = sorted(m for m in maps if "/libopenblas" in m)
gomp = sorted(m for m in maps if "/libgomp" in m)
print(f"  torch {torch.__version__}, MinkowskiEngine {ME.__version__}, CUDA: {ME.is_cuda_available()}")
print(f"  OpenBLAS: {', '.join(blas) or 'none'}; OpenMP runtimes: {len(gomp)}")
if not ME.is_cuda_available() and (not any("openblas-openmp" in m for m in blas) or len(gomp) != 1):
    raise SystemExit("MinkowskiEngine's CPU build should run OpenBLAS's OpenMP build on torch's "
                     "libgomp; rebuild it: CECO3D_FORCE_SETUP=1 make setup")
EOF
stamp_inputs | sha256sum | cut -d' ' -f1 > "$STAMP"
step "done: activate with 'source ${VENV#$ROOT/}/bin/activate'"
