"""The Markdown report of a ``ceco3d-bench`` run (tables of what bench.json holds)."""

from __future__ import annotations


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _ms(entry: dict) -> list[str]:
    return [f"{entry['median_ms']:,.1f}", f"{entry['min_ms']:,.1f}", f"{entry['max_ms']:,.1f}"]


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def _machine(m: dict, preset: str, wall_s: float) -> list[str]:
    gpu = f" ({m['gpu']})" if m["gpu"] else ""
    return [
        f"# ceco3d-bench ({preset} preset)",
        "",
        f"{m['date_utc']}; {m['cpu']}, {m['cpu_cores']} cores ({m['torch_threads']} torch "
        f"threads), {m['memory_gib']} GiB; {m['os']}; Python {m['python']}, torch {m['torch']}, "
        f"MinkowskiEngine {m['MinkowskiEngine']}, numpy {m['numpy']}; device {m['device']}{gpu}. "
        f"Whole run: {wall_s:.0f} s. Times are medians of interleaved repeats (min, max beside).",
    ]


def _training(results: dict, settings: dict) -> list[str]:
    first = next(iter(results.values()))
    lines = [
        "",
        "## 1. CeCo training-step overhead",
        "",
        f"{first['num_classes']} classes, {settings['batch_scenes']} synthetic scene(s) at "
        f"{100 * settings['voxel_size']:g} cm, {settings['train_voxels']:,} voxels at most each, "
        f"{first['voxels']:,} in all; forward + "
        "backward + SGD step, SparseTensor rebuilt every step; "
        f"{settings['repeats']} timed steps per loss after {first['warmup']} warm-up step(s), "
        "CE, CeCo and the center branch alone alternating (order reversed every round). "
        "Overhead: CeCo / CE of the median wall times (median of per-pair ratios beside), and "
        "of the median CPU times of the process (all its threads); branch: the center branch "
        "alone (forward + backward on the step's features) as a share of the CE step, wall "
        "and CPU: the direct measure of what CeCo adds, where the difference of two whole "
        f"steps drowns in a shared machine's noise. Target ≤ +{first['target_overhead_pct']:g} "
        f"%, the paper reports +{first['paper_overhead_pct']} %.",
        "",
    ]
    rows = [
        [model, *_ms(r["ce"]), *_ms(r["ceco"]), f"{r['ratio']:.3f} ({r['paired_ratio']:.3f})",
         f"**{r['overhead_pct']:+.1f} %**", f"{r['cpu']['ce']['median_ms']:,.0f}",
         f"{r['cpu']['ceco']['median_ms']:,.0f}",
         f"{r['cpu_ratio']:.3f} ({r['cpu_paired_ratio']:.3f})",
         f"**{r['cpu_overhead_pct']:+.1f} %**", f"{r['branch']['median_ms']:,.0f}",
         f"**{r['branch_pct']:.2f} %** / {r['branch_cpu_pct']:.2f} %"]
        for model, r in results.items()
    ]  # fmt: skip
    header = ["model", "CE wall ms", "min", "max", "CeCo wall ms", "min", "max", "CeCo / CE",
              "overhead", "CE CPU ms", "CeCo CPU ms", "CeCo / CE", "CPU overhead",
              "branch ms", "branch / CE step (wall / CPU)"]  # fmt: skip
    return [*lines, *_table(header, rows)]


def _inference(r: dict) -> list[str]:
    rows = []
    for name in ("ce", "ceco_deployed", "ceco_segmentor"):
        entry = r[name]
        ratio = f"{entry['ratio']:.3f} ({entry['paired_ratio']:.3f})" if "ratio" in entry else "1"
        rows.append([name, *_ms(entry), ratio, f"{entry['parameters']:,}"])
    same = "equals" if r["deployed_parameters_equal_ce"] else "DIFFERS FROM"
    return [
        "",
        "## 2. Inference (eval mode, no grad)",
        "",
        f"The trained models of section 1 on the same {r['voxels']:,}-voxel batch; "
        "`ceco_deployed`: `inference_state_dict()` loaded into a plain model; `ceco_segmentor`: "
        "the training model in eval mode. Ratio to CE (median of per-pair ratios).",
        "",
        *_table(["model", "median ms", "min ms", "max ms", "ratio", "parameters"], rows),
        "",
        f"The deployed CeCo model's parameter count {same} the CE model's.",
        *_scene(r.get("scene")),
    ]


def _scene(s: dict | None) -> list[str]:
    if s is None:
        return []
    return [
        "",
        f"A whole scene ({s['scene']}: {s['points']:,} points, {s['voxels']:,} voxels) segmented "
        "by the CE model as `ceco3d-predict` and `ceco3d-eval` do (voxelize, features, model, "
        "each point its voxel's class, on the host), files not read or written: "
        f"**{s['median_ms']:,.0f} ms** median ({s['min_ms']:,.0f}-{s['max_ms']:,.0f}).",
    ]


def _loader(r: dict) -> list[str]:
    rows = []
    for workers in (0, 2):
        entry = r[f"workers_{workers}"]
        rows.append([workers, *_ms(entry), _rate(entry["samples_per_s"]),
                     f"{entry['ratio_to_step']:.3f}"])  # fmt: skip
    return [
        "",
        "## 3. Data path (dataset + default augmentation + voxelization + collation)",
        "",
        f"`build_train_loader`, batch size {r['batch_size']} (one full synthetic scene, cropped "
        f"to {r['max_voxels']:,} voxels after voxelization), rounds of "
        f"{r['batches_per_round']} batches from a fresh loader (worker start-up included), "
        f"0 and 2 workers alternating; ratio = loader time per batch / CE training step "
        f"({r['step_ms']:,.0f} ms).",
        "",
        *_table(["workers", "ms/batch", "min", "max", "samples/s", "loader / step"], rows),
    ]


def _prep(r: dict) -> list[str]:
    rows = []
    for jobs in (1, 2):
        entry = r[f"jobs_{jobs}"]
        rows.append([jobs, *_ms(entry), _rate(entry["vertices_per_s"]),
                     f"{entry['scenes_per_s']:.2f}"])  # fmt: skip
    return [
        "",
        "## 4. Preprocessing (`ceco3d-prep --force`)",
        "",
        f"{r['scenes']} synthetic scenes, {r['vertices']:,} vertices in all, voxel size "
        f"{r['voxel_size']} m; `-j 1` and `-j 2` alternating, worker start-up included.",
        "",
        *_table(["-j", "median ms", "min ms", "max ms", "vertices/s", "scenes/s"], rows),
        "",
        f"Speed-up of `-j 2`: {r['speedup_j2']:.2f}x.",
    ]


def _evaluation(r: dict) -> list[str]:
    rows = [
        [name.replace("_", " "), *_ms(r[name]), _rate(r[name]["vertices_per_s"])]
        for name in ("back_projection", "confusion_update")
    ]
    rows.append(["total", f"{r['total']['median_ms']:,.1f}", "", "",
                 _rate(r["total"]["vertices_per_s"])])  # fmt: skip
    return [
        "",
        "## 5. Evaluation after the model",
        "",
        f"One validation scene: {r['vertices']:,} vertices, {r['voxels']:,} voxels, "
        f"{r['num_classes']} classes; voxel logits -> argmax -> vertices through the inverse "
        "map, then `ConfusionMatrix.update`.",
        "",
        *_table(["stage", "median ms", "min ms", "max ms", "vertices/s"], rows),
    ]


def _memory(results: dict) -> list[str]:
    rows = []
    for model, r in results.items():
        for size in r["sizes"]:
            ratio = f"{size['ceco_over_ce']:.3f}" if "ceco_over_ce" in size else "-"
            for loss in r["losses"]:
                entry = size[loss]
                gpu = (
                    f"{entry['gpu_peak_mib']:,.0f} ({entry['gpu_step_mib']:,.0f})"
                    if "gpu_step_mib" in entry
                    else "-"
                )
                rows.append([model, f"{size['voxels']:,}", loss, f"{entry['step_mib']:,.0f}",
                             f"{entry['peak_mib']:,.0f}", gpu, f"{entry['step_ms']:,.0f}",
                             ratio if loss == "ceco" else ""])  # fmt: skip
    target = next(iter(results.values()))["target_pct"]
    header = ["model", "voxels", "loss", "step MiB", "peak MiB", "GPU peak MiB", "step ms",
              "CeCo / CE"]  # fmt: skip
    return [
        "",
        "## 6. Peak memory of a training step",
        "",
        "One fresh process per row: step MiB = peak resident memory after one step minus the "
        "peak after building model, loss and optimizer (`VmHWM`: Linux's `ru_maxrss` would "
        "carry over the parent's peak into the child); GPU peak MiB: `max_memory_allocated` "
        "(in brackets: over what model, optimizer and batch held before the step); step ms: a "
        "second step. CeCo / CE: of the GPU step MiB on a GPU, else of the step MiB; target "
        f"≤ {1 + target / 100:.2f}.",
        "",
        *_table(header, rows),
    ]


PREDICT_COLUMNS = ["points", "voxels", "read s", "predict s", "write s", "total s", "points/s",
                   "model MiB", "peak MiB", "GPU peak MiB"]  # fmt: skip


def _predict(r: dict) -> list[str]:
    rows = []
    for size in r["sizes"]:
        stage = size["seconds"]
        gpu = f"{size['gpu_peak_mib']:,.0f}" if "gpu_peak_mib" in size else "-"
        rows.append([f"{size['points']:,}", f"{size['voxels']:,}", f"{stage['read']:.1f}",
                     f"{stage['predict']:.1f}", f"{stage['write']:.1f}", f"{size['total_s']:.1f}",
                     _rate(size["points_per_s"]), f"{size['model_mib']:,.0f}",
                     f"{size['peak_mib']:,.0f}", gpu])  # fmt: skip
    device = "GPU" if r.get("device") == "cuda" else "CPU"
    return [
        "",
        f"## 7. `ceco3d-predict` on large point clouds ({device})",
        "",
        f"{r['model']} (random weights), {100 * r['voxel_size']:g} cm voxels, colour input; binary "
        "PLY clouds sampled from one synthetic room (more points: denser, same surfaces), one "
        "fresh process per cloud. read: open3d + checks; predict: voxelize, features, model, "
        "back to points; write: labels .npy and .txt, coloured PLY, JSON, PNG. Peak = resident "
        "memory high-water mark (`VmHWM`), after loading the model and at the end.",
        "",
        *_table(PREDICT_COLUMNS, rows),
    ]


def _cpu_speed(r: dict) -> list[str]:
    rows = []
    for case in r["cases"]:
        b, a = case["before"], case["after"]
        spread = f"{case['speedup_min']:.2f}-{case['speedup_max']:.2f}"
        rows.append([case["case"], f"{case['voxels']:,}", f"{b['wall_s']:.2f}",
                     f"{a['wall_s']:.2f}", f"**{case['speedup']:.2f}** ({spread})",
                     f"{b['sys_pct']:.1f} %", f"**{a['sys_pct']:.1f} %**",
                     f"{b['minflt'] / 1000:,.0f}k", f"{a['minflt'] / 1000:,.0f}k",
                     f"{b['peak_mib']:,.0f}", f"{a['peak_mib']:,.0f}"])  # fmt: skip
    before = (f"`{r['before_python']}`" if r["before_python"] else
              "this build with the old threading (OpenBLAS's pthread build preloaded, libgomp's "
              "default spin)")  # fmt: skip
    header = ["case", "voxels", "before s/step", "after s/step", "speedup (min-max)",
              "before sys", "after sys", "before faults/step", "after faults/step",
              "before peak MiB", "after peak MiB"]  # fmt: skip
    return [
        "",
        "## 8. CPU training speed (whole processes)",
        "",
        f"CE training steps (forward, backward, SGD) on one saved batch per case, {r['rounds']} "
        f"fresh process(es) per environment, the two alternating (order reversed every round). "
        f"before: {before}; after: this environment. s/step: wall seconds per timed step after "
        "one warm-up step (median over processes); speedup: median of the per-round "
        "before/after ratios; sys: system time as a share of the steps' CPU time (all threads); "
        "faults: minor page faults per step; peak: resident high-water mark (`VmHWM`). Targets: "
        f"speedup ≥ {r['target_speedup']}, sys < {r['target_sys_pct']:g} %, no higher peak.",
        "",
        *_table(header, rows),
    ]


# Section key -> its part of the report, in the report's order.
def _long_tail(r: dict) -> list[str]:
    rows = [
        [name, " ".join(f"`{o}`" for o in m["overrides"]), *_ms(m["step"]),
         f"**{m['ratio']:.3f}** ({m['paired_ratio']:.3f})", f"{m['cpu_ratio']:.3f}",
         f"{m['loss']['median_ms']:,.1f}", f"{m['loss_pct_of_ce_step']:.1f} %",
         f"{m['memory'][r['memory_key']]:,.0f}", f"**{m['memory_ratio']:.3f}**"]
        for name, m in r["methods"].items()
    ]  # fmt: skip
    header = ["method", "overrides", "step ms", "min", "max", "step / CE (paired)",
              "CPU / CE", "loss ms", "loss / CE step", "step MiB", "MiB / CE"]  # fmt: skip
    return [
        "",
        "## 9. Long-tail losses against cross-entropy",
        "",
        f"{r['model']}, {r['num_classes']} classes, one batch of {r['voxels']:,} voxels; forward "
        "+ backward + SGD step, every method in turn (order reversed every round), "
        f"{r['repeats']} timed rounds after {r['warmup']} warm-up round(s); step / CE: of the "
        "median wall times (median of per-round ratios beside), CPU / CE: of the process's CPU "
        "times. Loss ms: the loss alone (forward + backward on the step's logits, with the "
        "center branch for CeCo), its share of the CE step. Step MiB: "
        + (
            "the GPU's peak allocation in one step over what model, optimizer and batch hold"
            if r["memory_key"] == "gpu_step_mib"
            else "peak resident memory of one step over the built model"
        )
        + ", one fresh process per method.",
        "",
        *_table(header, rows),
    ]


RENDERERS = {
    "training_step": lambda results: _training(results["training_step"], results["settings"]),
    "inference": lambda results: _inference(results["inference"]),
    "data_loader": lambda results: _loader(results["data_loader"]),
    "preprocessing": lambda results: _prep(results["preprocessing"]),
    "evaluation": lambda results: _evaluation(results["evaluation"]),
    "memory": lambda results: _memory(results["memory"]),
    "predict": lambda results: _predict(results["predict"]),
    "cpu_speed": lambda results: _cpu_speed(results["cpu_speed"]),
    "long_tail": lambda results: _long_tail(results["long_tail"]),
}


def to_markdown(results: dict) -> str:
    """The report of the sections ``results`` holds."""
    settings = results["settings"]
    lines = _machine(results["machine"], settings["preset"], results["wall_s"])
    for section, render in RENDERERS.items():
        if section in results:
            lines += render(results)
    return "\n".join(lines) + "\n"
