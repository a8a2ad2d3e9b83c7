"""``VoiceService``: voice notes from upload to reflective correction.

- :meth:`VoiceService.accept`: checks the machine, the target and the audio, stores the
  original recording (content-addressed, fsynced) and the note row, then queues it; a
  recording uploaded again is the same note.
- the worker transcribes it with the machine's vocabulary as prompt -> ``draft`` (or
  ``failed`` with a reason) and pushes ``voice_note`` to the tablets;
- :meth:`VoiceService.confirm` (the recorder or a supervisor, or the node itself with
  ``voice.auto_confirm``): the (edited) text becomes a :class:`Correction` linked to the
  audio and its target, recorded by the memory service (stored with its outbox row in one
  DuckDB transaction, indexed for search, pushed as ``correction``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rae_edge.config import VoiceSettings
from rae_edge.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from rae_edge.metrics import AUDIO_SECONDS, TRANSCRIBE_SECONDS
from rae_edge.push_kinds import VoiceNotePush
from rae_edge.store.duck import DuckStore
from rae_edge.store.lance import LanceStore
from rae_edge.voice.audio import AudioInfo, AudioRejectedError, probe
from rae_edge.voice.audio_store import AudioStore
from rae_edge.voice.notes import NoteStatus, NoteTable, VoiceNote, note_id
from rae_edge.voice.transcriber import Transcriber
from rae_edge.voice.vocabulary import machine_vocabulary
from rae_edge.voice.worker import TranscriptionWorker
from rae_edge.write.targets import check_target
from rae_edge.write.writer import IndexPort, PushPort
from rae_sync.domain import Correction, CorrectionMethod, content_hash, utcnow

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # transcription attempts before a note is failed for good
AUTO_CONFIRM_AUTHOR = "auto-confirm"


@dataclass(frozen=True)
class Uploader:
    """Who sends or confirms a note (from the API token)."""

    tenant_id: str
    name: str
    token_hash: str
    supervisor: bool = False


def correction_id(note: VoiceNote) -> str:
    # Derived from the note, so confirming twice (or again after a crash) stores it once.
    return "cor_" + content_hash("voice", note.tenant_id, note.id)[:24]


class CorrectionSink(Protocol):
    """Where a confirmed note's correction goes (the memory service: the node's one
    writer, as for a typed correction)."""

    def record_correction(self, c: Correction) -> Correction: ...


class VoiceService:
    """Voice notes of one node (``node.voice``); the composition root passes its parts."""

    def __init__(self, duck: DuckStore, lance: LanceStore, *, settings: VoiceSettings,
                 audio_dir: Path, node_id: str, corrections: Callable[[], CorrectionSink],
                 indexer: Callable[[], IndexPort], push: PushPort) -> None:
        self.duck = duck
        self.lance = lance
        self.settings = settings
        self.node_id = node_id
        self._corrections = corrections  # callables: built (and the model loaded) on use
        self._indexer = indexer
        self.push = push
        self.notes = NoteTable(duck)
        self.audio = AudioStore(audio_dir)
        self.transcriber = Transcriber(self.settings.model)
        self.worker = TranscriptionWorker(self.notes, self._transcribe, self.settings.queue_size)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Recovers notes cut short by a crash, re-indexes confirmed corrections that
        missed the index, and starts the worker (which sweeps queued notes first)."""
        if self.worker.running:
            return
        self.audio.clear_tmp()
        requeued, failed = self.notes.recover(MAX_ATTEMPTS)
        if requeued or failed:
            log.info("voice notes: %d queued again after a restart, %d failed", requeued, failed)
        self._reindex_confirmed()
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()

    # -- upload ------------------------------------------------------------------------
    @property
    def max_bytes(self) -> int:
        return self.settings.max_mb * 1024 * 1024

    def check_target(self, tenant_id: str, machine_id: str, target_id: str | None) -> None:
        """The machine and the amended memory, by the rule typed corrections follow
        (:mod:`rae_edge.write.targets`): 404 unknown, 422 another machine's."""
        check_target(self.duck, self.lance, tenant_id, machine_id, target_id)

    def accept(self, who: Uploader, machine_id: str, target_id: str | None, spooled: Path,
               sha256: str, size: int) -> tuple[VoiceNote, bool]:
        """Checks and stores an uploaded (fsynced) recording as a queued note.

        Returns the note and whether it is new. Raises :class:`AudioRejectedError` (422)
        for bad audio and :class:`NotFoundError` for an unknown machine or target; in
        every such case nothing is stored.
        """
        self.check_target(who.tenant_id, machine_id, target_id)
        nid = note_id(who.tenant_id, sha256)
        existing = self.notes.get(who.tenant_id, nid)
        if existing is not None:
            return self._same_note(existing, machine_id, target_id), False
        info: AudioInfo = probe(spooled, self.settings.max_seconds)
        self.audio.put(spooled, sha256, info.ext)
        now = utcnow()
        note, new = self.notes.insert(VoiceNote(
            tenant_id=who.tenant_id, id=nid, machine_id=machine_id, target_id=target_id,
            audio_sha256=sha256, audio_ext=info.ext, audio_bytes=size,
            duration_s=info.duration_s, author=who.name, author_token=who.token_hash,
            status=NoteStatus.QUEUED, reason=None, transcript=None, prompt=None,
            correction_id=None, attempts=0, created_at=now, updated_at=now,
        ))
        if not new:
            return self._same_note(note, machine_id, target_id), False
        self.worker.submit(note.tenant_id, note.id)
        return note, True

    @staticmethod
    def _same_note(note: VoiceNote, machine_id: str, target_id: str | None) -> VoiceNote:
        if note.machine_id != machine_id or note.target_id != target_id:
            raise ConflictError(
                f"this recording is already voice note {note.id} for machine "
                f"{note.machine_id!r}" + (f" amending {note.target_id!r}" if note.target_id
                                          else "")
            )
        return note

    def get(self, tenant_id: str, id: str) -> VoiceNote:
        note = self.notes.get(tenant_id, id)
        if note is None:
            raise NotFoundError(f"unknown voice note {id!r}")
        return note

    def audio_path(self, note: VoiceNote) -> Path:
        return self.audio.path_for(note.audio_sha256, note.audio_ext)

    # -- transcription -----------------------------------------------------------------
    def _transcribe(self, tenant_id: str, id: str) -> None:
        note = self.notes.claim(tenant_id, id)
        if note is None:
            return  # confirmed by hand meanwhile, or taken by another pass
        started = time.monotonic()
        try:
            vocab = machine_vocabulary(self, tenant_id, note.machine_id)
            prompt = vocab.prompt
            result = self.transcriber.transcribe_with(self.audio_path(note), vocab)
        except FileNotFoundError:
            self._fail(note, "the stored recording is missing from the audio folder")
            return
        except Exception as exc:
            log.exception("voice note %s: transcription failed", id)
            if note.attempts >= MAX_ATTEMPTS:
                self._fail(note, f"transcription failed: {exc}")
            else:
                self.notes.move(tenant_id, id, (NoteStatus.TRANSCRIBING,), NoteStatus.QUEUED)
            return
        if not result.text:
            self._fail(note, "no speech: nothing was said in the recording")
            return
        moved = self.notes.move(tenant_id, id, (NoteStatus.TRANSCRIBING,), NoteStatus.DRAFT,
                                transcript=result.text, prompt=prompt, reason=None)
        took = time.monotonic() - started
        TRANSCRIBE_SECONDS.observe(took)
        AUDIO_SECONDS.inc(result.duration_s)
        log.info("voice note %s: %.1f s of audio transcribed in %.2f s", id, result.duration_s,
                 took)
        if not moved:
            return
        self._push(note, VoiceNotePush(machine_id=note.machine_id, voice_note_id=id,
                                       status="draft", transcript=result.text))
        if self.settings.auto_confirm:
            self.confirm(tenant_id, id, None)

    def _fail(self, note: VoiceNote, reason: str) -> None:
        if self.notes.move(note.tenant_id, note.id, (NoteStatus.TRANSCRIBING,),
                           NoteStatus.FAILED, reason=reason):
            self._push(note, VoiceNotePush(machine_id=note.machine_id, voice_note_id=note.id,
                                           status="failed", reason=reason))

    # -- confirmation ------------------------------------------------------------------
    def confirm(self, tenant_id: str, id: str, who: Uploader | None,
                text: str | None = None) -> Correction:
        """Turns the note into a correction (``who`` None: the node's auto-confirm).

        Only the technician who recorded it or a supervisor may confirm; ``text`` replaces
        the transcript (it may also stand in for a transcript not made yet or failed).
        """
        note = self.get(tenant_id, id)
        if who is not None and not who.supervisor and who.token_hash != note.author_token:
            raise PermissionDeniedError(
                "only the technician who recorded this note or a supervisor may confirm it"
            )
        edited = text.strip() if text is not None else None
        if text is not None and not edited:
            raise InvalidInputError("text is empty: send the corrected words or leave it out")
        if note.status is NoteStatus.CONFIRMED and note.correction_id:
            existing = self.correction(tenant_id, note.correction_id)
            if existing is not None and edited not in (None, existing.text):
                raise ConflictError(f"voice note {id} is already confirmed as correction "
                                    f"{existing.id}: amend that correction instead")
            if existing is not None:
                return existing
        final = edited or note.transcript
        if not final:
            why = note.reason if note.status is NoteStatus.FAILED else (
                f"it is still {note.status.value}")
            raise ConflictError(f"voice note {id} has no transcript ({why}): send the text")
        c = Correction(
            tenant_id=tenant_id, id=correction_id(note), machine_id=note.machine_id, text=final,
            author=note.author, target_id=note.target_id, method=CorrectionMethod.VOICE,
            origin_node=self.node_id, audio_sha256=note.audio_sha256,
        )
        # Written like a typed correction (the node's one writer: stored with its outbox
        # message, sync woken, indexed, pushed); the note follows. A crash between them
        # leaves a draft whose next confirm finds the correction stored (same id) and
        # stores nothing twice.
        self._corrections().record_correction(c)
        stored = self.correction(tenant_id, c.id) or c
        self.notes.move(tenant_id, id, tuple(NoteStatus), NoteStatus.CONFIRMED,
                        correction_id=stored.id)
        return stored

    def correction(self, tenant_id: str, id: str) -> Correction | None:
        rows = self.duck.query_dicts(
            "SELECT tenant_id, id, machine_id, text, author, target_id, method, valid_from, "
            "valid_to, origin_node, audio_sha256, hlc FROM corrections "
            "WHERE tenant_id = ? AND id = ?",
            [tenant_id, id],
        )
        if not rows:
            return None
        return Correction(**{**rows[0], "method": CorrectionMethod(rows[0]["method"])})

    def _reindex_confirmed(self) -> None:
        found = [self.correction(t, c) for t, c in self.notes.confirmed_correction_ids()]
        corrections = [c for c in found if c is not None]
        if not corrections:
            return
        missing = [c for c in corrections if not self.lance.existing_ids(c.tenant_id, [c.id])]
        if missing:
            self._indexer().index_corrections(missing)

    # -- views and push ----------------------------------------------------------------
    def view(self, note: VoiceNote) -> dict[str, Any]:
        """The note as the API shows it."""
        correction = (self.correction(note.tenant_id, note.correction_id)
                      if note.correction_id else None)
        return {
            "id": note.id,
            "status": note.status.value,
            "reason": note.reason,
            "machine_id": note.machine_id,
            "target_id": note.target_id,
            "transcript": note.transcript,
            "draft": ({"text": note.transcript} if note.status is NoteStatus.DRAFT else None),
            "audio_sha256": note.audio_sha256,
            "audio_format": note.audio_ext,
            "duration_s": note.duration_s,
            "author": note.author,
            "created_at": note.created_at.isoformat(),
            "updated_at": note.updated_at.isoformat(),
            "correction_id": note.correction_id,
            "correction": correction.model_dump(mode="json") if correction else None,
        }

    def _push(self, note: VoiceNote, body: VoiceNotePush) -> None:
        try:
            self.push.send(note.tenant_id, body)
        except Exception:  # a tablet that misses a push still sees the note when it polls
            log.exception("voice note %s: push %s failed", note.id, body.status)


__all__ = ["AudioRejectedError", "Uploader", "VoiceService"]
