"""Backbones, the CeCo center-collapse branch and the losses (issue 4)."""

from __future__ import annotations

from pathlib import Path

import MinkowskiEngine as ME
import numpy as np
import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from ceco3d.engine.checkpoint import upgrade_config
from ceco3d.errors import InputError
from ceco3d.losses import CeCoLoss, CrossEntropyLoss, class_weights
from ceco3d.models.center_collapse import CenterCollapseHead, class_moments, simplex_etf
from ceco3d.models.minkunet import BACKBONES
from ceco3d.models.segmentor import Segmentor
from ceco3d.paths import CONF_DIR
from tests.conftest import random_scene


def _labels(n: int, k: int, seed: int = 0, ignore_share: float = 0.2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=g)
    labels[torch.rand(n, generator=g) < ignore_share] = -1
    return labels


def _segmentor(k: int, with_head: bool, train_projection: bool = True) -> Segmentor:
    torch.manual_seed(0)
    backbone = BACKBONES["minkunet14a"](in_channels=3, num_classes=k)
    head = None
    if with_head:
        prior = CenterCollapseHead.prior_from_scene_counts(np.arange(k) + 1, num_scenes=k + 1)
        head = CenterCollapseHead(
            backbone.feature_dim, k, prior=prior, proj_dim=16, train_projection=train_projection
        )
    return Segmentor(backbone, head)


# --- backbones -------------------------------------------------------------------------------


def test_minkunet34c_matches_reference_parameter_count():
    model = BACKBONES["minkunet34c"](in_channels=3, num_classes=200)
    assert sum(p.numel() for p in model.parameters()) == 37_873_512
    assert model.LAYERS == (2, 3, 4, 6, 2, 2, 2, 2)
    assert model.PLANES == (32, 64, 128, 256, 256, 128, 96, 96)
    assert model.feature_dim == 96
    assert model.conv0p1s1.kernel.shape[0] == 5**3  # stem kernel 5
    assert model.final.bias is not None


def test_every_backbone_has_a_config_and_every_config_a_backbone():
    configs = {p.stem: OmegaConf.load(p) for p in (CONF_DIR / "model").glob("*.yaml")}
    assert set(configs) == set(BACKBONES)
    for name, config in configs.items():
        assert get_class(config.backbone._target_) is BACKBONES[name], name


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_trains_with_an_odd_class_count(name):
    """The registry's every variant, built from its config: shapes, one backward pass, and a
    gradient for every parameter."""
    config = OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml")
    model = instantiate(config.backbone, in_channels=3, num_classes=7).train()
    coords, feats = random_scene(num_points=300, batch=2)
    logits, features = model(ME.SparseTensor(feats, coordinates=coords))
    assert logits.shape == (len(coords), 7)
    assert features.shape == (len(coords), model.feature_dim)
    assert torch.isfinite(logits).all()
    logits.square().mean().backward()
    for param_name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: {param_name}"


def test_old_checkpoint_configs_are_upgraded():
    """Checkpoints from before conf/model/ built its parts by _target_: a backbone name beside
    bn_momentum, and the center head's settings under the loss."""
    old = {
        "model": {"backbone": "res16unet34c", "bn_momentum": 0.02},
        "loss": {"_target_": "ceco3d.losses.CeCoLoss", "lambda_": 0.4,
                 "center_head": {"proj_dim": 64, "seed": 3}},
        "seed": 3,
    }  # fmt: skip
    new = upgrade_config(old, Path("old.pt"))
    assert new["model"] == {
        "backbone": {"_target_": "ceco3d.models.minkunet.Res16UNet34C", "bn_momentum": 0.02},
        "center_head": {"_target_": "ceco3d.models.center_collapse.CenterCollapseHead",
                        "proj_dim": 64, "seed": 3},
    }  # fmt: skip
    assert new["loss"] == {"_target_": "ceco3d.losses.CeCoLoss", "lambda_": 0.4, "voxel": {
        "_target_": "ceco3d.losses.CrossEntropyLoss", "class_weighting": "none"}}  # fmt: skip
    assert upgrade_config(new, Path("new.pt")) == new  # today's layout is left as it is
    with pytest.raises(InputError, match=r"old.pt: model.backbone='minkunet99' is not a backbone"):
        upgrade_config({"model": {"backbone": "minkunet99"}}, Path("old.pt"))
    assert {"minkunet14a", "minkunet18a", "minkunet34c", "res16unet34c"} <= set(BACKBONES)


# --- simplex ETF -----------------------------------------------------------------------------


@pytest.mark.parametrize("k,d", [(20, 20), (20, 96), (200, 512)])
def test_simplex_etf_geometry(k, d):
    w = simplex_etf(k, d, seed=3).double()
    assert w.shape == (k, d)
    torch.testing.assert_close(w.norm(dim=1), torch.ones(k, dtype=torch.float64), atol=1e-6, rtol=0)
    cos = w @ w.T
    off = cos[~torch.eye(k, dtype=torch.bool)]
    torch.testing.assert_close(off, torch.full_like(off, -1 / (k - 1)), atol=1e-6, rtol=0)
    # W* columns (here: the sum of the class rows) sum to zero.
    torch.testing.assert_close(w.sum(0), torch.zeros(d, dtype=torch.float64), atol=1e-5, rtol=0)


def test_simplex_etf_is_seeded_and_needs_enough_dimensions():
    assert torch.equal(simplex_etf(7, 16, seed=1), simplex_etf(7, 16, seed=1))
    assert not torch.equal(simplex_etf(7, 16, seed=1), simplex_etf(7, 16, seed=2))
    with pytest.raises(ValueError, match="must be >= number of classes"):
        simplex_etf(20, 10)


# --- class centers ---------------------------------------------------------------------------


def test_class_moments_equal_naive_loops():
    k, n = 9, 400
    feats = torch.randn(n, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    feats = feats * 3 + 100  # far from zero: the covariance must not cancel
    labels = _labels(n, k)
    labels[labels == 4] = -1  # class 4 absent
    feats[labels == -1] += 7  # ignored voxels distributed unlike the labelled ones
    counts, sums, total, mean, cov = class_moments(feats, labels, k)
    for c in range(k):  # class sums: labelled voxels only
        assert counts[c] == (labels == c).sum()
        torch.testing.assert_close(sums[c], feats[labels == c].sum(0))
    # mean and covariance: every voxel, ignored ones included (the release's BatchNorm)
    assert total == n
    torch.testing.assert_close(mean, feats.mean(0))
    torch.testing.assert_close(cov, torch.cov(feats.T, correction=0))
    assert counts[4] == 0


def test_class_moments_gradient():
    feats = torch.randn(40, 3, dtype=torch.float64, requires_grad=True)
    labels = _labels(40, 4, seed=3)

    def moments(x):
        _, sums, _, mean, cov = class_moments(x, labels, 4)
        return sums, mean, cov

    assert torch.autograd.gradcheck(moments, (feats,))


def test_absent_class_gets_no_center_and_no_loss_term():
    k = 7
    model = _segmentor(k, with_head=True).train()
    coords, feats = random_scene(num_points=300)
    labels = torch.full((len(coords),), 2)
    labels[: len(labels) // 2] = 5
    labels[:10] = -1
    out = model(ME.SparseTensor(feats, coordinates=coords), labels)
    assert out["center_classes"].tolist() == [2, 5]
    assert out["center_logits"].shape == (2, k)
    parts = CeCoLoss(lambda_=0.5)(out, labels)
    expected = torch.nn.functional.cross_entropy(out["center_logits"], torch.tensor([2, 5]))
    torch.testing.assert_close(parts["center"], expected)
    torch.testing.assert_close(parts["loss"], parts["ce"] + 0.5 * parts["center"])


def test_prior_is_the_share_of_scenes_and_unseen_classes_stay_finite():
    prior = CenterCollapseHead.prior_from_scene_counts([10, 0, 5], num_scenes=10)
    torch.testing.assert_close(prior, torch.tensor([1.0, 0.0, 0.5]))
    head = CenterCollapseHead(4, 3, prior=prior, proj_dim=8)
    torch.testing.assert_close(head.log_prior, torch.log(prior + 1e-12))
    assert torch.isfinite(head.log_prior).all()


# --- training behaviour ----------------------------------------------------------------------


@pytest.mark.parametrize("train_projection", [True, False])
def test_every_trainable_parameter_gets_a_gradient(train_projection):
    k = 7  # odd on purpose
    model = _segmentor(k, with_head=True, train_projection=train_projection).train()
    coords, feats = random_scene(num_points=500, batch=2)
    labels = _labels(len(coords), k)
    out = model(ME.SparseTensor(feats, coordinates=coords), labels)
    parts = CeCoLoss(lambda_=0.4)(out, labels)
    parts["loss"].backward()
    assert all(torch.isfinite(v) for v in parts.values())
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name} received no gradient"
            assert torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"
    projection = [*model.center_head.reduce.parameters(), *model.center_head.gain.parameters()]
    assert all(p.requires_grad == train_projection for p in projection)


def test_etf_buffer_is_fixed_and_saved():
    k = 7
    model = _segmentor(k, with_head=True).train()
    etf = model.center_head.etf.clone()
    assert "etf" not in dict(model.center_head.named_parameters())
    assert "center_head.etf" in model.state_dict()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    coords, feats = random_scene(num_points=300)
    labels = _labels(len(coords), k)
    CeCoLoss()(model(ME.SparseTensor(feats, coordinates=coords), labels), labels)["loss"].backward()
    optimizer.step()
    assert torch.equal(model.center_head.etf, etf)


def test_eval_mode_runs_no_branch_and_inference_weights_exclude_it():
    k = 7
    plain, ceco = _segmentor(k, with_head=False), _segmentor(k, with_head=True)
    calls = []
    ceco.center_head.register_forward_hook(lambda *args: calls.append(1))
    coords, feats = random_scene(num_points=300)
    labels = _labels(len(coords), k)
    ceco.eval()
    out = ceco(ME.SparseTensor(feats, coordinates=coords), labels)
    assert "center_logits" not in out and calls == []
    inference = ceco.inference_state_dict()
    assert inference.keys() == plain.state_dict().keys()
    plain.load_state_dict(inference)  # the deployed model is the plain model
    plain.eval()
    torch.testing.assert_close(
        plain(ME.SparseTensor(feats, coordinates=coords))["logits"], out["logits"]
    )


def test_state_dict_round_trip():
    k = 7
    a, b = _segmentor(k, with_head=True), _segmentor(k, with_head=True)
    for p in b.parameters():
        torch.nn.init.normal_(p)
    b.load_state_dict(a.state_dict())
    for (na, ta), (nb, tb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert na == nb and torch.equal(ta, tb)


@pytest.mark.parametrize("loss_name", ["ce", "ceco"])
def test_overfit_tiny_scene(loss_name):
    k = 5
    model = _segmentor(k, with_head=loss_name == "ceco").train()
    coords, feats = random_scene(num_points=400, seed=3)
    # Labels that depend on position, so the network can learn them.
    labels = (coords[:, 1] * k // 40).long().clamp(max=k - 1)
    loss_fn = CeCoLoss(0.4) if loss_name == "ceco" else CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(25):
        parts = loss_fn(model(ME.SparseTensor(feats, coordinates=coords), labels), labels)
        optimizer.zero_grad()
        parts["loss"].backward()
        optimizer.step()
        losses.append(parts["loss"].item())
    assert losses[-1] < 0.5 * losses[0], losses


# --- losses ----------------------------------------------------------------------------------


def test_cross_entropy_ignores_label_and_survives_all_ignored():
    logits = torch.randn(6, 3, requires_grad=True)
    labels = torch.tensor([0, 1, -1, 2, -1, 1])
    parts = CrossEntropyLoss()({"logits": logits}, labels)
    valid = labels >= 0
    torch.testing.assert_close(
        parts["ce"], torch.nn.functional.cross_entropy(logits[valid], labels[valid])
    )
    empty = CrossEntropyLoss()({"logits": logits}, torch.full((6,), -1))
    assert empty["loss"].item() == 0.0
    empty["loss"].backward()


def test_class_weights():
    counts = np.array([1000, 100, 10, 0])
    enet = class_weights(counts, "enet").numpy()
    assert enet[3] == 0 and enet[0] < enet[1] < enet[2]
    np.testing.assert_allclose(enet[:3].mean(), 1.0, rtol=1e-6)
    freq = counts[:3] / counts.sum()
    raw = 1 / np.log(1.02 + freq)
    np.testing.assert_allclose(enet[:3], raw / raw.mean(), rtol=1e-6)
    assert class_weights(counts, "none") is None
    with pytest.raises(ValueError, match="unknown class weighting"):
        class_weights(counts, "median")
    weighted = CrossEntropyLoss(class_counts=counts, class_weighting="enet")
    assert torch.equal(weighted.weight, torch.as_tensor(enet))


def test_ceco_loss_needs_the_branch():
    with pytest.raises(KeyError, match="center branch"):
        CeCoLoss()({"logits": torch.randn(4, 3)}, torch.tensor([0, 1, 2, 0]))


def test_center_sync_without_process_group_is_local():
    feats = torch.randn(30, 4)
    labels = torch.arange(30) % 3
    local = class_moments(feats, labels, 3, sync=False)
    for synced, alone in zip(class_moments(feats, labels, 3, sync=True), local, strict=True):
        assert torch.equal(synced, alone)
    torch.testing.assert_close(local[1][1], feats[labels == 1].sum(0))


def test_ignored_voxels_enter_the_batchnorm_statistics():
    head = CenterCollapseHead(4, 5, proj_dim=8, dropout=0.0).train()
    feats = torch.randn(60, 4, generator=torch.Generator().manual_seed(2))
    labels = torch.arange(60) % 5
    labels[::3] = -1
    noisy = feats.clone()
    noisy[labels == -1] += 3.0  # shifts the statistics of all voxels, not the class sums
    expected = head(feats, labels)
    got = head(noisy, labels)
    assert torch.equal(got[1], expected[1])
    assert not torch.allclose(got[0], expected[0], atol=1e-3)
    labelled_only = head(feats[labels >= 0], labels[labels >= 0])
    assert not torch.allclose(labelled_only[0], expected[0], atol=1e-3)
    empty_logits, empty_classes = head(feats[:1], labels[1:2])  # fewer than 2 voxels
    assert empty_logits.shape == (0, 5) and empty_classes.numel() == 0


@pytest.mark.gpu
@pytest.mark.skipif(
    not (torch.cuda.is_available() and ME.is_cuda_available()),
    reason="needs a CUDA GPU and MinkowskiEngine built with CUDA",
)
def test_ceco_step_on_gpu_matches_cpu():
    from ceco3d.models.segmentor import sparse_input

    k = 7
    coords, feats = random_scene(num_points=500, batch=2)
    labels = _labels(len(coords), k)
    losses = {}
    for device in ("cpu", "cuda"):
        model = _segmentor(k, with_head=True).to(device).train()
        model.center_head.dropout.p = 0.0
        dev = torch.device(device)
        out = model(sparse_input(feats, coords, dev), labels.to(dev))
        parts = CeCoLoss(0.4)(out, labels.to(dev))
        parts["loss"].backward()
        losses[device] = {name: value.item() for name, value in parts.items()}
    for name in ("ce", "center", "loss"):
        assert losses["cuda"][name] == pytest.approx(losses["cpu"][name], rel=1e-3)
