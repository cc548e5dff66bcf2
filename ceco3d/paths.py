"""Where the project's own folders are, wherever the user stands."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# The Hydra configs ship inside the package, so an installed wheel has them as a checkout does.
CONF_DIR = Path(__file__).resolve().parent / "conf"
