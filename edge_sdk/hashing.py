"""Content hashes of files and folders (sha256), memoised per (path, size, mtime) within a process."""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from pathlib import Path

from runtimes.errors import ModelLoadError

_CHUNK = 1 << 20


def sha256_of(path: str | Path | Iterable[str | Path]) -> str:
    """sha256 hex digest of a model artifact, hashed in 1 MiB chunks.

    A single file gives the plain file digest (equal to `sha256sum`). A directory or several
    paths give the digest of the lines "<relative name>\\0<file digest>\\n" over their files,
    sorted by name. Raises ModelLoadError naming a missing path.
    """
    if isinstance(path, (str, Path)) and Path(path).is_file():
        return _file_sha256(Path(path))
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    entries: list[tuple[str, Path]] = []
    for p in map(Path, paths):
        if p.is_file():
            entries.append((p.name, p))
        elif p.is_dir():
            entries += [(f"{p.name}/{f.relative_to(p).as_posix()}", f)
                        for f in p.rglob("*") if f.is_file()]
        else:
            raise ModelLoadError(f"model artifact not found: {p}")
    digest = hashlib.sha256()
    for name, f in sorted(entries):
        digest.update(f"{name}\0{_file_sha256(f)}\n".encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    """A file's digest, read once per (path, size, mtime): a run hashes the same model for the report,
    the environment and every row."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ModelLoadError(f"cannot read model artifact {path}: {exc.strerror}") from exc
    return _digest(path.resolve(), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _digest(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise ModelLoadError(f"cannot read model artifact {path}: {exc.strerror}") from exc
    return digest.hexdigest()
