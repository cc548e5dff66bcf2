"""MinkUNet backbones (Choy et al., 4D Spatio-Temporal ConvNets, CVPR 2019): depth (``LAYERS``)
and width (``PLANES``) are class-level data and a variant is a two-line subclass.

Two families share one topology (four stride-2 stages down, four transposed stages up, skip
concatenation) and differ in the class-level settings below:

* ``MinkUNet*``: as MinkowskiEngine's own examples (``examples/minkunet.py``) define them.
* ``Res16UNet*``: as the Contrastive Scene Contexts and Language-Grounded Semseg codebases define
  them (``models/res16unet.py`` there), on which CeCo's 3D results were obtained.

Tensor names say where they live: ``out_b3p8`` is the output of block 3 at tensor stride 8;
``conv1p1s2`` takes stride 1 and convolves with stride 2.
"""

from __future__ import annotations

import MinkowskiEngine as ME
import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
        bn_momentum: float = 0.1,
        dimension: int = 3,
    ):
        super().__init__()
        self.conv1 = ME.MinkowskiConvolution(
            inplanes, planes, kernel_size=3, stride=stride, dilation=dilation, dimension=dimension
        )
        self.norm1 = ME.MinkowskiBatchNorm(planes, momentum=bn_momentum)
        self.conv2 = ME.MinkowskiConvolution(
            planes, planes, kernel_size=3, stride=1, dilation=dilation, dimension=dimension
        )
        self.norm2 = ME.MinkowskiBatchNorm(planes, momentum=bn_momentum)
        self.relu = ME.MinkowskiReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: ME.SparseTensor) -> ME.SparseTensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.relu(out + residual)


# Where a scene's voxel grid has its origin. The stride-2 stages group voxels by the parity of
# their coordinates, so weights trained with one origin see other voxel groupings with another.
# "zero": grid = floor(xyz / voxel size), as ceco3d and LanguageGroundedSemseg voxelize;
# "min_corner": that grid minus its per-scene minimum, as ContrastiveSceneContexts' voxelizer
# aligns every scene (downstream/semseg/datasets/voxelizer.py); ``Segmentor`` applies it.
GRID_ORIGINS = ("zero", "min_corner")


class MinkUNetBase(nn.Module):
    """U-Net with four stride-2 stages down and four transposed stages up, skip concatenation.

    ``forward`` returns the per-voxel logits (N, num_classes) and the penultimate features
    (N, PLANES[7]), both at tensor stride 1 in the row order of the input sparse tensor.
    ``grid_origin`` (``GRID_ORIGINS``) is the input grid convention the weights were trained on.
    """

    BLOCK: type[nn.Module] = BasicBlock
    LAYERS: tuple[int, ...] = (2, 2, 2, 2, 2, 2, 2, 2)
    PLANES: tuple[int, ...] = (32, 64, 128, 256, 256, 128, 96, 96)
    INIT_DIM = 32
    STEM_KERNEL = 5
    # BatchNorm momentum inside the residual blocks; None: the constructor's ``bn_momentum``.
    BLOCK_BN_MOMENTUM: float | None = None

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        bn_momentum: float = 0.1,
        dimension=3,
        grid_origin: str = "zero",
    ):
        super().__init__()
        if grid_origin not in GRID_ORIGINS:
            raise ValueError(f"grid_origin={grid_origin!r}: choose one of {GRID_ORIGINS}")
        self.grid_origin = grid_origin
        self.num_classes = num_classes
        self.feature_dim = self.PLANES[7] * self.BLOCK.expansion
        self._bn_momentum = bn_momentum
        self._block_bn_momentum = (
            bn_momentum if self.BLOCK_BN_MOMENTUM is None else self.BLOCK_BN_MOMENTUM
        )
        self._dimension = dimension
        d, planes, exp = dimension, self.PLANES, self.BLOCK.expansion

        def conv(cin, cout, k, s=1):
            return ME.MinkowskiConvolution(cin, cout, kernel_size=k, stride=s, dimension=d)

        def convtr(cin, cout):
            return ME.MinkowskiConvolutionTranspose(cin, cout, kernel_size=2, stride=2, dimension=d)

        def bn(c):
            return ME.MinkowskiBatchNorm(c, momentum=bn_momentum)

        self.inplanes = self.INIT_DIM
        self.conv0p1s1 = conv(in_channels, self.inplanes, self.STEM_KERNEL)
        self.bn0 = bn(self.inplanes)

        self.conv1p1s2, self.bn1 = conv(self.inplanes, self.inplanes, 2, 2), bn(self.inplanes)
        self.block1 = self._make_layer(planes[0], self.LAYERS[0])
        self.conv2p2s2, self.bn2 = conv(self.inplanes, self.inplanes, 2, 2), bn(self.inplanes)
        self.block2 = self._make_layer(planes[1], self.LAYERS[1])
        self.conv3p4s2, self.bn3 = conv(self.inplanes, self.inplanes, 2, 2), bn(self.inplanes)
        self.block3 = self._make_layer(planes[2], self.LAYERS[2])
        self.conv4p8s2, self.bn4 = conv(self.inplanes, self.inplanes, 2, 2), bn(self.inplanes)
        self.block4 = self._make_layer(planes[3], self.LAYERS[3])

        self.convtr4p16s2, self.bntr4 = convtr(self.inplanes, planes[4]), bn(planes[4])
        self.inplanes = planes[4] + planes[2] * exp
        self.block5 = self._make_layer(planes[4], self.LAYERS[4])
        self.convtr5p8s2, self.bntr5 = convtr(self.inplanes, planes[5]), bn(planes[5])
        self.inplanes = planes[5] + planes[1] * exp
        self.block6 = self._make_layer(planes[5], self.LAYERS[5])
        self.convtr6p4s2, self.bntr6 = convtr(self.inplanes, planes[6]), bn(planes[6])
        self.inplanes = planes[6] + planes[0] * exp
        self.block7 = self._make_layer(planes[6], self.LAYERS[6])
        self.convtr7p2s2, self.bntr7 = convtr(self.inplanes, planes[7]), bn(planes[7])
        self.inplanes = planes[7] + self.INIT_DIM
        self.block8 = self._make_layer(planes[7], self.LAYERS[7])

        self.final = ME.MinkowskiConvolution(
            self.feature_dim, num_classes, kernel_size=1, bias=True, dimension=d
        )
        self.relu = ME.MinkowskiReLU(inplace=True)
        self._init_weights()

    def _make_layer(self, planes: int, blocks: int) -> nn.Sequential:
        expanded = planes * self.BLOCK.expansion
        downsample = None
        if self.inplanes != expanded:
            downsample = nn.Sequential(
                ME.MinkowskiConvolution(
                    self.inplanes, expanded, kernel_size=1, dimension=self._dimension
                ),
                ME.MinkowskiBatchNorm(expanded, momentum=self._bn_momentum),
            )
        layers = []
        for i in range(blocks):
            layers.append(
                self.BLOCK(
                    self.inplanes,
                    planes,
                    downsample=downsample if i == 0 else None,
                    bn_momentum=self._block_bn_momentum,
                    dimension=self._dimension,
                )
            )
            self.inplanes = expanded
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, ME.MinkowskiConvolution | ME.MinkowskiConvolutionTranspose):
                ME.utils.kaiming_normal_(m.kernel, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, ME.MinkowskiBatchNorm):
                nn.init.constant_(m.bn.weight, 1)
                nn.init.constant_(m.bn.bias, 0)
        nn.init.zeros_(self.final.bias)

    def forward(self, x: ME.SparseTensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: features (N, in_channels) on (N, 4) batch+grid coordinates.

        Returns ``(logits (N, num_classes), features (N, feature_dim))``.
        """
        out_p1 = self.relu(self.bn0(self.conv0p1s1(x)))
        out = self.relu(self.bn1(self.conv1p1s2(out_p1)))
        out_b1p2 = self.block1(out)
        out = self.relu(self.bn2(self.conv2p2s2(out_b1p2)))
        out_b2p4 = self.block2(out)
        out = self.relu(self.bn3(self.conv3p4s2(out_b2p4)))
        out_b3p8 = self.block3(out)
        out = self.relu(self.bn4(self.conv4p8s2(out_b3p8)))
        out = self.block4(out)

        out = self.relu(self.bntr4(self.convtr4p16s2(out)))
        out = self.block5(ME.cat(out, out_b3p8))
        out = self.relu(self.bntr5(self.convtr5p8s2(out)))
        out = self.block6(ME.cat(out, out_b2p4))
        out = self.relu(self.bntr6(self.convtr6p4s2(out)))
        out = self.block7(ME.cat(out, out_b1p2))
        out = self.relu(self.bntr7(self.convtr7p2s2(out)))
        features = self.block8(ME.cat(out, out_p1))
        return self.final(features).F, features.F


class MinkUNet14(MinkUNetBase):
    LAYERS = (1, 1, 1, 1, 1, 1, 1, 1)


class MinkUNet18(MinkUNetBase):
    LAYERS = (2, 2, 2, 2, 2, 2, 2, 2)


class MinkUNet34(MinkUNetBase):
    LAYERS = (2, 3, 4, 6, 2, 2, 2, 2)


class MinkUNet14A(MinkUNet14):
    PLANES = (32, 64, 128, 256, 128, 128, 96, 96)


class MinkUNet14S(MinkUNet14):
    """MinkUNet14A at half its width (not one of MinkowskiEngine's): the CPU benchmark's
    backbone, about half a MinkUNet14A step (docs/demo_results.md)."""

    PLANES = (16, 32, 64, 128, 64, 64, 48, 48)
    INIT_DIM = 16


class MinkUNet14B(MinkUNet14):
    PLANES = (32, 64, 128, 256, 128, 128, 128, 128)


class MinkUNet14C(MinkUNet14):
    PLANES = (32, 64, 128, 256, 192, 192, 128, 128)


class MinkUNet14D(MinkUNet14):
    PLANES = (32, 64, 128, 256, 384, 384, 384, 384)


class MinkUNet18A(MinkUNet18):
    PLANES = (32, 64, 128, 256, 128, 128, 96, 96)


class MinkUNet18B(MinkUNet18):
    PLANES = (32, 64, 128, 256, 128, 128, 128, 128)


class MinkUNet18D(MinkUNet18):
    PLANES = (32, 64, 128, 256, 384, 384, 384, 384)


class MinkUNet34A(MinkUNet34):
    PLANES = (32, 64, 128, 256, 256, 128, 64, 64)


class MinkUNet34B(MinkUNet34):
    PLANES = (32, 64, 128, 256, 256, 128, 64, 32)


class MinkUNet34C(MinkUNet34):
    PLANES = (32, 64, 128, 256, 256, 128, 96, 96)


class Res16UNetBase(MinkUNetBase):
    """The CSC / LG ``Res16UNet``: MinkUNet's topology and layer names, with

    * a 3x3x3 stem (both codebases train ScanNet with ``conv1_kernel_size=3``);
    * ``bn_momentum`` (0.02 in both configs) on the stem, the strided and transposed convolutions'
      norms and the shortcut norms only: their ``_make_layer`` does not hand it to the blocks, so
      the norms inside the residual blocks keep the 0.1 default;
    * MinkowskiEngine's default initialisation (uniform, +-1/sqrt(fan_in x kernel volume), the
      final bias too): they reset only BatchNorm to weight 1 / bias 0, which is its default.
    """

    STEM_KERNEL = 3
    BLOCK_BN_MOMENTUM = 0.1

    def _init_weights(self) -> None:
        """Keep the initialisation the layers were constructed with (see the class docstring)."""


class Res16UNet34(Res16UNetBase):
    LAYERS = MinkUNet34.LAYERS


class Res16UNet34C(Res16UNet34):
    PLANES = MinkUNet34C.PLANES


class Res16UNet34D(Res16UNet34):
    PLANES = (32, 64, 128, 256, 256, 256, 256, 512)


# The backbone names of checkpoints written before conf/model/ built backbones by _target_
# (``model.backbone: minkunet34c``); ceco3d.engine.checkpoint upgrades their configs.
BACKBONES: dict[str, type[MinkUNetBase]] = {
    cls.__name__.lower(): cls
    for cls in (
        MinkUNet14A, MinkUNet14S, MinkUNet14B, MinkUNet14C, MinkUNet14D,
        MinkUNet18A, MinkUNet18B, MinkUNet18D,
        MinkUNet34A, MinkUNet34B, MinkUNet34C,
        Res16UNet34C, Res16UNet34D,
    )
}  # fmt: skip
