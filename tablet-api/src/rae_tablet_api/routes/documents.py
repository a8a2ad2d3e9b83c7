"""``POST /api/v1/documents`` (supervisor): a manual, error log, shift report or work-order
file, ingested in the background. ``GET /api/v1/jobs/{id}`` (module ``jobs``) tells its
progress and result.

The body is parsed as a stream: the ``file`` part goes straight to a temporary file under
the node's data folder (cut off with 413 past ``api.max_upload_mb``) and is renamed into
place only once complete and fsynced; the job row is written before the 202 answer, so an
accepted upload is ingested even if the node restarts first.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, BinaryIO

import anyio
from litestar import Request, Response, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from multipart import MultipartSegment, ParserError, ParserLimitReached, PushMultipartParser

from rae_edge.errors import InvalidInputError
from rae_edge.ingest.pipeline import KINDS
from rae_edge.node import EdgeNode
from rae_edge.tokens import Principal
from rae_sync.domain import Role
from rae_tablet_api.auth import require
from rae_tablet_api.schemas import JobOut

FIELDS = ("kind", "machine_id")
MAX_FIELD_BYTES = 1024
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class _UploadOperation(Operation):
    """Documents the multipart body this handler reads itself (as a stream)."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(required=True, content={
            "multipart/form-data": OpenAPIMediaType(schema=Schema(
                type=OpenAPIType.OBJECT, required=["file", "kind"],
                properties={
                    "file": Schema(type=OpenAPIType.STRING,
                                   content_media_type="application/octet-stream",
                                   description="PDF manual, CSV/JSON-lines error log or work "
                                               "orders, text/Markdown shift report"),
                    "kind": Schema(type=OpenAPIType.STRING, enum=list(KINDS)),
                    "machine_id": Schema(type=OpenAPIType.STRING,
                                         description="the machine it all belongs to"),
                })),
        })


class _TooLarge(Exception):
    pass


class _Sink:
    """The upload's bytes into a temporary file, counted."""

    def __init__(self, f: BinaryIO, limit: int) -> None:
        self.f, self.limit, self.size = f, limit, 0

    def write(self, data: bytes | bytearray) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise _TooLarge
        self.f.write(data)


def _boundary(request: Request[Any, Any, Any]) -> str:
    ctype = request.headers.get("content-type", "")
    if ctype.lower().startswith("multipart/form-data"):
        for param in ctype.split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "boundary":
                return value.strip('"')
    raise InvalidInputError("send multipart/form-data with a 'file' part, 'kind' (one of "
                            f"{', '.join(KINDS)}) and optionally 'machine_id'")


async def _read_form(request: Request[Any, Any, Any], sink: _Sink) -> tuple[dict[str, str], str]:
    """Streams the body: the file part into ``sink``; returns the fields and file name."""
    fields: dict[str, str] = {}
    filename = ""
    files = 0
    segment: MultipartSegment | None = None
    buf = bytearray()
    try:
        with PushMultipartParser(_boundary(request).encode("latin-1"),
                                 max_segment_count=8) as parser:
            stream = request.stream()
            while not parser.closed:
                chunk = await anext(stream, b"")
                for part in parser.parse(chunk):
                    if isinstance(part, MultipartSegment):
                        segment, buf = part, bytearray()
                        if segment.name == "file":
                            files += 1
                            filename = segment.filename or "upload"
                            if files > 1:
                                raise InvalidInputError("send one 'file' part per upload")
                    elif part:
                        if segment is not None and segment.name == "file":
                            sink.write(part)
                        else:
                            buf.extend(part)
                            if len(buf) > MAX_FIELD_BYTES:
                                raise InvalidInputError("a form field is too long")
                    elif segment is not None:
                        if segment.name in FIELDS:
                            fields[segment.name] = buf.decode("utf-8", "replace").strip()
                        segment = None
                if not chunk and not parser.closed:
                    raise InvalidInputError("the multipart body ended early")
    except (ParserError, ParserLimitReached) as exc:
        raise InvalidInputError(f"invalid multipart/form-data body ({exc})") from exc
    if not files:
        raise InvalidInputError("the form has no 'file' part")
    return fields, filename


def _safe_name(filename: str) -> str:
    name = _SAFE.sub("_", Path(filename.replace("\\", "/")).name).strip("._") or "upload"
    return name[-120:]


@post("/api/v1/documents", status_code=202, operation_class=_UploadOperation,
      tags=["documents"], summary="Upload a document for ingest",
      description="Multipart: ``file``, ``kind`` (manual, errors, shift, workorders), "
                  "optional ``machine_id``. 202 with the job once the file is on disk.")
async def upload_document(request: Request[Any, Any, Any], principal: Principal,
                          state: State) -> Response[JobOut]:
    require(principal, Role.SUPERVISOR)
    node: EdgeNode = state.node
    max_mb = node.settings.api.max_upload_mb
    limit = max_mb * 1024 * 1024
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise HTTPException(status_code=413, detail=f"the file is larger than the {max_mb} MB "
                                                    "limit (api.max_upload_mb)")
    jobs = node.memory.jobs
    job_id, folder = await anyio.to_thread.run_sync(jobs.new_upload_dir)
    tmp = folder / ".partial"
    try:
        with tmp.open("wb") as f:
            try:
                fields, filename = await _read_form(request, _Sink(f, limit))
            except _TooLarge:
                raise HTTPException(status_code=413, detail=f"the file is larger than the "
                                    f"{max_mb} MB limit (api.max_upload_mb)") from None
            kind = fields.get("kind", "")
            if kind not in KINDS:
                raise InvalidInputError(f"kind must be one of {', '.join(KINDS)}, got "
                                        f"{kind!r}")
            machine_id = fields.get("machine_id") or None
            if machine_id:
                await anyio.to_thread.run_sync(node.memory.require_machine,
                                               principal.tenant_id, machine_id)
            f.flush()
            await anyio.to_thread.run_sync(os.fsync, f.fileno())
        final = folder / _safe_name(filename)
        tmp.replace(final)  # complete: only now does it carry its name
        job = await anyio.to_thread.run_sync(
            lambda: jobs.submit(principal.tenant_id, job_id, final, kind=kind,
                                machine_id=machine_id, filename=Path(filename).name))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Response(JobOut(**job), status_code=202)


ROUTES = [upload_document]
