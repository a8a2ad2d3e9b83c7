"""Streamed multipart uploads shared by ``POST /api/v1/documents`` and
``POST /api/v1/voice-notes``.

The body is never held in memory: :func:`read_upload` feeds the one file part to a sink
(anything with ``write(bytes)`` that raises :class:`TooLargeError` past its limit) and
returns the small text fields. :func:`check_declared_size` refuses an announced oversize
body before a byte is read. :class:`PartialFile` is the sink for a file that becomes a
record only once complete: it is written as ``.partial``, fsynced, and renamed to its
name, so a half-written upload (a dropped connection, a crash) never carries a name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from litestar import Request
from litestar.exceptions import HTTPException
from multipart import MultipartSegment, ParserError, ParserLimitReached, PushMultipartParser

from rae_edge.errors import InvalidInputError
from rae_edge.voice.audio_store import TooLargeError

__all__ = ["MAX_FIELD_BYTES", "PartialFile", "Sink", "TooLargeError", "UploadForm",
           "check_declared_size", "read_upload", "safe_name", "too_large"]

MAX_FIELD_BYTES = 1024  # a text field (kind, machine_id, target_id) is short
_ENVELOPE_BYTES = 64 * 1024  # multipart headers and fields beside the file part
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Sink(Protocol):
    def write(self, data: bytes) -> object: ...


@dataclass(frozen=True)
class UploadForm:
    """What one upload endpoint accepts, and what it says when the form is wrong."""

    file_field: str  # the one file part
    fields: tuple[str, ...]  # text fields kept; others are read and dropped
    usage: str  # said when the body is not multipart/form-data
    several_files: str  # said when the file part comes twice
    no_file: str  # said when the file part is missing


def too_large(noun: str, max_mb: int, setting: str) -> HTTPException:
    return HTTPException(status_code=413, detail=f"the {noun} is larger than the {max_mb} MB "
                                                 f"limit ({setting})")


def check_declared_size(request: Request[Any, Any, Any], limit: int,
                        error: HTTPException) -> None:
    """Refuses a body whose ``Content-Length`` already says it is past ``limit``."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + _ENVELOPE_BYTES:
        raise error


def _boundary(request: Request[Any, Any, Any], form: UploadForm) -> str:
    ctype = request.headers.get("content-type", "")
    if ctype.lower().startswith("multipart/form-data"):
        for param in ctype.split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "boundary" and value.strip('"'):
                return value.strip('"')
    raise InvalidInputError(form.usage)


async def read_upload(request: Request[Any, Any, Any], form: UploadForm,
                      sink: Sink) -> tuple[dict[str, str], str]:
    """Streams the body: the file part into ``sink``; returns the fields and the file's
    client-side name (``"upload"`` when it gave none)."""
    fields: dict[str, str] = {}
    filename = ""
    files = 0
    segment: MultipartSegment | None = None
    buf = bytearray()
    try:
        with PushMultipartParser(_boundary(request, form).encode("latin-1"),
                                 max_segment_count=8) as parser:
            stream = request.stream()
            while not parser.closed:
                chunk = await anext(stream, b"")
                for part in parser.parse(chunk):
                    if isinstance(part, MultipartSegment):
                        segment, buf = part, bytearray()
                        if segment.name == form.file_field:
                            files += 1
                            filename = segment.filename or "upload"
                            if files > 1:
                                raise InvalidInputError(form.several_files)
                    elif part:
                        if segment is not None and segment.name == form.file_field:
                            sink.write(bytes(part))
                        else:
                            buf.extend(part)
                            if len(buf) > MAX_FIELD_BYTES:
                                raise InvalidInputError("a form field is too long")
                    elif segment is not None:
                        if segment.name in form.fields:
                            fields[segment.name] = buf.decode("utf-8", "replace").strip()
                        segment = None
                if not chunk and not parser.closed:
                    raise InvalidInputError("the multipart body ended early")
    except (ParserError, ParserLimitReached) as exc:
        raise InvalidInputError(f"invalid multipart/form-data body ({exc})") from exc
    if not files:
        raise InvalidInputError(form.no_file)
    return fields, filename


def safe_name(filename: str) -> str:
    """A client's file name reduced to one harmless path component."""
    name = _SAFE.sub("_", Path(filename.replace("\\", "/")).name).strip("._") or "upload"
    return name[-120:]


class PartialFile:
    """``folder/.partial``, counted against ``limit``; :meth:`commit` fsyncs it and renames
    it to its final name. Use as a context manager; the caller removes ``folder`` when
    anything fails, so nothing half-written stays."""

    def __init__(self, folder: Path, limit: int) -> None:
        self.path = folder / ".partial"
        self.limit = limit
        self.size = 0
        self._f: BinaryIO | None = None

    def __enter__(self) -> PartialFile:
        self._f = self.path.open("wb")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._f is not None:
            self._f.close()

    def write(self, data: bytes) -> None:
        assert self._f is not None
        self.size += len(data)
        if self.size > self.limit:
            raise TooLargeError(f"the upload is larger than {self.limit} bytes")
        self._f.write(data)

    def sync(self) -> None:
        """Flushes and fsyncs the bytes (blocking: call it from a worker thread)."""
        assert self._f is not None
        self._f.flush()
        os.fsync(self._f.fileno())

    def commit(self, name: str) -> Path:
        """Renames the synced, closed file to ``name`` (made safe); returns the path."""
        final = self.path.parent / safe_name(name)
        self.path.replace(final)  # complete: only now does it carry its name
        return final
