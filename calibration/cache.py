"""Calibration results on disk, keyed by everything that decides them.

A key is the model's and the calibration set's content hashes, the method, the preprocessing, the
engine, the quantizer's and engine's versions, and any setting that changes the result (exclusions,
per-channel, ...). An entry is a folder named by the key's digest holding the stored files and a
manifest (the key in full and each file's sha256). An entry is used only when its manifest matches
the key field by field and every file still has its recorded hash; anything else (a model changed
under the same file name, an edited or truncated file, another version) is a miss that says why
(`CacheWarning`), and the result is computed again and stored over it.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_sdk.atomic import write_json_atomic
from edge_sdk.cachedir import cache_dir
from edge_sdk.hashing import sha256_of

MANIFEST = "manifest.json"


class CacheWarning(UserWarning):
    """A cache entry was found but not used (stale or altered): it is recomputed."""


@dataclass(frozen=True)
class CacheKey:
    """What a calibration result depends on."""

    model_sha256: str
    calib_sha256: str
    method: str
    preprocessing: str
    engine: str  # the backend the result is for
    versions: dict[str, str] = field(default_factory=dict)  # engine and quantizer package versions
    settings: dict[str, Any] = field(default_factory=dict)  # exclusions, per-channel, int8 I/O, ...

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), sort_keys=True, default=str))  # type: ignore[no-any-return]

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class CacheLookup:
    """A lookup's answer: the stored files (None: a miss) and why it missed."""

    files: dict[str, Path] | None
    reason: str = ""

    @property
    def hit(self) -> bool:
        return self.files is not None


class CalibrationCache:
    """Entries under `root` (default: <edgebench cache>/calibration)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "calibration"

    def entry(self, key: CacheKey) -> Path:
        return self.root / f"{key.engine}-{key.digest()}"

    def lookup(self, key: CacheKey, names: tuple[str, ...]) -> CacheLookup:
        """The files `names` stored under `key`, checked against the manifest; a miss says why (and warns
        when an entry existed but could not be trusted)."""
        folder = self.entry(key)
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            return CacheLookup(None, "no entry")
        reason = _untrusted(folder, manifest_path, key, names)
        if reason:
            warnings.warn(f"calibration cache entry {folder} not used ({reason}); calibrating again",
                          CacheWarning, stacklevel=2)
            return CacheLookup(None, reason)
        return CacheLookup({n: folder / n for n in names})

    def store(self, key: CacheKey, files: dict[str, Path]) -> dict[str, Path]:
        """Copy `files` (name -> path) into the entry for `key`, replacing any old one; the stored paths."""
        self.root.mkdir(parents=True, exist_ok=True)
        folder = self.entry(key)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=self.root))
        try:
            for name, src in files.items():
                shutil.copyfile(src, tmp / name)
            write_json_atomic(tmp / MANIFEST, {"key": key.to_dict(),
                                               "files": {n: sha256_of(tmp / n) for n in files}})
            if folder.exists():
                shutil.rmtree(folder)
            tmp.rename(folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return {n: folder / n for n in files}


def _untrusted(folder: Path, manifest_path: Path, key: CacheKey, names: tuple[str, ...]) -> str:
    """Why an entry cannot be used ('' when it can)."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"unreadable manifest: {exc}"
    stored = manifest.get("key") if isinstance(manifest, dict) else None
    if stored != key.to_dict():
        fields = [k for k, v in key.to_dict().items() if not isinstance(stored, dict) or stored.get(k) != v]
        return f"its key differs in {', '.join(fields) or 'format'}"
    hashes = manifest.get("files") or {}
    for name in names:
        path = folder / name
        if name not in hashes or not path.is_file():
            return f"{name} missing"
        if sha256_of(path) != hashes[name]:
            return f"{name} changed since it was stored"
    return ""
