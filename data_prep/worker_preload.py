"""What ceco3d-prep's fork server imports before it forks worker processes (see
``data_prep.prep.run_all``): MinkowskiEngine with torch, and the mesh reader, loaded once and
without the CPU-only build warning, so that every worker starts in milliseconds instead of
seconds. Importing this module has exactly that effect; nothing else imports it. (It must not
import ``data_prep.prep``: under ``python -m data_prep.prep`` each worker runs that module as
its main module.)
"""

import warnings

warnings.filterwarnings("ignore", message=".*compiled with CPU_ONLY.*")

import MinkowskiEngine  # noqa: E402, F401

import ceco3d.io  # noqa: E402, F401
