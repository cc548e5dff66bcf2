"""MinkowskiEngine as built by scripts/setup.sh: the operations ceco3d relies on, and the faults
that the project's patch fixes (deepcopy, empty tensors, autograd Function instances)."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import warnings

import MinkowskiEngine as ME
import numpy as np
import torch
from torch import nn

from ceco3d.device import CPU_ONLY_NOTICE


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        ME.MinkowskiConvolution(3, 8, kernel_size=3, dimension=3),
        ME.MinkowskiBatchNorm(8),
        ME.MinkowskiReLU(),
        ME.MinkowskiConvolution(8, 16, kernel_size=2, stride=2, dimension=3),
        ME.MinkowskiMaxPooling(kernel_size=2, stride=2, dimension=3),
        ME.MinkowskiConvolutionTranspose(16, 8, kernel_size=2, stride=2, dimension=3),
        ME.MinkowskiConvolutionTranspose(8, 4, kernel_size=2, stride=2, dimension=3),
    )


def test_forward_backward_strides(scene):
    coords, feats = scene
    x = ME.SparseTensor(feats.requires_grad_(), coordinates=coords)
    net = _net()
    down = net[:4](x)
    assert down.tensor_stride == [2, 2, 2]
    assert len(down) < len(x)
    out = net(x)
    assert out.tensor_stride == [1, 1, 1]
    out.F.square().sum().backward()
    assert feats.grad is not None and torch.isfinite(feats.grad).all()
    for p in net.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_stride1_convolution_keeps_coordinates(scene):
    coords, feats = scene
    x = ME.SparseTensor(feats, coordinates=coords)
    y = ME.MinkowskiConvolution(3, 5, kernel_size=3, dimension=3)(x)
    assert torch.equal(y.C, x.C)


def test_convolution_matches_dense_reference():
    # A single voxel with a 3x3x3 kernel: the output is the centre tap times the input.
    coords = torch.IntTensor([[0, 5, 5, 5]])
    feats = torch.tensor([[2.0, -1.0]])
    conv = ME.MinkowskiConvolution(2, 3, kernel_size=3, dimension=3)
    out = conv(ME.SparseTensor(feats, coordinates=coords)).F
    centre = conv.kernel[13]  # offsets enumerate (-1,0,1)^3; the centre is index 13
    torch.testing.assert_close(out, feats @ centre)


def test_deepcopy_gives_identical_outputs(scene):
    coords, feats = scene
    net = _net().eval()
    clone = copy.deepcopy(net)
    for a, b in zip(net.modules(), clone.modules(), strict=True):
        assert vars(a).keys() == vars(b).keys()

    # One thread: ME's multi-threaded kernel maps may order the sums differently run to run,
    # which is not what this test is about.
    def single_threaded():
        manager = ME.CoordinateManager(D=3, num_threads=1)
        return ME.SparseTensor(feats, coordinates=coords, coordinate_manager=manager)

    threads = torch.get_num_threads()  # building the manager sets OpenMP's thread count
    try:
        out_a = net(single_threaded()).F
        out_b = clone(single_threaded()).F
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out_a, out_b)


def test_threaded_row_gathers_are_race_free():
    # The CPU build gathers and scatter-adds rows on OpenMP threads above 32k elements
    # (scripts/patches/minkowskiengine-0.5.4-cpu.patch); within one kernel offset each row is
    # written by one thread. A race would lose updates at random: two-thread passes would
    # differ from each other, and from the one-thread pass by far more than the summation order
    # of OpenBLAS's GEMM, which follows the thread count. All passes use the kernel maps the
    # first one built on one thread (ME's threaded map construction orders rows by timing).
    rng = np.random.default_rng(0)
    grid = np.unique(rng.integers(0, 40, size=(20_000, 3)), axis=0)  # ~18k voxels x 32 channels
    coords = torch.from_numpy(np.concatenate([np.zeros((len(grid), 1)), grid], axis=1)).int()
    x = torch.from_numpy(rng.standard_normal((len(grid), 32))).float().requires_grad_()
    torch.manual_seed(0)
    net = nn.Sequential(
        ME.MinkowskiConvolution(32, 32, kernel_size=3, dimension=3),
        ME.MinkowskiConvolution(32, 64, kernel_size=2, stride=2, dimension=3),
        ME.MinkowskiConvolutionTranspose(64, 32, kernel_size=2, stride=2, dimension=3),
    )
    threads = torch.get_num_threads()
    manager = ME.CoordinateManager(D=3, num_threads=1)  # sets OpenMP's thread count to 1
    key = None
    passes = []
    try:
        for count in (1, 2, 2):
            torch.set_num_threads(count)
            x.grad = None
            net.zero_grad(set_to_none=True)
            where = {"coordinates": coords} if key is None else {"coordinate_map_key": key}
            tensor = ME.SparseTensor(x, coordinate_manager=manager, **where)
            key = tensor.coordinate_map_key
            out = net(tensor).F
            out.square().sum().backward()
            passes.append([out.detach(), x.grad, *(p.grad for p in net.parameters())])
    finally:
        torch.set_num_threads(threads)
    one, two, again = passes
    for a, b, c in zip(one, two, again, strict=True):
        assert torch.equal(b, c)
        torch.testing.assert_close(a, b)


def test_empty_sparse_tensor_does_not_crash():
    # Unpatched MinkowskiEngine returns a dangling reference here and the process segfaults,
    # so run it in a child process and look at its exit status.
    code = (
        "import torch, MinkowskiEngine as ME\n"
        "x = ME.SparseTensor(torch.zeros(0, 3), coordinates=torch.zeros(0, 4, dtype=torch.int32))\n"
        "y = ME.MinkowskiConvolution(3, 4, kernel_size=3, dimension=3)(x)\n"
        "z = ME.MinkowskiConvolution(4, 4, kernel_size=2, stride=2, dimension=3)(y)\n"
        "assert y.F.shape == (0, 4) and z.F.shape == (0, 4)\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")


def test_no_autograd_function_instance_warning(scene):
    coords, feats = scene
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=re.escape(CPU_ONLY_NOTICE))
        out = _net()(ME.SparseTensor(feats.requires_grad_(), coordinates=coords))
        out.F.sum().backward()


def test_sparse_quantize_inverse_roundtrip():
    rng = torch.Generator().manual_seed(0)
    points = torch.rand(500, 3, generator=rng) * 2.0
    discrete = torch.floor(points / 0.1).int()
    index, inverse = ME.utils.sparse_quantize(
        discrete, return_index=True, return_inverse=True, return_maps_only=True
    )
    assert torch.equal(discrete[index][inverse], discrete)
    assert len(torch.unique(discrete, dim=0)) == len(index)
