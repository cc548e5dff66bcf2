"""The center-collapse branch against a reference written straight from the equations of the
authors' released head (uper_head_ceco.py): explicit loops over voxels and classes, float64.

    z_i = BN(W_r f_i)                      all voxels, ignored ones included: batch statistics
                                           (biased variance) of the whole batch
    c_k = mean_{i: y_i = k} z_i            labelled voxels, present classes, ascending
    g_k = ReLU(W_g c_k + b_g)
    l_k = s * W* dropout(g_k / |g_k|) + log(prior + 1e-12)
    L   = mean_k CE(l_k, k)
"""

from __future__ import annotations

import inspect

import MinkowskiEngine as ME
import pytest
import torch
import torch.multiprocessing as mp
from omegaconf import OmegaConf

from ceco3d.losses import CeCoLoss
from ceco3d.models.center_collapse import CenterCollapseHead, _ClassMoments
from ceco3d.models.minkunet import BACKBONES
from ceco3d.models.segmentor import Segmentor
from ceco3d.paths import CONF_DIR
from tests.conftest import random_scene

K = 7  # odd on purpose
IN_DIM = 6


def scene_labels(n: int = 90) -> torch.Tensor:
    """Labels with ignored voxels, a class with a single voxel (3) and absent classes (0, 6)."""
    labels = torch.tensor([1, 2, 4, 5])[torch.arange(n) % 4]
    labels[::5] = -1
    labels[7] = 3
    return labels


def head_and_inputs(dropout: float = 0.0, seed: int = 4):
    prior = torch.tensor([0.5, 0.9, 0.2, 0.05, 0.3, 0.7, 0.0])  # class 6 never seen in training
    head = CenterCollapseHead(IN_DIM, K, prior=prior, proj_dim=16, dropout=dropout, seed=seed)
    head = head.double().train()
    labels = scene_labels()
    features = torch.randn(len(labels), IN_DIM, dtype=torch.float64,
                           generator=torch.Generator().manual_seed(1))  # fmt: skip
    features = (features * 2 + 0.5).requires_grad_()
    return head, features, labels


def reference_logits(head: CenterCollapseHead, features, labels, dropout_mask=None):
    """The equations above, one voxel and one class at a time."""
    w_r = head.reduce[0].weight.detach().double()
    bn = head.reduce[1]
    gamma, beta = bn.weight.detach().double(), bn.bias.detach().double()
    w_g, b_g = head.gain[0].weight.detach().double(), head.gain[0].bias.detach().double()
    etf, log_prior = head.etf.double(), head.log_prior.double()

    z = [w_r @ features[i] for i in range(len(labels))]
    mean = sum(z) / len(z)
    var = sum((z_i - mean) ** 2 for z_i in z) / len(z)
    z_hat = [(z_i - mean) / torch.sqrt(var + bn.eps) * gamma + beta for z_i in z]

    classes = sorted({int(k) for k in labels if k != -1})
    logits = []
    for p, k in enumerate(classes):
        members = [z_hat[i] for i in range(len(labels)) if labels[i] == k]
        center = sum(members) / len(members)
        g = torch.relu(w_g @ center + b_g)
        u = g / torch.sqrt((g * g).sum())
        if dropout_mask is not None:
            u = u * dropout_mask[p]
        logits.append(head.scale * torch.stack([etf[c] @ u for c in range(K)]) + log_prior)
    return torch.stack(logits), classes


def reference_loss(logits: torch.Tensor, classes: list[int]) -> torch.Tensor:
    terms = [-(logits[p, k] - torch.log(torch.exp(logits[p]).sum())) for p, k in enumerate(classes)]
    return sum(terms) / len(terms)


@pytest.mark.parametrize("chunk", [None, 7])  # 7: the scatter spans many row chunks
def test_logits_and_backbone_gradient_equal_the_reference_equations(chunk, monkeypatch):
    if chunk is not None:
        monkeypatch.setattr(_ClassMoments, "CHUNK", chunk)
    head, features, labels = head_and_inputs()
    logits, classes = head(features, labels)
    assert classes.tolist() == [1, 2, 3, 4, 5]  # 0 and 6 absent, 3 from a single voxel
    loss = torch.nn.functional.cross_entropy(logits, classes)  # CeCoLoss's center term
    (grad,) = torch.autograd.grad(loss, features)

    ref_features = features.detach().clone().requires_grad_()
    ref_logits, ref_classes = reference_logits(head, ref_features, labels)
    ref_loss = reference_loss(ref_logits, ref_classes)
    (ref_grad,) = torch.autograd.grad(ref_loss, ref_features)

    assert ref_classes == classes.tolist()
    torch.testing.assert_close(logits, ref_logits, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)
    # Ignored voxels get gradient through the BatchNorm statistics, as in the release.
    assert (grad[labels == -1].abs().sum(1) > 0).all()
    assert grad[labels == 3].abs().sum() > 0  # the single-voxel class does
    # The class never seen in training is pushed out of the softmax (log(1e-12)).
    assert logits[:, 6].max() < -20


def test_dropout_acts_on_the_normalised_gains():
    head, features, labels = head_and_inputs(dropout=0.5)
    torch.manual_seed(11)
    logits, classes = head(features, labels)
    torch.manual_seed(11)  # the head's only random draw is its dropout mask
    mask = torch.nn.functional.dropout(torch.ones(len(classes), 16, dtype=torch.float64), 0.5)
    ref_logits, _ = reference_logits(head, features, labels, dropout_mask=mask)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-10, atol=1e-10)


def test_centers_need_a_labelled_voxel_and_statistics_need_two_voxels():
    head, features, labels = head_and_inputs()
    one = labels.clone()
    one[one != 3] = -1  # a single labelled voxel: its center, normalised by all voxels' moments
    logits, classes = head(features, one)
    ref_logits, ref_classes = reference_logits(head, features, one)
    assert classes.tolist() == ref_classes == [3]
    torch.testing.assert_close(logits, ref_logits, rtol=1e-10, atol=1e-10)

    steps = int(head.reduce[1].num_batches_tracked)
    logits, classes = head(features, torch.full_like(labels, -1))  # nothing labelled
    assert logits.shape == (0, K) and classes.numel() == 0
    # BatchNorm still saw the batch, as the release's BN sees every position.
    assert int(head.reduce[1].num_batches_tracked) == steps + 1
    assert head(features[:1], labels[1:2])[0].shape == (0, K)  # one voxel: no statistics


def segmentor(train_projection: bool) -> Segmentor:
    torch.manual_seed(0)
    backbone = BACKBONES["minkunet14a"](in_channels=3, num_classes=K)
    head = CenterCollapseHead(backbone.feature_dim, K, proj_dim=16,
                              train_projection=train_projection)  # fmt: skip
    return Segmentor(backbone, head).train()


@pytest.mark.parametrize("train_projection", [False, True])
def test_frozen_parts_are_unchanged_by_an_optimizer_step(train_projection):
    model = segmentor(train_projection)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # Every parameter handed over, weight decay and momentum on: frozen ones get no gradient,
    # so SGD skips them.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-2)
    coords, feats = random_scene(num_points=400, batch=2)
    labels = scene_labels(len(coords))
    for _ in range(2):
        parts = CeCoLoss(0.4)(model(ME.SparseTensor(feats, coordinates=coords), labels), labels)
        optimizer.zero_grad()
        parts["loss"].backward()
        optimizer.step()
    after = model.state_dict()
    frozen = [k for k in before if k.startswith(("center_head.reduce.0", "center_head.gain.0"))]
    frozen += ["center_head.reduce.1.weight", "center_head.reduce.1.bias"]
    assert len(frozen) == 5
    for key in frozen:
        assert torch.equal(before[key], after[key]) != train_projection, key
    for key in ("center_head.etf", "center_head.log_prior"):
        assert torch.equal(before[key], after[key])
    assert not torch.equal(before["backbone.final.kernel"], after["backbone.final.kernel"])


def test_constructor_defaults_equal_the_config_defaults():
    config = OmegaConf.load(CONF_DIR / "model" / "center_head" / "ceco.yaml")
    run_seed = OmegaConf.load(CONF_DIR / "train.yaml").seed
    signature = inspect.signature(CenterCollapseHead).parameters
    for key in set(config) - {"_target_"}:
        expected = run_seed if key == "seed" else config[key]
        assert signature[key].default == expected, key
    assert config._get_node("seed")._value() == "${seed}"  # the head's seed is the run's seed


def test_head_init_follows_its_seed_and_leaves_the_global_generator_alone():
    state = torch.random.get_rng_state()
    a, b, c = (CenterCollapseHead(IN_DIM, K, proj_dim=16, seed=s) for s in (1, 1, 2))
    assert torch.equal(torch.random.get_rng_state(), state)
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name]), name
    assert not torch.equal(a.etf, c.etf)
    assert not torch.equal(a.reduce[0].weight, c.reduce[0].weight)
    assert not torch.equal(a.gain[0].weight, c.gain[0].weight)


# --- two gloo processes ----------------------------------------------------------------------

WORLD = 2


def _rank_rows(rank: int, n: int) -> torch.Tensor:
    """Rank 0 holds the first 40 voxels, rank 1 the rest: different class sets and counts."""
    return torch.arange(n)[:40] if rank == 0 else torch.arange(n)[40:]


def _ddp_worker(rank: int, store: str, sync: bool, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    head, features, labels = head_and_inputs()
    head.sync_centers = sync
    rows = _rank_rows(rank, len(labels))
    local = features.detach()[rows].clone().requires_grad_()
    logits, classes = head(local, labels[rows])
    loss = torch.nn.functional.cross_entropy(logits, classes)
    (grad,) = torch.autograd.grad(loss, local)
    torch.save({"logits": logits.detach(), "classes": classes, "grad": grad,
                "running_var": head.reduce[1].running_var}, f"{out}.{rank}")  # fmt: skip
    dist.barrier()  # no rank tears gloo down while the other is still in a collective
    dist.destroy_process_group()


def run_two_ranks(tmp_path, monkeypatch, sync: bool) -> list[dict]:
    out = str(tmp_path / f"rank_sync{sync}")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # for the spawned ranks only; undone after
    mp.spawn(_ddp_worker, args=(str(tmp_path / f"store{sync}"), sync, out), nprocs=WORLD)
    return [torch.load(f"{out}.{rank}") for rank in range(WORLD)]


def one_process(rows: torch.Tensor | None = None) -> dict:
    head, features, labels = head_and_inputs()
    if rows is not None:
        features, labels = features.detach()[rows].clone().requires_grad_(), labels[rows]
    logits, classes = head(features, labels)
    (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, classes), features)
    return {"logits": logits, "classes": classes, "grad": grad,
            "running_var": head.reduce[1].running_var}  # fmt: skip


@pytest.mark.slow
def test_two_processes_keep_their_own_centers_by_default(tmp_path, monkeypatch):
    ranks = run_two_ranks(tmp_path, monkeypatch, sync=False)
    assert ranks[0]["classes"].tolist() != ranks[1]["classes"].tolist()
    for rank, got in enumerate(ranks):
        # Each rank's branch is the one-process branch on its own voxels, BatchNorm included.
        alone = one_process(_rank_rows(rank, len(scene_labels())))
        assert got["classes"].tolist() == alone["classes"].tolist()
        for key in ("logits", "grad", "running_var"):
            torch.testing.assert_close(got[key], alone[key], rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_synced_centers_equal_one_process_on_the_global_batch(tmp_path, monkeypatch):
    ranks = run_two_ranks(tmp_path, monkeypatch, sync=True)
    joint = one_process()
    for rank, got in enumerate(ranks):
        assert got["classes"].tolist() == joint["classes"].tolist()
        torch.testing.assert_close(got["logits"], joint["logits"], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(got["running_var"], joint["running_var"], rtol=1e-10, atol=0)
        # Every rank back-propagates the same loss through the all-reduce, whose backward sums
        # the ranks' gradients: each voxel gets WORLD times its one-process gradient, which
        # DDP's averaging of parameter gradients divides back.
        rows = _rank_rows(rank, len(scene_labels()))
        torch.testing.assert_close(got["grad"], WORLD * joint["grad"][rows], rtol=1e-9,
                                   atol=1e-12)  # fmt: skip
