"""The ``voice_notes`` table: one row per recording, its status, transcript and correction.

Status moves ``queued`` -> ``transcribing`` -> ``draft`` -> ``confirmed`` (or ``failed``
with a reason). Each move is one conditional UPDATE, so two threads never both claim or
confirm the same note.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from rae_edge.store.duck import DuckStore
from rae_sync.domain import content_hash


class NoteStatus(StrEnum):
    QUEUED = "queued"
    TRANSCRIBING = "transcribing"
    DRAFT = "draft"
    CONFIRMED = "confirmed"
    FAILED = "failed"


@dataclass(frozen=True)
class VoiceNote:
    tenant_id: str
    id: str
    machine_id: str
    target_id: str | None
    audio_sha256: str
    audio_ext: str
    audio_bytes: int
    duration_s: float
    author: str
    author_token: str
    status: NoteStatus
    reason: str | None
    transcript: str | None
    prompt: str | None
    correction_id: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime


_COLUMNS = (
    "tenant_id, id, machine_id, target_id, audio_sha256, audio_ext, audio_bytes, duration_s, "
    "author, author_token, status, reason, transcript, prompt, correction_id, attempts, "
    "created_at, updated_at"
)


def note_id(tenant_id: str, audio_sha256: str) -> str:
    """The note of a recording: the same bytes uploaded twice are the same note."""
    return "vn_" + content_hash(tenant_id, audio_sha256)[:24]


def _note(row: dict[str, Any]) -> VoiceNote:
    return VoiceNote(**{**row, "status": NoteStatus(row["status"])})


class NoteTable:
    """Reads and moves voice notes in the node's DuckDB."""

    def __init__(self, duck: DuckStore) -> None:
        self.duck = duck

    def get(self, tenant_id: str, id: str) -> VoiceNote | None:
        rows = self.duck.query_dicts(
            f"SELECT {_COLUMNS} FROM voice_notes WHERE tenant_id = ? AND id = ?", [tenant_id, id]
        )
        return _note(rows[0]) if rows else None

    def insert(self, note: VoiceNote) -> tuple[VoiceNote, bool]:
        """Stores a new note; returns the stored one and whether it is new (a note of the
        same recording already stored is returned unchanged)."""
        with self.duck.transaction() as cur:
            cur.execute(
                f"SELECT {_COLUMNS} FROM voice_notes WHERE tenant_id = ? AND audio_sha256 = ?",
                [note.tenant_id, note.audio_sha256],
            )
            cols = [d[0] for d in cur.description or []]
            row = cur.fetchone()
            if row is not None:
                return _note(dict(zip(cols, row, strict=True))), False
            cur.execute(
                f"INSERT INTO voice_notes ({_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [note.tenant_id, note.id, note.machine_id, note.target_id, note.audio_sha256,
                 note.audio_ext, note.audio_bytes, note.duration_s, note.author,
                 note.author_token, note.status.value, note.reason, note.transcript,
                 note.prompt, note.correction_id, note.attempts, note.created_at,
                 note.updated_at],
            )
        return note, True

    def claim(self, tenant_id: str, id: str) -> VoiceNote | None:
        """``queued`` -> ``transcribing`` (one attempt more); None when not queued."""
        with self.duck.transaction() as cur:
            got = cur.execute(
                "UPDATE voice_notes SET status = 'transcribing', attempts = attempts + 1, "
                "updated_at = now() WHERE tenant_id = ? AND id = ? AND status = 'queued' "
                "RETURNING id",
                [tenant_id, id],
            ).fetchall()
        return self.get(tenant_id, id) if got else None

    def move(self, tenant_id: str, id: str, from_: tuple[NoteStatus, ...], to: NoteStatus,
             **fields: Any) -> bool:
        """Sets ``status`` (and ``fields``) when the note is in one of ``from_``."""
        sets = ", ".join(f"{k} = ?" for k in fields)
        sql = (f"UPDATE voice_notes SET status = ?, {sets + ', ' if sets else ''}"
               "updated_at = now() WHERE tenant_id = ? AND id = ? "
               "AND list_contains(?, status) RETURNING id")
        with self.duck.transaction() as cur:
            got = cur.execute(
                sql, [to.value, *fields.values(), tenant_id, id, [s.value for s in from_]]
            ).fetchall()
        return bool(got)

    def pending(self, limit: int, exclude: set[tuple[str, str]]) -> list[tuple[str, str]]:
        """Queued notes, oldest first, not among ``exclude`` (already in the work queue)."""
        rows = self.duck.query(
            "SELECT tenant_id, id FROM voice_notes WHERE status = 'queued' "
            "ORDER BY created_at, id LIMIT ?",
            [limit + len(exclude)],
        )
        out = [(str(t), str(i)) for t, i in rows if (str(t), str(i)) not in exclude]
        return out[:limit]

    def recover(self, max_attempts: int) -> tuple[int, int]:
        """After a restart: notes caught mid-transcription go back to the queue, or fail
        when they have already been tried ``max_attempts`` times (a note that crashes the
        node must not crash it forever). Returns (requeued, failed)."""
        with self.duck.transaction() as cur:
            failed = cur.execute(
                "UPDATE voice_notes SET status = 'failed', updated_at = now(), reason = "
                "'transcription stopped ' || attempts || ' times (the node was restarted "
                "while it ran)' WHERE status = 'transcribing' AND attempts >= ? RETURNING id",
                [max_attempts],
            ).fetchall()
            requeued = cur.execute(
                "UPDATE voice_notes SET status = 'queued', updated_at = now() "
                "WHERE status = 'transcribing' RETURNING id"
            ).fetchall()
        return len(requeued), len(failed)

    def confirmed_correction_ids(self) -> list[tuple[str, str]]:
        rows = self.duck.query(
            "SELECT tenant_id, correction_id FROM voice_notes WHERE status = 'confirmed' "
            "AND correction_id IS NOT NULL"
        )
        return [(str(t), str(c)) for t, c in rows]
