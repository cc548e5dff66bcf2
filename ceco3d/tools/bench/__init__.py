"""``ceco3d-bench``: what the pipeline costs, each comparison a ratio measured in one run.

One module per measurement: ``training`` (CeCo's training-step overhead and inference),
``data`` (the training loader, evaluation back-projection), ``prep`` (``ceco3d-prep``
throughput), ``memory`` (peak memory of a training step by voxel count), ``predict``
(``ceco3d-predict`` on large point clouds: points per second, peak memory), ``cpu`` (CPU
training speed of whole processes, the old build's threading against this one's),
``long_tail`` (each long-tail loss's step time, loss time and memory against CE). ``workspace``
makes the synthetic data and configs they run on, ``measure`` times and describes the machine,
``run`` calls every measurement in the order the data flows, ``report`` writes the Markdown.
"""

# What ``ceco3d-bench --only`` can run alone: a section, or a group of them by name.
SECTION_GROUPS = {
    "predict": ("predict",),
    "ceco": ("training_step", "memory"),
    "model": ("training_step", "inference", "memory"),  # what runs the model (gpu_check.sh)
    "cpu": ("cpu_speed",),
    "long_tail": ("long_tail",),  # not part of a whole run: --only long_tail
    # gpu_check.sh's: CeCo's cost, inference (a whole scene too), every long-tail method. Not
    # predict: ceco3d-predict reads and writes scans with open3d, which GPU images seldom have.
    "gpu": ("training_step", "inference", "long_tail"),
}
