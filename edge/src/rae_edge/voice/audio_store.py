"""Content-addressed store of original recordings: ``data_dir/audio/<ab>/<sha256>.<ext>``.

Uploads are first written to ``audio/tmp/`` (same file system, so the final move is an
atomic rename); a stored file is fsynced, renamed into place and its folder fsynced, so
once :meth:`AudioStore.put` returns the recording survives a power cut. The same bytes
are stored once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class TooLargeError(Exception):
    """The upload passed the size limit while it was being written."""


class SpooledUpload:
    """An upload being written to a temporary file, hashed as it arrives."""

    def __init__(self, fh: BinaryIO, path: Path, max_bytes: int) -> None:
        self._fh = fh
        self.path = path
        self.max_bytes = max_bytes
        self.size = 0
        self._sha = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise TooLargeError(f"the upload is larger than {self.max_bytes} bytes")
        self._sha.update(data)
        self._fh.write(data)

    def finish(self) -> str:
        """Flushes and fsyncs the file; returns its sha256."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        return self._sha.hexdigest()


class AudioStore:
    """The ``audio/`` folder of a node's data folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str, ext: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.{ext}"

    @contextmanager
    def spool(self, max_bytes: int) -> Iterator[SpooledUpload]:
        """A temporary file for one upload; removed on exit unless :meth:`put` moved it."""
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="up-", suffix=".part")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                yield SpooledUpload(fh, path, max_bytes)
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def put(self, spooled: Path, sha256: str, ext: str) -> Path:
        """Moves a finished (fsynced) upload to its content address; keeps an existing
        copy of the same bytes. Returns the stored path."""
        dest = self.path_for(sha256, ext)
        if dest.exists():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(spooled, dest)
        _fsync_dir(dest.parent)
        _fsync_dir(self.root)
        return dest

    def clear_tmp(self) -> int:
        """Removes uploads left half-written by a crash; returns how many."""
        n = 0
        for p in self.tmp.glob("up-*.part"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                n += 1
        return n
