"""Content fingerprints of raw input files: preparation redoes a scene when an input's content
changed, whatever its modification time says."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(path: Path, known: dict | None = None) -> dict:
    """``{"bytes", "mtime_ns", "sha256"}`` of ``path``. Where size and modification time both
    equal ``known``'s, the file is taken as unchanged and ``known``'s hash is reused (as git's
    index does), so a re-run hashes only the files that were touched or replaced."""
    stat = path.stat()
    if known and known.get("bytes") == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns:
        return known
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256_of(path)}


def same_content(a: dict, b: dict) -> bool:
    return a.get("bytes") == b.get("bytes") and a.get("sha256") == b.get("sha256")
