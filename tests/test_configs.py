"""Every config composes and every leaf it names builds: experiments, primary configs, recipe."""

from __future__ import annotations

import MinkowskiEngine as ME
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ceco3d.data.label_sets import IGNORE_INDEX, get_label_set
from ceco3d.engine.build import build_dataset, build_loss, build_model, fill_voxel_size
from ceco3d.losses import CeCoLoss
from ceco3d.paths import CONF_DIR
from tests.conftest import random_scene
from tests.fixtures import compose_config, synthetic_scannet  # noqa: F401 (fixture)

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
PRIMARY_CONFIGS = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))
# Per-voxel losses: every loss but ceco, which adds its center term to one of them (loss.voxel).
VOXEL_LOSSES = sorted(p.stem for p in (CONF_DIR / "loss").glob("*.yaml") if p.stem != "ceco")
# The mandatory (???) values of each primary config.
REQUIRED = {
    "train": ["data.root=/data/prepared"],
    "eval": ["ckpt=/runs/x/checkpoints/best.pt"],
    "analyze": ["ckpt=/runs/x/checkpoints/best.pt"],
    "predict": ["ckpt=/runs/x/checkpoints/best.pt", "input=/scans/room.ply", "out=/scans/out"],
}


def test_the_config_folder_has_experiments_and_primary_configs():
    assert {"smoke", "scannet200", "scannet20"} <= set(EXPERIMENTS)
    assert {"train", "eval"} <= set(PRIMARY_CONFIGS)


def forward_and_loss(model, loss_fn, num_classes: int, num_channels: int) -> dict:
    """One training-mode forward and loss on a small random scene (two samples)."""
    coords, _ = random_scene(num_points=300, extent=20, seed=1, batch=2)
    rng = np.random.default_rng(0)
    feats = torch.from_numpy(rng.uniform(-1, 1, (len(coords), num_channels))).float()
    labels = torch.randint(
        0, num_classes, (len(coords),), generator=torch.Generator().manual_seed(0)
    )
    labels[::7] = IGNORE_INDEX
    model.train()
    outputs = model(ME.SparseTensor(feats, coordinates=coords), labels)
    assert outputs["logits"].shape == (len(coords), num_classes)
    return loss_fn(outputs, labels)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_its_leaves_instantiate(experiment, synthetic_scannet):  # noqa: F811
    # The synthetic scenes are prepared at one voxel size; the experiments ask for theirs.
    overrides = [f"experiment={experiment}", f"data.root={synthetic_scannet.prepared}"]
    cfg = compose_config("train", [*overrides, "data.revoxelize=true"])
    fill_voxel_size(cfg)  # as ceco3d-train does, where an experiment leaves it null
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert resolved["data"]["root"] == str(synthetic_scannet.prepared)

    aug = instantiate(cfg.aug)
    scene = synthetic_scannet.prepared / "train" / "scene0000_00"
    points = {"coord": np.load(scene / "coord.npy"), "color": np.load(scene / "color.npy")}
    augmented = aug(points, np.random.default_rng(0))
    # One row per kept point in every array (the CSC recipe drops points on purpose).
    assert len(augmented["color"]) == len(augmented["coord"]) <= len(points["coord"])
    assert augmented["coord"].shape[1:] == points["coord"].shape[1:]

    train_set = build_dataset(cfg, "train", training=True)
    sample = train_set[0]
    assert sample["feat"].shape == (len(sample["grid"]), train_set.num_channels)

    model = build_model(cfg, train_set)
    assert model.backbone.num_classes == cfg.data.num_classes == train_set.num_classes
    assert (model.center_head is not None) == ("center_head" in cfg.model)
    loss_fn = build_loss(cfg, train_set)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = instantiate(cfg.optim)(params=params)
    assert isinstance(optimizer, torch.optim.Optimizer)
    scheduler = instantiate(cfg.sched)(optimizer=optimizer)
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)

    parts = forward_and_loss(model, loss_fn, cfg.data.num_classes, train_set.num_channels)
    assert torch.isfinite(parts["loss"])
    assert ("center" in parts) == isinstance(loss_fn, CeCoLoss)


def unresolved_keys(node, path=""):
    """(dotted key, raw value) of every leaf of an unresolved config container."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from unresolved_keys(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from unresolved_keys(value, f"{path}[{i}]")
    else:
        yield path, node


def test_class_count_is_written_once():
    for path in CONF_DIR.rglob("*.yaml"):
        if path.parent.name != "data":
            assert "num_classes:" not in path.read_text(), f"{path} restates the class count"
    for name in ("scannet20", "scannet200"):
        data = OmegaConf.load(CONF_DIR / "data" / f"{name}.yaml")
        assert data.num_classes == get_label_set(data.label_set).num_classes
    for experiment in [None, *EXPERIMENTS]:
        chosen = [f"experiment={experiment}"] if experiment else []
        cfg = compose_config("train", ["data.root=/data/prepared", *chosen])
        for key, value in unresolved_keys(OmegaConf.to_container(cfg, resolve=False)):
            if key.rsplit(".", 1)[-1] == "num_classes" and key != "data.num_classes":
                assert value == "${data.num_classes}", f"{experiment}: {key} is {value!r}"


@pytest.mark.parametrize("loss", ["ce", "ce_weighted", "ceco"])
def test_data_scannet20_is_one_override_for_a_20_class_model(loss, synthetic_scannet):  # noqa: F811
    root = f"data.root={synthetic_scannet.prepared}"
    cfg = compose_config("train", [root, "data=scannet20", f"loss={loss}", "model=minkunet14a"])
    assert cfg.data.num_classes == 20
    train_set = build_dataset(cfg, "train", training=True)
    assert train_set.num_classes == 20
    model, loss_fn = build_model(cfg, train_set), build_loss(cfg, train_set)
    assert model.backbone.final.kernel.shape[-1] == 20
    if loss == "ceco":
        assert model.center_head.etf.shape == (20, cfg.model.center_head.proj_dim)
        assert model.center_head.log_prior.shape == (20,)
    if loss == "ce_weighted":
        assert loss_fn.weight.shape == (20,)
    parts = forward_and_loss(model, loss_fn, 20, train_set.num_channels)
    assert torch.isfinite(parts["loss"])


@pytest.mark.parametrize(("dataset", "aug"), [("scannet200", "lg"), ("scannet20", "csc")])
@pytest.mark.parametrize("loss", ["ce", "ceco"])
def test_paper_experiment_takes_the_loss_as_its_one_axis(dataset, aug, loss):
    cfg = compose_config("train", [f"experiment={dataset}", f"loss={loss}", "data.root=/data/p"])
    assert cfg.data.label_set == dataset and cfg.run_name == f"{dataset}_{loss}"
    assert cfg.aug.transforms == OmegaConf.load(CONF_DIR / "aug" / f"{aug}.yaml").transforms
    assert cfg.model.backbone._target_ == "ceco3d.models.minkunet.Res16UNet34C"
    assert (cfg.loss._target_ == "ceco3d.losses.CeCoLoss") == (loss == "ceco")
    assert ("center_head" in cfg.model) == (loss == "ceco")
    assert (cfg.optim.lr, cfg.data.voxel_size, cfg.trainer.max_steps) == (0.1, 0.02, 20000)


def test_scannet200_ceco_is_the_paper_recipe():
    cfg = compose_config(
        "train", ["experiment=scannet200", "loss=ceco", "data.root=/data/prepared"]
    )
    assert cfg.data.label_set == "scannet200" and cfg.data.num_classes == 200
    assert cfg.model.backbone == {"_target_": "ceco3d.models.minkunet.Res16UNet34C",
                                  "bn_momentum": 0.02}  # fmt: skip
    assert cfg.aug.transforms == OmegaConf.load(CONF_DIR / "aug" / "lg.yaml").transforms
    assert cfg.data.voxel_size == 0.02
    assert cfg.data.batch_size == 4  # per process: 8 processes x 4 = the paper's 32
    assert cfg.loss._target_ == "ceco3d.losses.CeCoLoss"
    assert set(cfg.loss) == {"_target_", "lambda_", "voxel"}  # the loss alone
    assert cfg.loss.lambda_ == 0.4
    assert cfg.loss.voxel == {"_target_": "ceco3d.losses.CrossEntropyLoss",
                              "class_weighting": "none"}  # fmt: skip
    head = cfg.model.center_head  # the release's head: per-process centers, frozen, d = 512, s = 5
    assert (head.sync_centers, head.train_projection, head.proj_dim, head.scale) == (
        False, False, 512, 5.0,
    )  # fmt: skip
    assert cfg.optim._target_ == "torch.optim.SGD"
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.1, 0.9, 1.0e-4)
    assert cfg.sched._target_ == "torch.optim.lr_scheduler.PolynomialLR"
    assert cfg.sched.power == 0.9 and cfg.sched.total_iters == cfg.trainer.max_steps == 20000

    # The built objects carry the same numbers (nothing in between rewrites them).
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = instantiate(cfg.optim)(params=[weight])
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.1, 0.9, 1.0e-4)
    scheduler = instantiate(cfg.sched)(optimizer=optimizer)
    assert (scheduler.total_iters, scheduler.power) == (20000, 0.9)
    for _ in range(10000):
        optimizer.step()
        scheduler.step()
    assert group["lr"] == pytest.approx(0.1 * 0.5**0.9, rel=1e-6)  # half way: lr_0 (1 - 1/2)^0.9


@pytest.mark.parametrize("center", [False, True], ids=["alone", "with_center_term"])
@pytest.mark.parametrize("voxel", VOXEL_LOSSES)
def test_each_voxel_loss_alone_and_with_ceco_trains_a_step(voxel, center, synthetic_scannet):  # noqa: F811
    chosen = ["loss=ceco", f"loss@loss.voxel={voxel}"] if center else [f"loss={voxel}"]
    cfg = compose_config("train", [f"data.root={synthetic_scannet.prepared}", "model=minkunet14a",
                                   *chosen])  # fmt: skip
    assert cfg.loss.get("voxel", cfg.loss) == OmegaConf.load(CONF_DIR / "loss" / f"{voxel}.yaml")
    train_set = build_dataset(cfg, "train", training=True)
    torch.manual_seed(0)
    model, loss_fn = build_model(cfg, train_set), build_loss(cfg, train_set)
    assert isinstance(loss_fn, CeCoLoss) == center == (model.center_head is not None)
    optimizer = instantiate(cfg.optim)(params=[p for p in model.parameters() if p.requires_grad])
    before = [p.detach().clone() for p in model.parameters()]
    parts = forward_and_loss(model, loss_fn, cfg.data.num_classes, train_set.num_channels)
    assert all(torch.isfinite(v) for v in parts.values()) and ("center" in parts) == center
    parts["loss"].backward()
    optimizer.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("name", PRIMARY_CONFIGS)
def test_primary_config_composes_and_resolves(name):
    import ceco3d.cli.evaluate  # noqa: F401 (registers the eval_dir resolver that eval.yaml uses)

    cfg = compose_config(name, REQUIRED.get(name, []))
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    if name == "eval":
        assert cfg.split == "val" and cfg.tta.enabled is False
        assert cfg.out == "/runs/x/eval_val_best"  # next to the run's checkpoints/ folder
