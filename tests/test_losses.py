"""Each per-voxel loss against a reference written from its paper's equation with explicit loops
in float64 (value and gradient w.r.t. the logits), on a batch with ignored voxels, a class absent
from the batch and a class with a single voxel; the reductions to plain cross-entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ceco3d.data.label_sets import IGNORE_INDEX
from ceco3d.losses import (
    CeCoLoss,
    ClassBalancedLoss,
    CrossEntropyLoss,
    FocalLoss,
    LogitAdjustedLoss,
    LovaszSoftmaxLoss,
    SeesawLoss,
    class_weights,
)

K = 5
# Training voxel counts: class 3 has none, class 4 a single voxel.
COUNTS = [5000, 800, 60, 0, 1]
# Batch labels: two ignored voxels, class 3 absent, class 4 once.
LABELS = [0, 0, 1, IGNORE_INDEX, 2, 0, 1, 4, IGNORE_INDEX, 0, 2, 1]


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(len(LABELS), K, dtype=torch.float64, generator=generator)
    return logits.requires_grad_(), torch.tensor(LABELS)


def labelled() -> list[tuple[int, int]]:
    """(voxel, label) of every labelled voxel."""
    return [(i, y) for i, y in enumerate(LABELS) if y != IGNORE_INDEX]


def log_softmax_entry(z: torch.Tensor, i: int, j: int, offset=None) -> torch.Tensor:
    """log( e^{z_ij + o_j} / sum_k e^{z_ik + o_k} ), one term at a time."""
    o = offset or [0.0] * K
    total = sum(torch.exp(z[i, k] + o[k]) for k in range(K))
    return z[i, j] + o[j] - torch.log(total)


def value_and_grad(loss_of, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    value = loss_of(logits)
    (grad,) = torch.autograd.grad(value, logits)
    return value.detach(), grad


def check(loss_fn, reference, seed: int = 0) -> None:
    logits, labels = batch(seed)
    value, grad = value_and_grad(lambda z: loss_fn({"logits": z}, labels)["loss"], logits)
    ref_value, ref_grad = value_and_grad(reference, logits)
    torch.testing.assert_close(value, ref_value, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)
    assert not grad[labels == IGNORE_INDEX].any(), "an ignored voxel got a gradient"


# --- references, from the papers' equations ------------------------------------------------


def focal_reference(gamma: float, alpha: list[float] | None):
    """Lin et al. 2017, eq. 5 with the softmax: -alpha_y (1 - p_y)^gamma log p_y, voxel mean."""

    def loss(z):
        terms = []
        for i, y in labelled():
            log_p = log_softmax_entry(z, i, y)
            a = 1.0 if alpha is None else alpha[y]
            terms.append(-a * (1 - torch.exp(log_p)) ** gamma * log_p)
        return sum(terms) / len(terms)

    return loss


def class_balanced_alpha(beta: float) -> list[float]:
    """Cui et al. 2019: 1 / E_n, E_n = (1 - beta^n) / (1 - beta); sum = classes."""
    raw = [(1 - beta) / (1 - beta**n) if n > 0 else 0.0 for n in COUNTS]
    seen = sum(1 for n in COUNTS if n > 0)
    return [w * seen / sum(raw) for w in raw]


def logit_adjusted_reference(tau: float):
    """Menon et al. 2021: -log softmax(z + tau log pi)_y; pi_k = max(n_k, 1) / sum."""
    floored = [max(n, 1) for n in COUNTS]
    offset = [tau * math.log(n / sum(floored)) for n in floored]

    def loss(z):
        terms = [-log_softmax_entry(z, i, y, offset) for i, y in labelled()]
        return sum(terms) / len(terms)

    return loss


def seesaw_reference(p: float, q: float, eps: float, seen_before: list[float]):
    """Wang et al. 2021: sigma-hat_y = e^{z_y} / (e^{z_y} + sum_{j!=y} S_yj e^{z_j})."""
    n = list(seen_before)
    for _, y in labelled():
        n[y] += 1
    n = [max(c, 1.0) for c in n]

    def loss(z):
        terms = []
        for i, y in labelled():
            sigma = [math.exp(z[i, j].item()) for j in range(K)]
            sigma = [s / sum(sigma) for s in sigma]
            denominator = torch.exp(z[i, y])
            for j in range(K):
                if j == y:
                    continue
                mitigation = (n[j] / n[y]) ** p if n[y] > n[j] else 1.0
                ratio = sigma[j] / max(sigma[y], eps)
                compensation = ratio**q if ratio > 1 else 1.0
                denominator = denominator + mitigation * compensation * torch.exp(z[i, j])
            terms.append(-(z[i, y] - torch.log(denominator)))
        return sum(terms) / len(terms)

    return loss


def jaccard_loss_of_set(foreground: set[int], mispredicted: set[int]) -> float:
    """Berman et al. 2018: Delta_J(M) = |M| / |{y = c} u M|."""
    return len(mispredicted) / len(foreground | mispredicted) if mispredicted else 0.0


def lovasz_reference(z):
    """Berman et al. 2018: the Lovász extension of Delta_J of each present
    class at its error vector (errors sorted decreasingly, increments of Delta_J over the
    growing set of the largest errors), averaged over the classes present."""
    voxels = labelled()
    present = sorted({y for _, y in voxels})
    per_class = []
    for c in present:
        foreground = {i for i, y in voxels if y == c}
        errors = []
        for i, y in voxels:
            p = torch.exp(log_softmax_entry(z, i, c))
            errors.append((i, 1.0 - p if y == c else p))
        errors.sort(key=lambda e: -e[1].item())
        total, top = 0.0, set()
        for i, error in errors:
            before = jaccard_loss_of_set(foreground, top)
            top.add(i)
            total = total + error * (jaccard_loss_of_set(foreground, top) - before)
        per_class.append(total)
    return sum(per_class) / len(per_class)


def ce_reference(z):
    terms = [-log_softmax_entry(z, i, y) for i, y in labelled()]
    return sum(terms) / len(terms)


# --- each loss equals its reference -----------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.5, 2.0])
@pytest.mark.parametrize("alpha", ["none", "enet"])
def test_focal_loss_is_lin_et_al(gamma, alpha):
    weights = class_weights(COUNTS, alpha)
    alpha_list = None if weights is None else weights.double().tolist()
    check(FocalLoss(gamma, alpha, COUNTS).double(), focal_reference(gamma, alpha_list))


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_class_balanced_loss_is_cui_et_al(gamma):
    beta = 0.99
    loss_fn = ClassBalancedLoss(beta, gamma, COUNTS).double()
    # float32 weights in the module; the reference uses them at that precision too
    torch.testing.assert_close(loss_fn.weight, torch.tensor(class_balanced_alpha(beta)).double())
    check(loss_fn, focal_reference(gamma, loss_fn.weight.tolist()))


def test_class_balanced_weights_sum_to_the_number_of_classes_with_data():
    weights = ClassBalancedLoss(0.999, class_counts=COUNTS).weight
    assert weights[3] == 0  # no training voxel
    assert weights.sum().item() == pytest.approx(4.0)
    assert (weights[[0, 1, 2]].diff() > 0).all() and weights[4] > weights[2]


@pytest.mark.parametrize("tau", [0.5, 1.0])
def test_logit_adjusted_loss_is_menon_et_al(tau):
    check(LogitAdjustedLoss(tau, COUNTS), logit_adjusted_reference(tau))


def test_seesaw_loss_is_wang_et_al_with_online_counts():
    loss_fn = SeesawLoss(p=0.8, q=2.0, eps=1e-2, class_counts=COUNTS).double()
    check(loss_fn, seesaw_reference(0.8, 2.0, 1e-2, [0.0] * K), seed=0)
    # the second batch sees the first batch's counts as well
    assert loss_fn.seen.tolist() == [4, 3, 2, 0, 1]
    check(loss_fn, seesaw_reference(0.8, 2.0, 1e-2, [4.0, 3.0, 2.0, 0.0, 1.0]), seed=1)
    assert loss_fn.seen.tolist() == [8, 6, 4, 0, 2]
    state = loss_fn.state_dict()
    assert state["seen"].tolist() == [8, 6, 4, 0, 2]  # saved with the checkpoint
    loss_fn({"logits": torch.zeros(3, K)}, torch.full((3,), IGNORE_INDEX))
    assert loss_fn.seen.tolist() == [8, 6, 4, 0, 2]  # a batch without labels counts nothing


def test_lovasz_softmax_is_the_lovasz_extension_of_the_jaccard_loss():
    check(LovaszSoftmaxLoss().double(), lovasz_reference)


def test_lovasz_plus_ce_is_pointcepts_one_to_one_sum():
    loss_fn = LovaszSoftmaxLoss(ce_weight=1.0).double()
    check(loss_fn, lambda z: lovasz_reference(z) + ce_reference(z))
    logits, labels = batch()
    assert set(loss_fn({"logits": logits}, labels)) == {"loss", "lovasz", "ce"}


def test_weighted_ce_is_the_weight_normalised_mean():
    weights = class_weights(COUNTS, "enet").double().tolist()

    def reference(z):
        terms = [-weights[y] * log_softmax_entry(z, i, y) for i, y in labelled()]
        return sum(terms) / sum(weights[y] for _, y in labelled())

    check(CrossEntropyLoss(COUNTS, "enet").double(), reference)


# --- reductions to plain cross-entropy --------------------------------------------------------


REDUCE_TO_CE = {
    "focal gamma=0": lambda: FocalLoss(gamma=0.0, class_counts=COUNTS),
    "class-balanced beta=0": lambda: ClassBalancedLoss(beta=0.0, class_counts=COUNTS),
    "logit-adjusted tau=0": lambda: LogitAdjustedLoss(tau=0.0, class_counts=COUNTS),
    "seesaw p=q=0": lambda: SeesawLoss(p=0.0, q=0.0, class_counts=COUNTS),
}


@pytest.mark.parametrize("name", REDUCE_TO_CE)
def test_reduces_to_plain_cross_entropy_exactly(name):
    logits, labels = batch()
    keep = labels != IGNORE_INDEX
    value, grad = value_and_grad(lambda z: REDUCE_TO_CE[name]()({"logits": z}, labels)["loss"],
                                 logits)  # fmt: skip
    # The per-voxel terms are exactly -log p (factors of exactly 1, offsets of exactly 0);
    # the focal and class-balanced losses average them with .mean(), the others with CE's mean.
    if name.startswith(("focal", "class")):
        plain = lambda z: F.cross_entropy(z[keep], labels[keep], reduction="none").mean()  # noqa: E731
    else:
        plain = lambda z: F.cross_entropy(z[keep], labels[keep])  # noqa: E731
    plain_value, plain_grad = value_and_grad(plain, logits)
    assert torch.equal(value, plain_value) and torch.equal(grad, plain_grad)
    ce_value, ce_grad = value_and_grad(lambda z: CrossEntropyLoss()({"logits": z}, labels)["loss"],
                                       logits)  # fmt: skip
    torch.testing.assert_close(value, ce_value, rtol=1e-15, atol=0)
    torch.testing.assert_close(grad, ce_grad, rtol=1e-13, atol=1e-17)


# --- every loss: a batch without labels, the center term on top -------------------------------


ALL_VOXEL_LOSSES = {
    "ce": lambda: CrossEntropyLoss(),
    "ce_weighted": lambda: CrossEntropyLoss(COUNTS, "enet"),
    "focal": lambda: FocalLoss(class_counts=COUNTS),
    "class_balanced": lambda: ClassBalancedLoss(class_counts=COUNTS),
    "logit_adjusted": lambda: LogitAdjustedLoss(class_counts=COUNTS),
    "lovasz_ce": lambda: LovaszSoftmaxLoss(ce_weight=1.0),
    "seesaw": lambda: SeesawLoss(class_counts=COUNTS),
}


@pytest.mark.parametrize("name", ALL_VOXEL_LOSSES)
def test_a_batch_without_labelled_voxels_gives_zero_in_the_graph(name):
    logits = torch.randn(6, K, requires_grad=True)
    parts = ALL_VOXEL_LOSSES[name]()({"logits": logits}, torch.full((6,), IGNORE_INDEX))
    assert parts["loss"].item() == 0.0 and all(v.item() == 0.0 for v in parts.values())
    parts["loss"].backward()
    assert logits.grad is not None and not logits.grad.any()


@pytest.mark.parametrize("name", ALL_VOXEL_LOSSES)
def test_the_center_term_adds_to_any_voxel_loss(name):
    logits, labels = batch()
    center_logits = torch.randn(3, K, dtype=torch.float64, requires_grad=True)
    outputs = {"logits": logits, "center_logits": center_logits,
               "center_classes": torch.tensor([0, 1, 2])}  # fmt: skip
    voxel = ALL_VOXEL_LOSSES[name]().double()
    alone = ALL_VOXEL_LOSSES[name]().double()({"logits": logits}, labels)
    parts = CeCoLoss(lambda_=0.4, voxel=voxel)(outputs, labels)
    center = F.cross_entropy(center_logits, torch.tensor([0, 1, 2]))
    assert set(parts) == set(alone) | {"center"}
    torch.testing.assert_close(parts["center"], center)
    torch.testing.assert_close(parts["loss"], alone["loss"] + 0.4 * center)


# --- the seesaw loss's counts under DDP -------------------------------------------------------


def _seesaw_worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=2
    )
    loss_fn = SeesawLoss(class_counts=COUNTS)
    # rank 0: the test batch; rank 1: no labelled voxel (it still takes part in the sum)
    labels = torch.tensor(LABELS) if rank == 0 else torch.full((4,), IGNORE_INDEX)
    loss_fn({"logits": torch.zeros(len(labels), K)}, labels)
    torch.save(loss_fn.seen, f"{out_dir}/seen{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_seesaw_counts_are_summed_over_processes(tmp_path):
    torch.multiprocessing.spawn(
        _seesaw_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2
    )
    for rank in range(2):
        assert torch.load(tmp_path / f"seen{rank}.pt").tolist() == [4, 3, 2, 0, 1]
