"""Changed settings are never taken silently: a resume compares the new config with its
checkpoint's (data, augmentation, model and loss changes refused unless accepted explicitly;
optimiser and schedule changes refused, they could not take effect), each segment's config is
kept, and a run notices data prepared again under it (at validation and at resume)."""

from __future__ import annotations

import logging
import shutil

import pytest

from ceco3d.engine import train as train_module
from ceco3d.engine.train import train
from ceco3d.errors import InputError, UsageError
from ceco3d.tools.demo import _model_key
from data_prep import prep
from tests.fixtures import (  # noqa: F401 (synthetic_scannet is a fixture)
    VOXEL_SIZE,
    compose_config,
    synthetic_scannet,
    tiny_train_config,
    train_overrides,
)
from tests.test_cli import run_script

ONE_STEP = ("loss=ce", "trainer.max_steps=1", "trainer.ckpt_every=1")
RESUME = ("trainer.resume=auto", "trainer.max_steps=2")


def train_in(runs, prepared, name, *overrides):
    return train(tiny_train_config(prepared, runs, name, *ONE_STEP, *overrides), runs / name)


def prepare_again(raw, prepared, *options: str) -> None:
    args = [str(raw), str(prepared), "--voxel-size", str(VOXEL_SIZE), "--force", *options]
    assert prep.main(args) == 0


@pytest.fixture
def one_step_run(synthetic_scannet, tmp_path):  # noqa: F811
    train_in(tmp_path, synthetic_scannet.prepared, "base")
    return tmp_path, synthetic_scannet.prepared


@pytest.mark.parametrize(
    ("change", "named"),
    [("optim.lr=0.001", "optim.lr"), ("sched=onecycle", "sched._target_"), ("seed=1", "seed")],
)
def test_a_resume_with_another_optimiser_schedule_or_seed_is_refused(one_step_run, change, named):
    runs, prepared = one_step_run
    with pytest.raises(UsageError, match=rf"other settings: {named}=.*cannot change") as error:
        train_in(runs, prepared, "base", *RESUME, change, f"trainer.resume_accept=[{named}]")
    assert "resumed run" in str(error.value)


def test_a_resume_with_other_data_or_augmentation_needs_an_explicit_accept(one_step_run, caplog):
    runs, prepared = one_step_run
    for change, named in (("aug=none", "aug."), ("data.voxel_size=0.1", "data.voxel_size"),
                          ("data.batch_size=1", "data.batch_size")):  # fmt: skip
        with pytest.raises(UsageError, match=f"other settings: {named}.*trainer.resume_accept="):
            train_in(runs, prepared, "base", *RESUME, change)
    with caplog.at_level(logging.WARNING, logger="ceco3d.train"):
        train_in(runs, prepared, "base", *RESUME, "aug=none", "trainer.resume_accept=[aug]")
    assert "changed settings (trainer.resume_accept): aug." in caplog.text


def test_a_resume_on_data_prepared_again_is_refused(synthetic_scannet, tmp_path):  # noqa: F811
    prepared = tmp_path / "prepared"
    shutil.copytree(synthetic_scannet.prepared, prepared)
    train_in(tmp_path, prepared, "base")
    prepare_again(synthetic_scannet.raw, prepared, "--align")
    with pytest.raises(UsageError, match="another preparation of the data"):
        train_in(tmp_path, prepared, "base", *RESUME)


def test_a_validation_notices_data_prepared_again_under_the_run(
    synthetic_scannet,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    prepared = tmp_path / "prepared"
    shutil.copytree(synthetic_scannet.prepared, prepared)
    evaluate = train_module.evaluate

    def evaluate_then_prepare_again(*args, **kwargs):
        results = evaluate(*args, **kwargs)
        prepare_again(synthetic_scannet.raw, prepared, "--align")  # a ceco3d-prep meanwhile
        return results

    monkeypatch.setattr(train_module, "evaluate", evaluate_then_prepare_again)
    with pytest.raises(InputError, match="prepared data changed while this command used it"):
        train_in(tmp_path, prepared, "x", "trainer.max_steps=2", "trainer.val_every=1",
                 "trainer.val_max_scenes=1")  # fmt: skip
    assert (tmp_path / "x" / "checkpoints" / "best.pt").is_file()  # the step-1 model is kept


@pytest.mark.slow
def test_each_segment_of_a_resumed_run_keeps_its_config(synthetic_scannet, tmp_path):  # noqa: F811
    overrides = train_overrides(synthetic_scannet.prepared, tmp_path, "seg", *ONE_STEP)
    assert run_script("ceco3d-train", *overrides, cwd=tmp_path).returncode == 0
    hydra = tmp_path / "seg" / ".hydra"
    first = (hydra / "config.yaml").read_text()
    refused = run_script("ceco3d-train", *overrides, *RESUME, "optim.lr=0.001", cwd=tmp_path)
    assert refused.returncode == 2 and "optim.lr cannot change" in refused.stderr
    assert (hydra / "config.yaml").read_text() == first and not (hydra / "segments").exists()
    again = run_script("ceco3d-train", *overrides, *RESUME, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "max_steps: 1\n" in (hydra / "segments" / "1" / "config.yaml").read_text()
    assert "max_steps: 2\n" in (hydra / "config.yaml").read_text()


def test_the_demo_reuses_a_model_only_for_the_data_and_recipe_that_made_it(
    synthetic_scannet,  # noqa: F811
    tmp_path,
):
    recipe = compose_config("train", ["experiment=demo_quick", "data.root=-"])
    key = _model_key(synthetic_scannet.prepared, recipe)
    assert _model_key(synthetic_scannet.prepared, recipe) == key
    other = tmp_path / "prepared"
    shutil.copytree(synthetic_scannet.prepared, other)
    prepare_again(synthetic_scannet.raw, other, "--align")  # e.g. another --data-seed
    assert _model_key(other, recipe) != key
    recipe.trainer.max_steps += 1
    assert _model_key(synthetic_scannet.prepared, recipe) != key
