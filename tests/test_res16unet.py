"""The paper's backbone: Res16UNet34C / 34D checked against the published definitions.

Checked against (layer by layer: names, kernel sizes, strides, channels, bias, BN momentum):

* facebookresearch/ContrastiveSceneContexts, ``downstream/semseg/models/res16unet.py``,
  ``models/resnet.py`` (``_make_layer``), ``models/modules/resnet_block.py``,
  ``models/modules/common.py`` (``conv`` / ``conv_tr``: bias off unless asked) and
  ``config/default.yaml`` + ``scripts/train_scannet.sh`` (``conv1_kernel_size=3``,
  ``bn_momentum: 0.02``), at commit 83515bef4754b3d90fc3b3a437fa939e0e861af8 (the models folder
  last changed in aeb9c15fd4f88a47c3eb2df1517ee897b890d59e);
* RozDavid/LanguageGroundedSemseg, ``models/res16unet.py``, ``models/resnet.py``,
  ``models/modules/resnet_block.py``, ``models/modules/common.py``, ``config/config.py`` at commit
  5d64d9c8597736aa83e8d599985896bd6a2277b6 (unchanged up to
  3af87e933064414e7801dba82932b9f1a3440ae0); Res16UNet34D's PLANES from
  ``downstream/insseg/insseg_models/insseg_res16unet.py`` there.

The expected layer list below is transcribed from those files, not derived from ceco3d's code, and
the parameter counts are summed from it by hand formula.
"""

from __future__ import annotations

import MinkowskiEngine as ME
import pytest
import torch

from ceco3d.engine.build import build_model
from ceco3d.models.minkunet import BACKBONES
from tests.conftest import random_scene
from tests.fixtures import compose_config

# Res16UNet34 (both codebases): LAYERS, INIT_DIM; the C / D widths.
LAYERS = (2, 3, 4, 6, 2, 2, 2, 2)
INIT_DIM = 32
PLANES = {
    "res16unet34c": (32, 64, 128, 256, 256, 128, 96, 96),
    "res16unet34d": (32, 64, 128, 256, 256, 256, 256, 512),
}
BN_MOMENTUM = 0.02  # the configs' bn_momentum
BLOCK_BN_MOMENTUM = 0.1  # BasicBlockBase's default: _make_layer does not pass bn_momentum on


def reference_layers(name: str, in_channels: int, num_classes: int) -> tuple[dict, dict]:
    """Convolutions ``name -> (kernel, stride, transposed, in, out, bias)`` and norms
    ``name -> (channels, momentum)`` in the order Res16UNetBase.network_initialization builds
    them (3D, so every kernel region is a cube and every dilation 1)."""
    planes = PLANES[name]
    convs, norms = {}, {}

    def make_layer(prefix: str, inplanes: int, width: int, blocks: int) -> int:
        if inplanes != width:  # stride 1 everywhere, so only a width change needs a shortcut
            convs[f"{prefix}.0.downsample.0"] = (1, 1, False, inplanes, width, False)
            norms[f"{prefix}.0.downsample.1"] = (width, BN_MOMENTUM)
        for i in range(blocks):
            cin = inplanes if i == 0 else width
            convs[f"{prefix}.{i}.conv1"] = (3, 1, False, cin, width, False)
            norms[f"{prefix}.{i}.norm1"] = (width, BLOCK_BN_MOMENTUM)
            convs[f"{prefix}.{i}.conv2"] = (3, 1, False, width, width, False)
            norms[f"{prefix}.{i}.norm2"] = (width, BLOCK_BN_MOMENTUM)
        return width

    convs["conv0p1s1"] = (3, 1, False, in_channels, INIT_DIM, False)
    norms["bn0"] = (INIT_DIM, BN_MOMENTUM)
    inplanes, skips = INIT_DIM, [INIT_DIM]
    for s in range(4):
        convs[f"conv{s + 1}p{2**s}s2"] = (2, 2, False, inplanes, inplanes, False)
        norms[f"bn{s + 1}"] = (inplanes, BN_MOMENTUM)
        inplanes = make_layer(f"block{s + 1}", inplanes, planes[s], LAYERS[s])
        skips.append(inplanes)
    for s in range(4):
        stage = 4 + s
        convs[f"convtr{stage}p{2 ** (4 - s)}s2"] = (2, 2, True, inplanes, planes[stage], False)
        norms[f"bntr{stage}"] = (planes[stage], BN_MOMENTUM)
        inplanes = planes[stage] + skips[3 - s]
        inplanes = make_layer(f"block{stage + 1}", inplanes, planes[stage], LAYERS[stage])
    convs["final"] = (1, 1, False, planes[7], num_classes, True)
    return convs, norms


def reference_parameter_count(name: str, in_channels: int, num_classes: int) -> int:
    """k^3 * in * out (+ out for a bias) per convolution, 2 * channels (weight, bias) per norm."""
    convs, norms = reference_layers(name, in_channels, num_classes)
    conv_params = sum(
        k**3 * cin * cout + (cout if bias else 0) for k, _, _, cin, cout, bias in convs.values()
    )
    return conv_params + sum(2 * channels for channels, _ in norms.values())


def model_layers(model: torch.nn.Module) -> tuple[dict, dict]:
    convs, norms = {}, {}
    for name, module in model.named_modules():
        if isinstance(module, ME.MinkowskiConvolution | ME.MinkowskiConvolutionTranspose):
            generator = module.kernel_generator
            size, stride = list(generator.kernel_size), list(generator.kernel_stride)
            assert size == [size[0]] * 3 and stride == [stride[0]] * 3, name
            assert list(generator.kernel_dilation) == [1, 1, 1], name
            assert generator.region_type == ME.RegionType.HYPER_CUBE, name
            convs[name] = (
                size[0],
                stride[0],
                module.is_transpose,
                module.in_channels,
                module.out_channels,
                module.bias is not None,
            )
        elif isinstance(module, ME.MinkowskiBatchNorm):
            norms[name] = (module.bn.num_features, module.bn.momentum)
    return convs, norms


@pytest.mark.parametrize("name", sorted(PLANES))
def test_layer_list_matches_the_published_definition(name):
    model = BACKBONES[name](in_channels=3, num_classes=200, bn_momentum=BN_MOMENTUM)
    assert model_layers(model) == reference_layers(name, in_channels=3, num_classes=200)
    assert model.feature_dim == PLANES[name][7]


@pytest.mark.parametrize(
    "name,num_classes,expected",
    [
        ("res16unet34c", 20, 37_846_644),
        ("res16unet34c", 200, 37_864_104),
        ("res16unet34d", 20, 79_337_460),
        ("res16unet34d", 200, 79_429_800),
    ],
)
def test_parameter_count_matches_the_hand_count(name, num_classes, expected):
    assert reference_parameter_count(name, 3, num_classes) == expected
    model = BACKBONES[name](in_channels=3, num_classes=num_classes)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_only_the_stem_separates_res16unet34c_from_minkunet34c_in_parameters():
    res16 = BACKBONES["res16unet34c"](in_channels=3, num_classes=200)
    mink = BACKBONES["minkunet34c"](in_channels=3, num_classes=200)
    count = [sum(p.numel() for p in m.parameters()) for m in (res16, mink)]
    assert count[1] - count[0] == 3 * INIT_DIM * (5**3 - 3**3)  # 5^3 vs 3^3 stem kernel


def test_initialisation_is_minkowski_engines_default():
    """CSC / LG keep MinkowskiEngine's uniform init (+-1/sqrt(fan_in x kernel volume)), bias too."""
    torch.manual_seed(0)
    model = BACKBONES["res16unet34c"](in_channels=3, num_classes=20)
    for module in (model.conv0p1s1, model.block4[0].conv1, model.final):
        bound = 1 / (module.in_channels * module.kernel_generator.kernel_volume) ** 0.5
        assert module.kernel.abs().max() <= bound
        assert module.kernel.abs().max() > 0.9 * bound  # uniform fills the range, unlike kaiming
    assert model.final.bias.abs().max() > 0  # not zeroed


@pytest.mark.parametrize("name", sorted(PLANES))
def test_forward_backward_with_an_odd_class_count(name):
    torch.manual_seed(0)
    coords, feats = random_scene(num_points=300, batch=2)
    model = BACKBONES[name](in_channels=3, num_classes=7, bn_momentum=BN_MOMENTUM).train()
    logits, features = model(ME.SparseTensor(feats, coordinates=coords))
    assert logits.shape == (len(coords), 7)
    assert features.shape == (len(coords), model.feature_dim)
    labels = torch.arange(len(coords)) % 7
    torch.nn.functional.cross_entropy(logits, labels).backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name
    assert torch.isfinite(logits).all() and torch.isfinite(features).all()


@pytest.mark.parametrize("name", sorted(PLANES))
def test_model_config_builds_the_backbone_with_the_published_momentum(name):
    cfg = compose_config("train", [f"model={name}", "data.root=/data/prepared"])
    model = build_model(cfg).backbone
    assert type(model).__name__.lower() == name
    assert model.num_classes == cfg.data.num_classes
    _, norms = model_layers(model)
    assert norms["bn0"][1] == norms["block2.0.downsample.1"][1] == BN_MOMENTUM
    assert norms["block1.0.norm1"][1] == BLOCK_BN_MOMENTUM
