#!/usr/bin/env bash
# The README's "Segment your own scan" pictures: a synthetic validation room (never trained on)
# saved by open3d as an OBJ mesh and as a PCD point cloud, each segmented by ceco3d-predict.
#
#   scripts/own_scan_pictures.sh CKPT RAW OUT
#
# CKPT: a checkpoint trained on the synthetic ScanNet200 (e.g. demo_out/runs/ce_seed0/checkpoints/
# last.pt from `make demo`); RAW: that data set's raw folder (demo_out/raw); OUT: a new folder.
# Copies the two previews to docs/segment_own_scan_{obj,pcd}.png.
set -euo pipefail
[[ $# -eq 3 ]] || { sed -n 2,9p "$0" >&2; exit 2; }
CKPT=$1 RAW=$2 OUT=$3
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.venv/bin"
mkdir -p "$OUT/scans"
# The first validation room's mesh, found through the raw layout's one owner.
"$BIN/python" - "$RAW" "$OUT/scans" <<'PY'
import sys
import open3d as o3d
from ceco3d.data import raw_layout
scene = raw_layout.split_list(sys.argv[1], "val").read_text().split()[0]
mesh = o3d.io.read_triangle_mesh(str(raw_layout.scene_mesh(sys.argv[1], "val", scene)))
cloud = o3d.geometry.PointCloud(mesh.vertices)
cloud.colors = mesh.vertex_colors
assert o3d.io.write_triangle_mesh(f"{sys.argv[2]}/room.obj", mesh)
assert o3d.io.write_point_cloud(f"{sys.argv[2]}/room_cloud.pcd", cloud)
PY
"$BIN/ceco3d-predict" ckpt="$CKPT" input="$OUT/scans" out="$OUT/segmented"
cp "$OUT/segmented/room_preview.png" "$ROOT/docs/segment_own_scan_obj.png"
cp "$OUT/segmented/room_cloud_preview.png" "$ROOT/docs/segment_own_scan_pcd.png"
echo "wrote docs/segment_own_scan_obj.png and docs/segment_own_scan_pcd.png"
