"""The training loop: build, loop, validate, checkpoint. One function, top to bottom."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ceco3d.data.sampler import build_train_loader
from ceco3d.device import resolve_device
from ceco3d.engine import cluster
from ceco3d.engine import distributed as dist_utils
from ceco3d.engine.build import (
    build_dataset,
    build_loss,
    build_model,
    fill_voxel_size,
    require_scenes,
    scene_repeat_factors,
)
from ceco3d.engine.checkpoint import (
    LOSS_STATE,
    TRAIN_VOXEL_COUNTS,
    load_checkpoint,
    rng_states,
    save_checkpoint,
    set_rng_states,
)
from ceco3d.engine.config_checks import check_resumable, check_training
from ceco3d.engine.evaluate import evaluate
from ceco3d.engine.published_weights import init_weights
from ceco3d.engine.run_folder import (
    BEST,
    CHECKPOINT_DIR,
    LAST,
    VAL_SUMMARY,
    check_same_data,
    claim_run_folder,
    release_run_folder,
    resume_checkpoint,
)
from ceco3d.errors import Interrupted, NonFiniteLossError, UsageError, signal_name
from ceco3d.io import json_safe, remove_temporaries, save_json
from ceco3d.metrics import format_table
from ceco3d.models.segmentor import sparse_input
from ceco3d.neural_collapse import COLLAPSE_TAGS

log = logging.getLogger("ceco3d.train")


def claim_and_check(cfg: DictConfig, run_dir: Path) -> tuple[Path | None, dict | None, list]:
    """Everything checked before a run starts: its values, the claim on ``run_dir``, and for a
    resume its checkpoint (path, content) with the setting changes it accepts; None, None, []
    for a new run. Fills in ``data.voxel_size``."""
    # A scheduler's task learns its rank here, so that rank 0 alone claims the run folder.
    cluster.export_rendezvous()
    check_training(cfg)
    fill_voxel_size(cfg)
    claim_run_folder(run_dir)
    resume_from = resume_checkpoint(run_dir, cfg.trainer.resume)
    if resume_from is None:
        return None, None, []
    ckpt = load_checkpoint(resume_from)
    return resume_from, ckpt, check_resumable(ckpt["config"], cfg, resume_from)


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Train as ``cfg`` says, writing checkpoints and logs into ``run_dir``; returns the final
    validation results (empty when validation is off). The run folder is claimed for the
    training and released when it ends, however it ends."""
    try:
        return _train(cfg, run_dir, *claim_and_check(cfg, run_dir))
    finally:
        release_run_folder(run_dir)


def _train(
    cfg: DictConfig, run_dir: Path, resume_from: Path | None, ckpt: dict | None, accepted: list
) -> dict:
    trainer = cfg.trainer
    device_type = resolve_device(trainer.device, "trainer.device")
    dist_info = dist_utils.init_distributed(device_type)
    device = torch.device(f"cuda:{dist_info.local_rank}" if device_type == "cuda" else "cpu")
    if trainer.threads:
        torch.set_num_threads(trainer.threads)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    ckpt_dir = run_dir / CHECKPOINT_DIR
    if dist_info.is_main:
        _report_start(trainer, ckpt_dir, resume_from, accepted)

    # --- build ---------------------------------------------------------------------------
    train_set = build_dataset(cfg, "train", training=True)
    val_set = build_dataset(cfg, cfg.data.val_split, training=False) if trainer.val_every else None
    if val_set is not None:
        require_scenes(val_set, "data.val_split")
    if ckpt is not None:
        check_same_data(ckpt, train_set, cfg, resume_from)
    model = build_model(cfg, train_set)
    if ckpt is None and cfg.model.get("init"):
        report = init_weights(model, cfg.model.init, cfg.model.get("init_backbone_only", False))
        if dist_info.is_main:
            log.info("%s", report)
    loss_fn = build_loss(cfg, train_set).to(device)
    if dist_info.enabled and trainer.sync_bn:
        # torch's converter, not ME's: ME 0.5.4 re-adds the plain inner BatchNorm1d over the
        # SyncBatchNorm it has just made, so its conversion changes nothing.
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    optimizer = instantiate(cfg.optim)(params=[p for p in model.parameters() if p.requires_grad])
    scheduler = instantiate(cfg.sched)(optimizer=optimizer)
    start_step, best_miou = 0, -math.inf
    if ckpt is not None:
        start_step, best_miou = _restore(ckpt, model, optimizer, scheduler, loss_fn, dist_info)
        if dist_info.is_main:
            _report_resume(trainer, ckpt, resume_from, start_step)
    net = model
    if dist_info.enabled:
        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    loader = build_train_loader(
        train_set, cfg.data.batch_size, trainer.max_steps, cfg.seed, cfg.data.num_workers,
        dist_info.rank, dist_info.world_size, start_step, scene_repeat_factors(cfg, train_set),
    )  # fmt: skip

    writer = SummaryWriter(str(run_dir / "tb")) if dist_info.is_main else None
    resolved_cfg = OmegaConf.to_container(cfg, resolve=True)
    voxel_counts = train_set.train_class_counts("voxel_counts").tolist()

    def checkpoint(name: str, step: int) -> None:
        # Every rank's RNG states: the center head's dropout draws as many numbers as a rank's
        # batch has classes, so the ranks' streams part, and an exact resume needs each its own.
        rank_rng_states = dist_utils.gather_objects(rng_states())
        if dist_info.is_main:
            save_checkpoint(
                ckpt_dir / name,
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                step=step,
                best_miou=best_miou,
                config=resolved_cfg,
                rank_rng_states=rank_rng_states,
                data_identity=train_set.identity,
                **{LOSS_STATE: loss_fn.state_dict(), TRAIN_VOXEL_COUNTS: voxel_counts},
            )

    # --- loop ----------------------------------------------------------------------------
    results: dict = {}
    step, stopped_by = start_step, 0
    logger = _StepLog(writer, dist_info.world_size)
    bar = tqdm(total=trainer.max_steps, initial=start_step, desc="train",
               disable=not dist_info.is_main, dynamic_ncols=True)  # fmt: skip
    try:
        with _stop_signals() as stop_signal:
            for batch in loader:
                parts = _step(
                    net, loss_fn, optimizer, scheduler, batch, device, cfg, step, ckpt_dir
                )
                step += 1
                bar.update(1)
                logger.add(len(batch["labels"]))
                if step % trainer.log_every == 0 or step == trainer.max_steps:
                    logger.write(parts, optimizer.param_groups[0]["lr"], step, bar)

                if trainer.val_every and (
                    step % trainer.val_every == 0 or step == trainer.max_steps
                ):
                    # Data prepared again under the run would be scored (and trained on) silently.
                    train_set.check_unchanged()
                    val_set.check_unchanged()
                    results = evaluate(model, val_set, device, dist_info, trainer.val_max_scenes)
                    miou = results["point"]["mIoU"]
                    if writer is not None:
                        _log_validation(writer, results, step)
                        table = format_table(results["point"], val_set.label_set, per_class=False)
                        log.info("step %d validation: %s", step, table)
                    if miou is not None and miou > best_miou:
                        best_miou = miou
                        checkpoint(BEST, step)
                if step % trainer.ckpt_every == 0 or step == trainer.max_steps:
                    checkpoint(LAST, step)
                # Every rank stops at the same step, also where the signal reached only some.
                stopped_by = dist_utils.max_over_ranks(stop_signal[0] if stop_signal else 0, device)
                if stopped_by:
                    checkpoint(LAST, step)
                    break
    finally:
        bar.close()
        if writer is not None:
            writer.close()

    if dist_info.is_main and results:
        summary = {k: v for k, v in results.items() if not k.startswith("confusion")}
        summary["step"] = step  # of the last validation: max_steps unless stopped early
        save_json(run_dir / VAL_SUMMARY, json_safe(summary))
    dist_utils.barrier()
    if step == trainer.max_steps:  # also where a signal came in the last step
        cluster.mark_training_finished()
    elif stopped_by:
        cluster.pass_on_preemption(stopped_by)  # under submitit: requeued here, rank 0 exits
        # A non-zero status after saving: a scheduler or a `&&` chain must not take a stopped
        # run for a finished one.
        raise Interrupted(stopped_by, (
            f"{signal_name(stopped_by)}: saved {ckpt_dir / LAST} at step {step}; continue "
            f"with trainer.resume=auto run_name={run_dir.name}"))  # fmt: skip
    return results


def _report_start(trainer: DictConfig, ckpt_dir: Path, resume_from, accepted: list) -> None:
    """What rank 0 says before building: a resume that found nothing, killed checkpoint writes
    cleaned up, setting changes a resume accepts."""
    if trainer.resume == "auto" and resume_from is None:
        log.warning("trainer.resume=auto: no checkpoint in %s, so this is a new run from step 0",
                    ckpt_dir)  # fmt: skip
    left = remove_temporaries(ckpt_dir)
    if left:
        log.warning("removed %d temporary files of checkpoint writes that were killed: %s",
                    len(left), " ".join(p.name for p in left))  # fmt: skip
    if accepted:
        log.warning("resuming %s with changed settings (trainer.resume_accept): %s",
                    resume_from, ", ".join(accepted))  # fmt: skip


def _restore(ckpt: dict, model, optimizer, scheduler, loss_fn, dist_info) -> tuple[int, float]:
    """Load a checkpoint's state into the run's parts; its (step, best mIoU)."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if LOSS_STATE in ckpt:  # e.g. the seesaw loss's class counts; older checkpoints lack it
        loss_fn.load_state_dict(ckpt[LOSS_STATE])
    per_rank = ckpt.get("rank_rng_states") or []  # older checkpoints: rank 0's only
    same_ranks = len(per_rank) == dist_info.world_size
    set_rng_states(per_rank[dist_info.rank] if same_ranks else ckpt["rng_states"])
    return ckpt["step"], ckpt["best_miou"]


def _report_resume(trainer: DictConfig, ckpt: dict, resume_from: Path, step: int) -> None:
    saved_steps = ckpt["config"]["trainer"]["max_steps"]
    if saved_steps != trainer.max_steps:
        log.warning("trainer.max_steps is %d but the checkpoint's schedule was built for %d; "
                    "the restored scheduler keeps its own horizon", trainer.max_steps,
                    saved_steps)  # fmt: skip
    log.info("resumed from %s at step %d", resume_from, step)


def _step(
    net, loss_fn, optimizer, scheduler, batch: dict, device, cfg: DictConfig, step: int,
    ckpt_dir: Path,
):  # fmt: skip
    """One optimisation step on ``batch``; the loss's named parts (detached only for logging)."""
    trainer = cfg.trainer
    net.train()
    x = sparse_input(batch["feats"], batch["coords"], device)
    labels = batch["labels"].to(device)
    try:
        parts = loss_fn(net(x, labels), labels)
    except ValueError as e:
        if "Expected more than 1 value per channel" not in str(e):
            raise
        raise UsageError(
            f"step {step + 1}: a batch shrank to a single voxel in a coarse layer, where "
            f"batch normalization cannot train (data.max_voxels={cfg.data.max_voxels}, "
            f"data.batch_size={cfg.data.batch_size}); raise data.max_voxels (e.g. 20000)"
        ) from None
    finite = torch.isfinite(parts["loss"].detach()).float()
    if dist_utils.all_reduce_mean(finite).item() < 1.0:
        values = ", ".join(f"{k}={v.item():.4g}" for k, v in parts.items())
        raise NonFiniteLossError(
            f"non-finite loss at step {step} ({values}); the last good checkpoint is kept in "
            f"{ckpt_dir}. Lower optim.lr or set trainer.grad_clip."
        )
    optimizer.zero_grad(set_to_none=True)
    parts["loss"].backward()
    if trainer.grad_clip:
        torch.nn.utils.clip_grad_norm_(net.parameters(), trainer.grad_clip)
    optimizer.step()
    scheduler.step()
    return parts


class _StepLog:
    """The training scalars of every ``trainer.log_every`` steps: the loss's parts averaged
    over the ranks, voxels per second over the window since the last write, the learning rate;
    to TensorBoard (rank 0) and the progress bar."""

    def __init__(self, writer: SummaryWriter | None, world_size: int) -> None:
        self.writer, self.world_size = writer, world_size
        self.voxels, self.start = 0, time.perf_counter()

    def add(self, voxels: int) -> None:
        self.voxels += voxels

    def write(self, parts: dict, lr: float, step: int, bar: tqdm) -> None:
        logged = {k: dist_utils.all_reduce_mean(v.detach()).item() for k, v in parts.items()}
        elapsed = time.perf_counter() - self.start
        logged["voxels_per_s"] = self.voxels * self.world_size / max(elapsed, 1e-9)
        logged["lr"] = lr
        self.voxels, self.start = 0, time.perf_counter()
        if self.writer is not None:
            for key, value in logged.items():
                self.writer.add_scalar(f"train/{key}", value, step)
            bar.set_postfix(loss=f"{logged['loss']:.3f}", lr=f"{logged['lr']:.3g}",
                            vox_s=f"{logged['voxels_per_s']:.0f}")  # fmt: skip


@contextlib.contextmanager
def _stop_signals() -> Iterator[list[int]]:
    """SIGTERM, SIGINT and the scheduler's pre-emption signal recorded (in the yielded list)
    instead of stopping the process at once: the loop saves ``last.pt`` and stops at a step
    boundary. The previous handlers are back afterwards."""
    received: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: received.append(signum))
        for sig in (signal.SIGTERM, signal.SIGINT, cluster.preemption_signal())
    }
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _log_validation(writer: SummaryWriter, results: dict, step: int) -> None:
    for level in ("point", "voxel"):
        for key, value in results[level].items():
            if isinstance(value, int | float):
                writer.add_scalar(f"val/{key}", value, step)
    for key, tag in COLLAPSE_TAGS.items():
        value = results["collapse"][key]
        if value is not None and np.isfinite(value):
            writer.add_scalar(tag, value, step)
