"""MinkowskiEngine 0.4-era weights need no conversion: the kernel offset order of 0.4.3,
reconstructed here from its sources, is the order MinkowskiEngine 0.5.4 computes with.

MinkowskiEngine 0.4.3 (NVIDIA/MinkowskiEngine tag v0.4.3), for a hypercube kernel of size K at
tensor stride s (``src/region.cpp``: ``Region::set_bounds`` and ``RegionIterator::operator++``;
``src/coordsmap.cpp``: ``CoordsMap::kernel_map``; ``src/coords_manager.cpp``: the transposed
branch of ``getInOutMaps``):

* kernel index k runs over the region with the first axis fastest: k = i_x + K i_y + K^2 i_z;
* the offset on each axis is (i - K // 2) s for odd K, and i s for even K (the region starts at
  the point itself);
* a convolution sums, for every output point o and every k, the input at o + offset(k) times
  W[k]; a transposed convolution builds the same map from each (coarser) input point p at the
  output's tensor stride and sends p's features times W[k] to p + offset(k).

Each layer below is computed that way in numpy and compared with MinkowskiEngine's output.
"""

from __future__ import annotations

import MinkowskiEngine as ME
import numpy as np
import torch

from ceco3d.models.segmentor import sparse_input


def offsets_v043(kernel_size: int, tensor_stride: int) -> np.ndarray:
    """(K^3, 3) offsets in 0.4.3's kernel index order."""
    steps = np.arange(kernel_size) - (kernel_size // 2 if kernel_size % 2 else 0)
    z, y, x = np.meshgrid(steps, steps, steps, indexing="ij")  # x varies fastest
    return np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1) * tensor_stride


def rows(tensor: ME.SparseTensor) -> dict[tuple, int]:
    return {tuple(c[1:]): i for i, c in enumerate(tensor.C.numpy().tolist())}


def conv_v043(x: ME.SparseTensor, out: ME.SparseTensor, kernel: np.ndarray, size: int):
    """0.4.3's convolution of ``x`` onto the points of ``out``."""
    inputs, feats = rows(x), x.F.detach().numpy().astype(np.float64)
    result = np.zeros((len(out.C), kernel.shape[2]))
    for o, j in rows(out).items():
        for k, offset in enumerate(offsets_v043(size, x.tensor_stride[0])):
            i = inputs.get(tuple(np.add(o, offset)))
            if i is not None:
                result[j] += feats[i] @ kernel[k]
    return result


def transposed_v043(x: ME.SparseTensor, out: ME.SparseTensor, kernel: np.ndarray, size: int):
    """0.4.3's transposed convolution of ``x`` onto the (finer) points of ``out``."""
    outputs, feats = rows(out), x.F.detach().numpy().astype(np.float64)
    result = np.zeros((len(out.C), kernel.shape[2]))
    for p, i in rows(x).items():
        for k, offset in enumerate(offsets_v043(size, out.tensor_stride[0])):
            j = outputs.get(tuple(np.add(p, offset)))
            if j is not None:
                result[j] += feats[i] @ kernel[k]
    return result


def test_kernel_order_of_0_4_3_is_that_of_0_5_4():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cells = rng.choice(10**3, size=300, replace=False)
    grid = np.stack(np.unravel_index(cells, (10, 10, 10)), axis=1).astype(np.int32)
    coords = torch.from_numpy(np.c_[np.zeros(len(grid), np.int32), grid])
    x = sparse_input(torch.randn(len(grid), 4), coords, torch.device("cpu"))

    def conv(cin, cout, size, stride=1):
        return ME.MinkowskiConvolution(cin, cout, kernel_size=size, stride=stride, dimension=3)

    layers = [  # (layer, its 0.4.3 computation, kernel size)
        (conv(4, 5, 3), conv_v043, 3),  # 3x3x3 at tensor stride 1
        (conv(5, 6, 2, 2), conv_v043, 2),  # 2x2x2 stride 2, as the U-Net's downsampling
        (conv(6, 3, 3), conv_v043, 3),  # 3x3x3 at tensor stride 2
        (ME.MinkowskiConvolutionTranspose(3, 2, kernel_size=2, stride=2, dimension=3),
         transposed_v043, 2),  # back to stride 1, as the U-Net's upsampling  # fmt: skip
    ]
    with torch.no_grad():
        for layer, reference, size in layers:
            out = layer(x)
            kernel = layer.kernel.detach().numpy().astype(np.float64)
            assert kernel.shape[0] == size**3
            expected = reference(x, out, kernel, size)
            np.testing.assert_allclose(out.F.numpy(), expected, rtol=1e-5, atol=1e-5)
            # A permuted kernel would not do: the order is not symmetric in the offsets.
            assert not np.allclose(reference(x, out, kernel[::-1], size), expected, atol=1e-3)
            x = out
