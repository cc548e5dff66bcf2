"""ceco3d: center-collapse regularisation for long-tailed 3D semantic segmentation."""

import os as _os

__version__ = "0.1.0"

# OpenMP threads that run out of work spin 1,000 rounds, then sleep, instead of libgomp's
# 300,000: with as many threads as cores, a long spin lets any other busy process turn each
# barrier into a wait for the scheduler (docs/cpu_speed.md has the measurements).
# libgomp reads this once, when torch loads it, hence here, before torch; a user's own
# GOMP_SPINCOUNT or OMP_WAIT_POLICY wins.
if "GOMP_SPINCOUNT" not in _os.environ and "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "1000"
