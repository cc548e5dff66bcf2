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


def layer_v043(x: ME.SparseTensor, out: ME.SparseTensor, kernel: np.ndarray, transposed: bool):
    """0.4.3's (transposed) convolution of ``x`` onto the points of ``out``. The region is laid
    around every output point at the input's stride, or, transposed, around every input point
    at the output's stride."""
    inputs, outputs = rows(x), rows(out)
    size = round(len(kernel) ** (1 / 3))
    anchors, others = (inputs, outputs) if transposed else (outputs, inputs)
    stride = (out if transposed else x).tensor_stride[0]
    feats = x.F.detach().numpy().astype(np.float64)
    result = np.zeros((len(outputs), kernel.shape[2]))
    for point, anchor in anchors.items():
        for k, offset in enumerate(offsets_v043(size, stride)):
            other = others.get(tuple(np.add(point, offset)))
            if other is not None:
                i, j = (anchor, other) if transposed else (other, anchor)
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

    layers = [  # (layer, transposed)
        (conv(4, 5, 3), False),  # 3x3x3 at tensor stride 1
        (conv(5, 6, 2, 2), False),  # 2x2x2 stride 2, as the U-Net's downsampling
        (conv(6, 3, 3), False),  # 3x3x3 at tensor stride 2
        (ME.MinkowskiConvolutionTranspose(3, 2, kernel_size=2, stride=2, dimension=3), True),
    ]
    with torch.no_grad():
        for layer, transposed in layers:
            out = layer(x)
            kernel = layer.kernel.detach().numpy().astype(np.float64)
            expected = layer_v043(x, out, kernel, transposed)
            np.testing.assert_allclose(out.F.numpy(), expected, rtol=1e-5, atol=1e-5)
            # A permuted kernel would not do: the order is not symmetric in the offsets.
            assert not np.allclose(
                layer_v043(x, out, kernel[::-1], transposed), expected, atol=1e-3
            )
            x = out
