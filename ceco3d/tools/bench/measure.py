"""Timing (interleaved, median), peak memory, measuring processes, and a hostname-free
description of the machine."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import numpy as np
import torch


def synchronize(device: torch.device | None) -> None:
    """Wait for queued GPU work, so that a clock read after it covers that work."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    variants: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int,
    device: torch.device | None = None,
    cpu_times: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """Wall seconds of each call of every variant, called in turn so that drift in the machine's
    load hits all of them alike; the order reverses every round (AB BA AB ...), so that neither
    variant always runs after the other (a step can pay for what the previous one left, e.g.
    freed memory to map again). The first ``warmup`` rounds are not recorded. ``cpu_times``, if
    given, receives the same calls' CPU seconds of this process (all its threads), which other
    processes competing for the cores barely change."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for round_index in range(warmup + repeats):
        for name in names if round_index % 2 == 0 else names[::-1]:
            synchronize(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            variants[name]()
            synchronize(device)
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
                if cpu_times is not None:
                    cpu_times.setdefault(name, []).append(time.process_time() - cpu_start)
    return times


@contextlib.contextmanager
def stopwatch(seconds: dict[str, float], name: str) -> Iterator[None]:
    """Adds the wall time of the ``with`` block to ``seconds[name]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start


def summary_ms(seconds: list[float]) -> dict:
    """Median, min and max in milliseconds, and the number of timed calls."""
    ms = [1000 * s for s in seconds]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms), "n": len(ms)}


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median of the per-round ratios (rounds of an interleaved run: robust to slow drift)."""
    return float(np.median(np.asarray(numerator) / np.asarray(denominator)))


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux's ``ru_maxrss`` (RUSAGE_SELF) carries over the peak of the process a program was
    started from (it survives fork + exec), so a fresh child of a big benchmark process would
    report the parent's size; ``VmHWM`` counts this program's own memory only. Elsewhere
    ``ru_maxrss`` (KiB on Linux, bytes on macOS) is the fallback.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def child_result(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    """The JSON object a measuring child process prints as its last line; a failure raises with
    the command and the end of its stderr."""
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(device: torch.device) -> dict:
    import MinkowskiEngine as ME

    return {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "MinkowskiEngine": ME.__version__,
        "numpy": np.__version__,
        "device": device.type,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }
