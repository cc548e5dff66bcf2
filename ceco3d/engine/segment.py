"""Segment one's own scans with a trained model (``ceco3d-predict``).

For every scan: read it (``ceco3d.data.scan``), feed it to the model as training fed ScanNet
(colour 0..255, normals where the checkpoint's features use them, the checkpoint's voxel size),
take each point's voxel prediction, and write the outputs that ``ceco3d.scan_export`` describes.

Every file is written into a hidden folder next to ``out`` that becomes ``out`` only at the end,
so a failed run leaves no half-written output; with a folder of scans, a scan that fails is
reported and the others are kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from ceco3d.data.label_sets import LabelSet, get_label_set
from ceco3d.data.scan import (
    NEUTRAL_COLOR,
    Scan,
    check_frame,
    read_scan,
    scan_files,
    scan_normals,
)
from ceco3d.data.transforms import TTAView, tta_views
from ceco3d.engine.inference import load_for_inference, posthoc_setting, predict_points
from ceco3d.errors import InputError
from ceco3d.io import atomic_folder, temporaries
from ceco3d.scan_export import write_scan_outputs

log = logging.getLogger("ceco3d.predict")


@dataclass(frozen=True)
class Predictor:
    """A checkpoint's inference model with what it needs to see a scan as in training."""

    model: torch.nn.Module
    label_set: LabelSet
    features: str
    voxel_size: float
    views: list[TTAView]
    normal_radius: float
    normal_max_nn: int
    posthoc: dict  # post-hoc logit adjustment: {tau} or {tau, prior}

    def __call__(self, scan: Scan) -> tuple[np.ndarray, np.ndarray]:
        """(N,) class index and (N,) voxel of every kept point of ``scan``."""
        if scan.color is None:
            color = np.full((len(scan.xyz), 3), NEUTRAL_COLOR, dtype=np.float32)
        else:
            color = scan.color.astype(np.float32)
        points = {"coord": scan.xyz, "color": color}
        if self.features != "color":
            points["normal"] = scan_normals(scan, self.normal_radius, self.normal_max_nn)
        return predict_points(self.model, points, self.features, self.voxel_size, self.views,
                              source=scan.path)  # fmt: skip


def load_predictor(cfg: DictConfig, device: str) -> Predictor:
    model, train_cfg = load_for_inference(cfg.ckpt, device=device, posthoc_tau=cfg.posthoc_tau)
    tta = cfg.tta
    return Predictor(
        model=model,
        label_set=get_label_set(train_cfg.data.label_set),
        features=train_cfg.data.features,
        voxel_size=float(train_cfg.data.voxel_size),
        views=tta_views(tta.rotations, tta.flips, tta.scales) if tta.enabled else [TTAView()],
        normal_radius=float(cfg.normals.radius),
        normal_max_nn=int(cfg.normals.max_nn),
        posthoc=posthoc_setting(train_cfg),
    )


def _check_request(cfg: DictConfig) -> list[Path]:
    """The scan files of ``cfg.input``; fails before any work on what can be seen up front."""
    out = Path(cfg.out)
    if out.exists():
        raise InputError(f"{out}: already exists; ceco3d-predict writes a new folder (choose "
                         "another out=, or remove this one)")  # fmt: skip
    for left in temporaries(out.parent, out.name):
        log.warning("%s: left by a ceco3d-predict into %s that was killed (or is still running); "
                    "remove it once no run writes there", left, out)  # fmt: skip
    check_frame(cfg.units, cfg.up)
    files = scan_files(Path(cfg.input))
    stems = [p.stem for p in files]
    shared = sorted({s for s in stems if stems.count(s) > 1})
    if shared:
        raise InputError(f"{cfg.input}: scans share the file stem(s) {shared}, and their outputs "
                         "would collide; rename or move one of them")  # fmt: skip
    return files


def segment_scans(cfg: DictConfig, device: str = "cpu") -> Path:
    """Run ``ceco3d-predict`` (config: ``ceco3d/conf/predict.yaml``); returns the output folder."""
    files = _check_request(cfg)
    predictor = load_predictor(cfg, device)
    out = Path(cfg.out)
    failures: list[str] = []
    with atomic_folder(out) as partial:
        for path in tqdm(files, desc="predict", unit="scan", disable=len(files) == 1):
            try:
                scan = read_scan(path, cfg.units, cfg.up)
                classes, voxel = predictor(scan)
                settings = {"checkpoint": str(Path(cfg.ckpt).resolve()), "units": cfg.units,
                            "up": cfg.up, "features": predictor.features,
                            "tta_views": len(predictor.views),
                            "posthoc": predictor.posthoc}  # fmt: skip
                write_scan_outputs(partial, scan, classes, voxel, predictor.label_set,
                                   predictor.voxel_size, settings)  # fmt: skip
            except OSError:
                raise  # an unwritable or full output disk: every later scan would fail too
            except Exception as e:
                if len(files) == 1:
                    raise
                # One bad scan, or a bug it meets, must not cost the other scans' outputs.
                message = str(e) if isinstance(e, InputError) else (
                    f"{path}: unexpected error ({type(e).__name__}: {e})")  # fmt: skip
                log.error("%s", message)
                failures.append(message)
        if len(failures) == len(files):
            raise InputError(f"{cfg.input}: no scan could be segmented ({failures[0]}, ...)")
    if failures:
        raise InputError(f"{len(failures)} of {len(files)} scans failed (see above); the "
                         f"others are in {out}")  # fmt: skip
    log.info("wrote %s", out)
    return out
