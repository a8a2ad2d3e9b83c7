"""Voice notes: ``POST /api/v1/voice-notes``, ``GET /api/v1/voice-notes/{id}``,
``POST /api/v1/voice-notes/{id}/confirm``.

The upload is read as a stream: the ``audio`` part goes straight into a temporary file
under the node's audio folder (hashed as it arrives, cut off with 413 past
``voice.max_mb``), is decoded and checked, then stored content-addressed and fsynced with
its note row before the 202 answer. Anything wrong with it is a 4xx that names the
problem, and nothing is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
from litestar import Request, Response, get, post
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema

from rae_edge.errors import InvalidInputError
from rae_edge.tokens import Principal
from rae_edge.voice import Uploader, VoiceService
from rae_sync.domain import Role
from rae_tablet_api import guards
from rae_tablet_api.uploads import (
    TooLargeError,
    UploadForm,
    check_declared_size,
    read_upload,
    too_large,
)

FORM = UploadForm(
    file_field="audio", fields=("machine_id", "target_id"),
    usage="send multipart/form-data with an 'audio' file part, 'machine_id' and optionally "
          "'target_id'",
    several_files="send one 'audio' part, not several", no_file="the form has no 'audio' file part")


class _UploadOperation(Operation):
    """Documents the multipart body this handler reads itself (as a stream)."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(required=True, content={
            "multipart/form-data": OpenAPIMediaType(schema=Schema(
                type=OpenAPIType.OBJECT,
                required=["audio", "machine_id"],
                properties={
                    "audio": Schema(type=OpenAPIType.STRING, format=None,
                                    content_media_type="application/octet-stream",
                                    description="the recording: webm/opus, ogg, m4a/aac, wav, "
                                                "flac or mp3"),
                    "machine_id": Schema(type=OpenAPIType.STRING,
                                         description="the machine the note is about"),
                    "target_id": Schema(type=OpenAPIType.STRING,
                                        description="the incident, manual section or "
                                                    "correction the note amends"),
                },
            )),
        })


def _uploader(principal: Principal) -> Uploader:
    return Uploader(tenant_id=principal.tenant_id,
                    name=principal.name or f"token:{principal.token_hash[:12]}",
                    token_hash=principal.token_hash,
                    supervisor=principal.can(Role.SUPERVISOR))


@post("/api/v1/voice-notes", status_code=202, operation_class=_UploadOperation,
      summary="Upload a voice note", tags=["voice"], guards=guards.TECHNICIAN,
      description="Multipart: ``audio`` (webm/opus, ogg, m4a/aac, wav, flac, mp3), "
                  "``machine_id``, optional ``target_id``. 202 with the note once the "
                  "recording is on disk (200 with the same note when it was sent before).")
async def upload_voice_note(request: Request[Any, Any, Any], principal: Principal,
                            voice: VoiceService) -> Response[dict[str, Any]]:
    max_mb = voice.settings.max_mb
    check_declared_size(request, voice.max_bytes, too_large("recording", max_mb, "voice.max_mb"))
    with voice.audio.spool(voice.max_bytes) as up:
        try:
            fields, _ = await read_upload(request, FORM, up)
        except TooLargeError:
            raise too_large("recording", max_mb, "voice.max_mb") from None
        machine_id = fields.get("machine_id", "")
        if not machine_id:
            raise InvalidInputError("machine_id is missing: name the machine the note is about")
        target_id = fields.get("target_id") or None
        sha256 = await anyio.to_thread.run_sync(up.finish)
        note, new = await anyio.to_thread.run_sync(
            voice.accept, _uploader(principal), machine_id, target_id, up.path, sha256, up.size)
    view = await anyio.to_thread.run_sync(voice.view, note)
    return Response(view, status_code=202 if new else 200)


@get("/api/v1/voice-notes/{note_id:str}", sync_to_thread=True, summary="A voice note",
     tags=["voice"], guards=guards.TECHNICIAN)
def get_voice_note(note_id: str, principal: Principal, voice: VoiceService) -> dict[str, Any]:
    """Status (queued, transcribing, draft, confirmed, failed with ``reason``), the
    transcript, and the correction the note became."""
    return voice.view(voice.get(principal.tenant_id, note_id))


@dataclass
class ConfirmBody:
    """Optional edited text; without it the transcript is confirmed as it is."""

    text: str | None = None


@post("/api/v1/voice-notes/{note_id:str}/confirm", status_code=200, sync_to_thread=True,
      summary="Confirm a voice note as a correction", tags=["voice"], guards=guards.TECHNICIAN)
def confirm_voice_note(note_id: str, principal: Principal, voice: VoiceService,
                       data: ConfirmBody | None = None) -> dict[str, Any]:
    """The technician who recorded the note, or a supervisor, confirms it (optionally
    with edited ``text``): it becomes a correction linked to its audio and target."""
    text = data.text if data is not None else None
    voice.confirm(principal.tenant_id, note_id, _uploader(principal), text)
    return voice.view(voice.get(principal.tenant_id, note_id))


ROUTES = [upload_voice_note, get_voice_note, confirm_voice_note]
