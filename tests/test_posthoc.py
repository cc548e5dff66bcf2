"""Post-hoc logit adjustment, argmax(z - tau log pi), on numbers computed by hand."""

from __future__ import annotations

import MinkowskiEngine as ME
import pytest
import torch

from ceco3d.engine.inference import adjust_logits_posthoc
from ceco3d.models.minkunet import BACKBONES
from ceco3d.models.segmentor import Segmentor
from tests.conftest import random_scene

# pi = (0.9, 0.09, 0.01); log pi = (-0.105361, -2.407946, -4.605170)
COUNTS = [90, 9, 1]
BIAS = [2.0, 0.5, -1.0]


def constant_model() -> Segmentor:
    """A 3-class model whose logits are BIAS at every voxel (classifier kernel zero)."""
    model = Segmentor(BACKBONES["minkunet14a"](in_channels=3, num_classes=3)).eval()
    with torch.no_grad():
        model.backbone.final.kernel.zero_()
        model.backbone.final.bias.copy_(torch.tensor([BIAS]))
    return model


def logits_of(model: Segmentor) -> torch.Tensor:
    coords, feats = random_scene(num_points=100, batch=1)
    with torch.no_grad():
        return model(ME.SparseTensor(feats, coordinates=coords))["logits"]


@pytest.mark.parametrize(
    "counts,tau,expected,winner",
    [
        # 2 + 0.105361, 0.5 + 2.407946, -1 + 4.605170: the rarest class wins
        (COUNTS, 1.0, [2.105361, 2.907946, 3.605170], 2),
        # 2 + 0.052680, 0.5 + 1.203973, -1 + 2.302585: the most frequent still wins
        (COUNTS, 0.5, [2.052680, 1.703973, 1.302585], 0),
        # a class without training voxels counts one: the same prior as above
        ([90, 9, 0], 1.0, [2.105361, 2.907946, 3.605170], 2),
        (COUNTS, 0.0, BIAS, 0),
    ],
)
def test_adjusted_logits_are_z_minus_tau_log_pi(counts, tau, expected, winner):
    model = constant_model()
    plain = logits_of(model)
    assert (plain.argmax(1) == 0).all()
    adjust_logits_posthoc(model, counts, tau)
    adjusted = logits_of(model)
    torch.testing.assert_close(adjusted, torch.tensor([expected]).expand_as(adjusted),
                               rtol=0, atol=1e-6)  # fmt: skip
    assert (adjusted.argmax(1) == winner).all()
