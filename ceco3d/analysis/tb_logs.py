"""Read scalar series back from the TensorBoard event files a training run wrote."""

from __future__ import annotations

import os
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from ceco3d.errors import InputError


def read_scalars(run_dir: str | os.PathLike, tags: list[str]) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` sorted by step, from every event file under ``run_dir``.

    A step logged more than once (a run resumed from an earlier checkpoint) keeps the value
    written last. A tag that was never logged maps to an empty list.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: not a directory")
    events: dict[str, list[tuple[float, int, float]]] = {tag: [] for tag in tags}
    for event_file in sorted(run_dir.rglob("events.out.tfevents.*")):
        # size_guidance 0 keeps every event; the default samples scalars down to 10,000.
        accumulator = EventAccumulator(str(event_file), size_guidance={SCALARS: 0})
        accumulator.Reload()
        logged = set(accumulator.Tags()[SCALARS])
        for tag in tags:
            if tag in logged:
                events[tag] += [(e.wall_time, e.step, e.value) for e in accumulator.Scalars(tag)]
    series = {}
    for tag, tag_events in events.items():
        last_value = {step: value for _, step, value in sorted(tag_events)}
        series[tag] = sorted(last_value.items())
    return series
