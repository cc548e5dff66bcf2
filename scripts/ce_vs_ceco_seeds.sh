#!/usr/bin/env bash
# CE, class-weighted CE and CeCo over three training seeds on the demo's synthetic ScanNet200:
# same data, model and budget; prints mean ± std per metric and each model's paired per-seed
# difference to CE. OUT defaults to make demo's folder, so its seed-0 runs are reused (then
# about 13 minutes on 2 CPU cores; docs/demo_results.md).
#   scripts/ce_vs_ceco_seeds.sh [OUT]     (default OUT: demo_out)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ceco3d-demo --seeds 0 1 2 --out "${1:-demo_out}"
