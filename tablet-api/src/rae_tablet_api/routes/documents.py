"""``POST /api/v1/documents`` (supervisor): a manual, error log, shift report or work-order
file, ingested in the background. ``GET /api/v1/jobs/{id}`` (module ``jobs``) tells its
progress and result.

The body is parsed as a stream: the ``file`` part goes straight to a temporary file under
the node's data folder (cut off with 413 past ``api.max_upload_mb``) and is renamed into
place only once complete and fsynced; the job row is written before the 202 answer, so an
accepted upload is ingested even if the node restarts first.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import anyio
from litestar import Request, Response, post
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema

from rae_edge.config import EdgeSettings
from rae_edge.errors import InvalidInputError
from rae_edge.ingest.pipeline import KINDS
from rae_edge.memory import MemoryService
from rae_edge.tokens import Principal
from rae_tablet_api import guards
from rae_tablet_api.schemas import JobOut
from rae_tablet_api.uploads import (
    PartialFile,
    TooLargeError,
    UploadForm,
    check_declared_size,
    read_upload,
    too_large,
)


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


FORM = UploadForm(
    file_field="file", fields=("kind", "machine_id"),
    usage="send multipart/form-data with a 'file' part, 'kind' (one of "
          f"{', '.join(KINDS)}) and optionally 'machine_id'",
    several_files="send one 'file' part per upload", no_file="the form has no 'file' part")


@post("/api/v1/documents", status_code=202, operation_class=_UploadOperation,
      tags=["documents"], guards=guards.SUPERVISOR, summary="Upload a document for ingest",
      description="Multipart: ``file``, ``kind`` (manual, errors, shift, workorders), "
                  "optional ``machine_id``. 202 with the job once the file is on disk.")
async def upload_document(request: Request[Any, Any, Any], principal: Principal,
                          memory: MemoryService, settings: EdgeSettings) -> Response[JobOut]:
    max_mb = settings.api.max_upload_mb
    limit = max_mb * 1024 * 1024
    check_declared_size(request, limit, too_large("file", max_mb, "api.max_upload_mb"))
    jobs = memory.jobs
    job_id, folder = await anyio.to_thread.run_sync(jobs.new_upload_dir)
    try:
        with PartialFile(folder, limit) as upload:
            try:
                fields, filename = await read_upload(request, FORM, upload)
            except TooLargeError:
                raise too_large("file", max_mb, "api.max_upload_mb") from None
            kind = fields.get("kind", "")
            if kind not in KINDS:
                raise InvalidInputError(f"kind must be one of {', '.join(KINDS)}, got "
                                        f"{kind!r}")
            machine_id = fields.get("machine_id") or None
            if machine_id:
                await anyio.to_thread.run_sync(memory.require_machine,
                                               principal.tenant_id, machine_id)
            await anyio.to_thread.run_sync(upload.sync)
        final = upload.commit(filename)
        job = await anyio.to_thread.run_sync(
            lambda: jobs.submit(principal.tenant_id, job_id, final, kind=kind,
                                machine_id=machine_id, filename=Path(filename).name))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Response(JobOut(**job), status_code=202)


ROUTES = [upload_document]
