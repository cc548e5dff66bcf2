"""ceco3d: center-collapse regularisation for long-tailed 3D semantic segmentation."""

import os as _os

__version__ = "0.1.0"

# OpenMP threads that run out of work spin 1,000 rounds, then sleep (README, "CPU training
# speed"). libgomp's default, 300,000 rounds, keeps a waiting thread on its core for about a
# millisecond; with as many threads as cores, any other busy process (a data-loader worker) then
# turns each of a step's thousands of barriers into a wait for the scheduler (a 25k-voxel
# MinkUNet34C step took 94 s instead of 2.4 s beside another training process). libgomp reads
# this once, when torch loads it, hence here, before torch; a user's own GOMP_SPINCOUNT or
# OMP_WAIT_POLICY wins.
if "GOMP_SPINCOUNT" not in _os.environ and "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "1000"
