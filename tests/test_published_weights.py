"""Published Res16UNet weights: files written in the ScanNet200 authors' Lightning layout and in
CSC's .pth layout (with and without DDP's ``module.``) from a network built with their module
names load into ceco3d and give the logits that network gives on the input its own code feeds it
(colour / 255 - 0.5; CSC: grid minus its minimum); wrong files are refused in one paragraph."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch
from torch import nn

from ceco3d.data.label_sets import LABEL_SETS
from ceco3d.engine.build import build_model
from ceco3d.engine.inference import load_for_inference
from ceco3d.engine.published_weights import init_weights, read_published
from ceco3d.engine.train import train
from ceco3d.errors import UsageError, describe
from ceco3d.models.minkunet import MinkUNet34C, Res16UNet34C, Res16UNet34D
from ceco3d.models.segmentor import Segmentor, sparse_input
from data_prep import prep
from tests.fixtures import BIN, compose_config, synthetic_scannet, tiny_train_config  # noqa: F401


def their_network(cls=Res16UNet34C, num_classes=200, seed=0) -> nn.Module:
    """The network as their res16unet.py builds it (same module names and shapes as ceco3d's),
    with random weights and BatchNorm statistics, so that every layer matters."""
    torch.manual_seed(seed)
    net = cls(3, num_classes, bn_momentum=0.02)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif name.endswith(("running_mean", "bn.bias")):
                tensor.normal_(0, 0.1)
    return net.eval()


class LightningModule(nn.Module):
    """What Lightning saves of LG's pl_BaselineTrainer: the network as ``model`` beside the
    trainer's own modules (here a weighted loss)."""

    def __init__(self, model: nn.Module, num_classes: int):
        super().__init__()
        self.model = model
        self.criterion = nn.CrossEntropyLoss(weight=torch.ones(num_classes))


class DataParallel(nn.Module):
    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module


def lightning_file(path, net, num_classes=200):
    module = LightningModule(net, num_classes)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    torch.save({"epoch": 3, "global_step": 1200, "pytorch-lightning_version": "1.6.5",
                "state_dict": module.state_dict(), "optimizer_states": [optimizer.state_dict()],
                "lr_schedulers": [], "callbacks": {}, "hparams_name": "kwargs",
                "hyper_parameters": {"voxel_size": 0.02}}, path)  # fmt: skip
    return path


def csc_file(path, net, ddp=False):
    """The DDP-wrapped variant in torch's zip format, the plain one in the pre-1.6 format that
    torch wrote in MinkowskiEngine 0.4's time."""
    module = DataParallel(net) if ddp else net
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    torch.save({"iteration": 20000, "epoch": 60, "arch": "Res16UNet34C",
                "state_dict": module.state_dict(), "optimizer": optimizer.state_dict(),
                "best_val_miou": 71.2}, path, _use_new_zipfile_serialization=ddp)  # fmt: skip
    return path


def scene(num_voxels=800, seed=1):
    """One scene's voxels: (M, 3) grid away from the origin (odd minimum), (M, 3) colours."""
    rng = np.random.default_rng(seed)
    cells = rng.choice(36**3, size=num_voxels, replace=False)
    grid = np.stack(np.unravel_index(cells, (36, 36, 36)), axis=1).astype(np.int32) + 101
    return grid, rng.integers(0, 256, (num_voxels, 3)).astype(np.float32)


def logits(net, feats, grid):
    coords = torch.from_numpy(np.c_[np.zeros(len(grid), np.int32), grid])
    with torch.no_grad():
        out = net(sparse_input(torch.from_numpy(feats), coords, torch.device("cpu")))
    return out["logits"] if isinstance(out, dict) else out[0]


def test_their_output_order_is_ceco3ds():
    """Both codebases number the classes in ascending id order (their label_map loops), which
    is ceco3d's benchmark order: the classifier needs no permutation."""
    for label_set in LABEL_SETS.values():
        assert list(label_set.ids) == sorted(label_set.ids)


@pytest.mark.parametrize(
    ("layout", "write", "origin"),
    [
        ("lightning", lightning_file, "zero"),
        ("csc", csc_file, "min_corner"),
        ("csc", lambda p, n: csc_file(p, n, ddp=True), "min_corner"),
    ],
)
def test_foreign_file_gives_their_logits(tmp_path, layout, write, origin):
    net = their_network()
    path = write(tmp_path / "weights.ckpt", net)
    grid, color = scene()
    their_grid = grid - grid.min(0) if layout == "csc" else grid
    expected = logits(net, color / 255 - 0.5, their_grid)

    model, cfg = load_for_inference(path, ["data.root=unused"])
    assert cfg.data.label_set == "scannet200" and cfg.data.voxel_size == 0.02
    assert cfg.data.features == "color" and cfg.model.backbone.grid_origin == origin
    got = logits(model, color / 127.5 - 1, grid)  # ceco3d's own colour feature
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    if layout == "csc":  # the grid origin matters: fed at its own origin, the logits differ
        model.backbone.grid_origin = "zero"
        assert not torch.allclose(logits(model, color / 127.5 - 1, grid), expected, atol=1e-3)


def test_34d_and_scannet20_are_recognised(tmp_path):
    weights = read_published(csc_file(tmp_path / "w.pth", their_network(Res16UNet34D, 20)))
    assert weights.backbone is Res16UNet34D and weights.label_set() == "scannet20"


def refused(path) -> str:
    with pytest.raises(UsageError) as error:
        read_published(path).label_set()
    message, code = describe(error.value)
    assert code == 2 and "\n" not in message
    return message


def test_wrong_files_are_refused_in_one_paragraph(tmp_path):
    net = their_network()
    state = net.state_dict()
    wrong = MinkUNet34C(3, 200).state_dict()  # 5x5x5 stem, other widths
    torch.save({"state_dict": wrong}, tmp_path / "backbone.pth")
    message = refused(tmp_path / "backbone.pth")
    assert "not a Res16UNet34C / Res16UNet34D" in message and "conv0p1s1.kernel" in message
    assert "nothing was loaded" in message

    extra = {**state, "head.weight": torch.zeros(3)}
    del extra["block1.0.conv1.kernel"]
    torch.save({"state_dict": extra}, tmp_path / "keys.pth")
    message = refused(tmp_path / "keys.pth")
    assert "1 unknown keys: head.weight" in message and "missing keys: block1.0.conv1" in message

    csc_file(tmp_path / "classes.pth", their_network(num_classes=13))
    assert "13 outputs" in refused(tmp_path / "classes.pth")
    assert "model.init=" in refused(tmp_path / "classes.pth")

    lightning_file(tmp_path / "full.ckpt", net)
    data = (tmp_path / "full.ckpt").read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    assert "not a readable torch file" in refused(tmp_path / "truncated.ckpt")

    torch.save({"weights": state, "step": 3}, tmp_path / "unknown.pth")
    assert "unknown checkpoint layout (top level: ['step', 'weights'])" in refused(
        tmp_path / "unknown.pth"
    )
    torch.save({"state_dict": state, "config": nn.Identity()}, tmp_path / "code.pth")
    assert "weights_only=True" in refused(tmp_path / "code.pth")


def test_model_init_loads_what_fits_and_says_what_it_left(tmp_path):
    net = their_network()
    path = lightning_file(tmp_path / "w.ckpt", net)
    cfg = compose_config("train", ["model=res16unet34c", "data.root=unused"])
    model = build_model(cfg)
    report = init_weights(model, path)
    assert "loaded 374 of 374 backbone tensors" in report and "left at" not in report
    stem = net.state_dict()["conv0p1s1.kernel"] * 0.5
    assert torch.equal(model.backbone.state_dict()["conv0p1s1.kernel"], stem)

    twenty = Segmentor(Res16UNet34C(3, 20))
    report = init_weights(twenty, path)
    assert "loaded 372 of 374" in report and "final.kernel, final.bias" in report
    assert "the file's classifier is (96, 200), this model's (96, 20)" in report
    assert "model.init_backbone_only=true" in init_weights(model, path, backbone_only=True)

    with pytest.raises(UsageError) as error:
        init_weights(Segmentor(MinkUNet34C(3, 200)), path)
    assert "do not fit model.backbone (MinkUNet34C)" in str(error.value)


@pytest.mark.slow
def test_cli_evaluates_and_refuses_published_files(tmp_path, synthetic_scannet):  # noqa: F811
    path = lightning_file(tmp_path / "lg.ckpt", their_network())
    prepared = tmp_path / "prepared"  # at ceco3d-prep's default voxel size, the published one
    assert prep.main([str(synthetic_scannet.raw), str(prepared)]) == 0
    cmd = [str(BIN / "ceco3d-eval"), f"ckpt={path}", f"data.root={prepared}",
           f"out={tmp_path / 'eval'}", "max_scenes=1", "device=cpu"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "published weights:" in done.stderr + done.stdout
    assert (tmp_path / "eval" / "summary.json").is_file()

    (tmp_path / "bad.ckpt").write_bytes(path.read_bytes()[:1000])
    cmd = [str(BIN / "ceco3d-submit"), f"ckpt={tmp_path / 'bad.ckpt'}", f"data.root={prepared}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2 and "not a readable torch file" in done.stderr + done.stdout


@pytest.mark.slow
def test_training_starts_from_published_weights(tmp_path, synthetic_scannet, caplog):  # noqa: F811
    path = csc_file(tmp_path / "csc.pth", their_network(num_classes=20))
    overrides = ("model=res16unet34c", f"model.init={path}", "trainer.max_steps=1",
                 "data.max_voxels=500")  # fmt: skip
    cfg = tiny_train_config(synthetic_scannet.prepared, tmp_path, "init", *overrides)
    with caplog.at_level("INFO", logger="ceco3d.train"):
        train(cfg, tmp_path / "init")
    assert "model.init: loaded 372 of 374 backbone tensors" in caplog.text
    assert "(96, 20), this model's (96, 200)" in caplog.text
