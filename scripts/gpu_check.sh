#!/usr/bin/env bash
# What a GPU machine should check, in under 10 minutes and with no network: install the prebuilt
# CUDA MinkowskiEngine (or build it from the carried source if none matches this torch), run the
# gpu-marked tests, ceco3d-bench on the GPU (CE against CeCo on a batch of 4 scenes x ~100k voxels,
# inference of that batch and of a whole ScanNet-size scene, every long-tail method against CE on
# Res16UNet34C at that size) and a 200-step training on synthetic ScanNet200.
#
#   scripts/gpu_check.sh OUT
#
# Needs an NVIDIA GPU, a Python with a CUDA build of torch (PYTHON, default python3) and the
# folder that scripts/gpu_bundle.sh (make gpu-bundle) prepares on a machine with the package
# registries (GPU_BUNDLE, default <repo>/gpu_bundle). Writes into OUT (7 files):
#   gpu_check.log      everything printed, with each stage's time and status
#   machine.txt        GPU, driver, CPU, torch and MinkowskiEngine builds
#   pytest_gpu.txt     pytest -m gpu
#   bench.json, bench.md   ceco3d-bench --device cuda --preset gpu --only gpu
#   train.log, train_summary.json   the 200-step training (experiment=gpu_check) and its validation
# Stage time limits in seconds (GPU_CHECK_PYTEST_S, _BENCH_S, _TRAIN_S) keep the total under
# 9 minutes with the install, inside one device call of 10; a limit of 0 skips that stage.
# Exit status: the number of stages that failed (0: all passed).
set -uo pipefail  # no -e: a failed stage is reported and the next one still runs

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ $# -eq 1 ]] || { echo "usage: $0 OUT" >&2; exit 2; }
OUT="$(realpath -m "$1")"
PY="${PYTHON:-python3}"
BUNDLE="$(realpath -m "${GPU_BUNDLE:-$ROOT/gpu_bundle}")"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
WORK=$(mktemp -d /tmp/ceco3d-gpu-check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
T0=$(date +%s)
FAILED=0
say() { printf '[gpu-check %4ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
stage() {  # stage NAME LIMIT_S FUNCTION: run, time, report; a failure counts but does not stop
    local name="$1" limit="$2" start status
    if [[ $limit -eq 0 ]]; then say "== $name: skipped (its limit is 0)"; return; fi
    say "== $name (limit ${limit} s)"
    start=$(date +%s)
    timeout --kill-after=15 "$limit" bash -o pipefail -c "$3"
    status=$?
    if [[ $status -eq 0 ]]; then
        say "== $name: passed in $(($(date +%s) - start)) s"
    else
        FAILED=$((FAILED + 1))
        say "== $name: FAILED (exit $status$([[ $status -eq 124 ]] && echo ', time limit')) after $(($(date +%s) - start)) s"
    fi
}

[[ -d "$BUNDLE" ]] || { say "no bundle at $BUNDLE: run scripts/gpu_bundle.sh where pip works and copy it here"; exit 1; }
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { say "$PY has no CUDA torch, or no GPU answers"; exit 1; }

# --- install -------------------------------------------------------------------------------
# OpenBLAS, which MinkowskiEngine's CPU kernels link, from the bundle where the system has none.
if ! ldconfig -p | grep -q 'libopenblas\.so\.0'; then
    for deb in "$BUNDLE"/debs/*.deb; do dpkg -x "$deb" "$WORK/blas"; done
    libdir="$WORK/blas/usr/lib/x86_64-linux-gnu"
    export LD_LIBRARY_PATH="$libdir/openblas-pthread:$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LIBRARY_PATH="$libdir/openblas-pthread" CPATH="$WORK/blas/usr/include/x86_64-linux-gnu/openblas-pthread"
    say "OpenBLAS from the bundle's Debian packages"
fi
# The bundle's wheel for this torch, Python and patches whose architectures (the key's
# sm80-86-90_PTX) run on this GPU: machine code of its major version and no newer minor, or PTX.
runs_here() {  # runs_here ARCH_TAG CAPABILITY, e.g. runs_here 80-86-90_PTX 9.0
    local cc=$((${2%.*} * 10 + ${2#*.})) tag n
    for tag in ${1//-/ }; do
        n=${tag%_PTX}
        if (( n <= cc )) && { [[ $tag == *_PTX ]] || (( n / 10 == cc / 10 )); }; then return 0; fi
    done
    return 1
}
arch=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
KEY=$(bash "$ROOT/scripts/build_minkowski.sh" --print-key "$PY" cuda)
WHEEL_DIR=""
for dir in "$BUNDLE/minkowski/${KEY%%-sm*}"-sm*"-patch${KEY##*-patch}"; do
    tag=${dir##*-sm}
    if [[ -d "$dir" ]] && runs_here "${tag%%-patch*}" "$arch"; then WHEEL_DIR="$dir"; break; fi
done
if [[ -z "$WHEEL_DIR" ]]; then
    say "no prebuilt wheel for this torch and a GPU of sm $arch (the bundle has: $(ls "$BUNDLE/minkowski" | tr '\n' ' '))"
    say "building MinkowskiEngine from the bundle's source for this GPU (sm $arch) on $(nproc) cores"
    mkdir -p "$WORK/cache/sdist"
    cp "$BUNDLE"/sdist/*.tar.gz "$WORK/cache/sdist/"
    WHEEL_DIR=$(CECO3D_CACHE="$WORK/cache" PIP_NO_INDEX=1 PIP_FIND_LINKS="$BUNDLE/build" \
        MAX_JOBS="$(nproc)" TORCH_CUDA_ARCH_LIST="$arch" \
        bash "$ROOT/scripts/build_minkowski.sh" "$PY" cuda) || { say "build failed"; exit 1; }
fi
say "installing $(basename "$WHEEL_DIR"/*.whl) and $(ls "$BUNDLE"/wheels | wc -l) dependency wheels"
"$PY" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" \
    "$WHEEL_DIR"/*.whl "$BUNDLE"/wheels/*.whl || { say "pip install failed"; exit 1; }
export PYTHONPATH="$ROOT:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"

{
    nvidia-smi
    echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
    "$PY" -W ignore - <<'EOF'
import sys, torch, MinkowskiEngine as ME
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}), GPU {torch.cuda.get_device_name()} "
      f"(sm {'%d.%d' % torch.cuda.get_device_capability()})")
print(f"MinkowskiEngine {ME.__version__} from {ME.__file__}, CUDA build: {ME.is_cuda_available()}, "
      f"built with CUDA {ME.cuda_version()}")
EOF
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

# --- checks ----------------------------------------------------------------------------------
import_check() {
    "$PY" -W ignore - <<'EOF'
import torch, MinkowskiEngine as ME
assert ME.is_cuda_available(), "MinkowskiEngine was built without CUDA"
coords = torch.IntTensor([[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
x = ME.SparseTensor(torch.ones(3, 2), coordinates=coords, device="cuda")
y = ME.MinkowskiConvolution(2, 4, kernel_size=3, dimension=3).cuda()(x)
assert y.F.is_cuda and y.F.shape == (3, 4)
print("a MinkowskiConvolution ran on", torch.cuda.get_device_name())
EOF
}
pytest_gpu() {  # the modules that hold gpu tests: others may need ceco3d installed (its scripts)
    local files
    files=$(cd "$ROOT" && grep -l 'pytest.mark.gpu' tests/test_*.py)
    (cd "$ROOT" && "$PY" -m pytest -m gpu -p no:cacheprovider -q -rA $files) > "$OUT/pytest_gpu.txt" 2>&1
    local status=$?
    tail -n 15 "$OUT/pytest_gpu.txt"
    return $status
}
bench() {
    "$PY" -m ceco3d.cli.bench --device cuda --preset gpu --only gpu --out "$WORK/bench" \
        && cp "$WORK/bench/bench.json" "$WORK/bench/bench.md" "$OUT/"
}
train() {
    local data="$WORK/scannet200"
    "$PY" -m data_prep.synth.generate "$data/raw" --scenes 10 --test-scenes 0 --classes 40 \
        --vertex-spacing 0.035 \
        && "$PY" -m data_prep.prep "$data/raw" "$data/prepared" -j "$(nproc)" \
        && "$PY" -m ceco3d.cli.train experiment=gpu_check loss=ceco "data.root=$data/prepared" \
            "runs_root=$WORK/runs" run_name=gpu_check 2>&1 | tee "$OUT/train.log"
    local status=$?
    cp "$WORK/runs/gpu_check/val_summary.json" "$OUT/train_summary.json" 2>/dev/null
    return $status
}
# The stages run under timeout, in a fresh bash that needs the functions and paths.
export -f import_check pytest_gpu bench train
export PY ROOT OUT WORK
stage "import check" 30 import_check
stage "pytest -m gpu" "${GPU_CHECK_PYTEST_S:-90}" pytest_gpu
stage "ceco3d-bench --device cuda --preset gpu --only gpu" "${GPU_CHECK_BENCH_S:-300}" bench
stage "200-step training, synthetic ScanNet200, GPU" "${GPU_CHECK_TRAIN_S:-120}" train

say "done: $FAILED stage(s) failed; results in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$FAILED"
