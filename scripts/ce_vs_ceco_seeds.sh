#!/usr/bin/env bash
# CE vs CeCo over three training seeds on the demo's synthetic ScanNet200: same data, model and
# budget; prints mean ± std per metric (about an hour on 2 CPU cores).
#   scripts/ce_vs_ceco_seeds.sh [OUT]     (default OUT: demo_seeds)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ceco3d-demo --seeds 0 1 2 --out "${1:-demo_seeds}"
