"""Point-level semantic segmentation metrics: one confusion matrix, everything else a pure function.

Rows of a confusion matrix are ground truth, columns prediction. Points whose ground truth is the
ignore index never enter it. A class with no ground truth and no prediction has IoU NaN and is
left out of every mean (nanmean), as in the official ScanNet evaluation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ceco3d.data.label_sets import GROUPS, IGNORE_INDEX, LabelSet


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, possibly on the GPU
        x = x.detach().cpu().numpy()
    return np.asarray(x).reshape(-1)


def confusion_matrix(gt: Any, pred: Any, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts; ``gt`` may hold the ignore index -1, ``pred`` must lie in 0..K-1."""
    gt, pred = _as_numpy(gt), _as_numpy(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"gt has {gt.size} points but pred has {pred.size}")
    for name, values in (("gt", gt), ("pred", pred)):
        if values.size and not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"{name} must hold integer class indices, got dtype {values.dtype}")
    valid = gt != IGNORE_INDEX
    bad_gt = valid & ((gt < 0) | (gt >= num_classes))
    if bad_gt.any():
        raise ValueError(
            f"gt holds {int(gt[bad_gt][0])}: not a class index in [0, {num_classes}) "
            f"nor the ignore index {IGNORE_INDEX}"
        )
    bad_pred = (pred < 0) | (pred >= num_classes)
    if bad_pred.any():
        raise ValueError(
            f"pred holds {int(pred[bad_pred][0])}: not a class index in [0, {num_classes})"
        )
    # Ignored points are dropped before the bincount: with minlength K*K a stray -1 would
    # otherwise land in a real class bin.
    flat = gt[valid].astype(np.int64) * num_classes + pred[valid].astype(np.int64)
    counts = np.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


class ConfusionMatrix:
    """Accumulates a confusion matrix over batches and scenes (and ranks, via ``reduce_``)."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, gt: Any, pred: Any) -> None:
        self.matrix += confusion_matrix(gt, pred, self.num_classes)

    def reset(self) -> None:
        self.matrix[:] = 0

    def reduce_(self) -> ConfusionMatrix:
        """Sum the matrix over all ranks in place when torch.distributed is initialised."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        total = torch.from_numpy(self.matrix).to(device)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        self.matrix = total.cpu().numpy().astype(np.int64)
        return self


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = numerator.astype(np.float64)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """(K,) tp / (tp + fp + fn) as a fraction; NaN where the class has no gt and no prediction."""
    tp = np.diag(conf)
    return _ratio(tp, conf.sum(axis=0) + conf.sum(axis=1) - tp)


def accuracy_per_class(conf: np.ndarray) -> np.ndarray:
    """(K,) tp / (tp + fn) as a fraction (recall); NaN where the class has no ground truth."""
    return _ratio(np.diag(conf), conf.sum(axis=1))


def _percent_mean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(100.0 * values.mean()) if values.size else None


def _percent_or_none(value: float) -> float | None:
    return None if np.isnan(value) else float(100.0 * value)


def summarize(conf: np.ndarray, label_set: LabelSet, prefix: str = "") -> dict[str, Any]:
    """Benchmark numbers in percent, JSON-safe (NaN -> None), every key starting with ``prefix``.

    Keys: mIoU, mIoU_head / mIoU_common / mIoU_tail (label sets with groups only), mAcc, allAcc,
    iou_per_class and acc_per_class (class name -> value).
    """
    conf = np.asarray(conf)
    k = label_set.num_classes
    if conf.shape != (k, k):
        raise ValueError(f"confusion matrix is {conf.shape}, {label_set.name} needs ({k}, {k})")
    iou, acc = iou_per_class(conf), accuracy_per_class(conf)
    summary: dict[str, Any] = {"mIoU": _percent_mean(iou)}
    if label_set.groups:
        for group in GROUPS:
            summary[f"mIoU_{group}"] = _percent_mean(iou[label_set.group_mask(group)])
    total = conf.sum()
    summary["mAcc"] = _percent_mean(acc)
    summary["allAcc"] = float(100.0 * np.trace(conf) / total) if total else None
    names = label_set.names
    summary["iou_per_class"] = {n: _percent_or_none(v) for n, v in zip(names, iou, strict=True)}
    summary["acc_per_class"] = {n: _percent_or_none(v) for n, v in zip(names, acc, strict=True)}
    return {f"{prefix}{key}": value for key, value in summary.items()}


def _cell(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.2f}"


def format_table(
    summary: dict[str, Any], label_set: LabelSet, prefix: str = "", per_class: bool = True
) -> str:
    """Console table of a ``summarize`` result: the means, then one line per class with a
    defined IoU (classes absent from ground truth and prediction are left out)."""
    means = ["mIoU", *(f"mIoU_{g}" for g in GROUPS if label_set.groups), "mAcc", "allAcc"]
    lines = ["  ".join(f"{m} {_cell(summary[prefix + m]).strip()}" for m in means)]
    if not per_class:
        return lines[0]
    width = max(len(name) for name in label_set.names)
    lines.append(f"{'class':<{width}}  {'group':<6}  {'IoU':>6}  {'Acc':>6}")
    iou, acc = summary[prefix + "iou_per_class"], summary[prefix + "acc_per_class"]
    for name, group in zip(label_set.names, label_set.group_of_class, strict=True):
        if iou[name] is None:
            continue
        lines.append(f"{name:<{width}}  {group:<6}  {_cell(iou[name])}  {_cell(acc[name])}")
    return "\n".join(lines)
