"""The voice_notes table's status moves, and recovery after a crash: a note cut short is
queued again, unless it has already been cut short too often (then it fails, with why)."""

from __future__ import annotations

from dataclasses import replace

from rae_edge.node import EdgeNode
from rae_edge.voice.notes import NoteStatus, NoteTable, VoiceNote, note_id
from rae_edge.voice.service import MAX_ATTEMPTS
from rae_sync.domain import utcnow


def _note(sha: str, **kw: object) -> VoiceNote:
    now = utcnow()
    base = VoiceNote(tenant_id="acme", id=note_id("acme", sha), machine_id="press-1",
                     target_id=None, audio_sha256=sha, audio_ext="ogg", audio_bytes=10,
                     duration_s=1.0, author="a", author_token="h", status=NoteStatus.QUEUED,
                     reason=None, transcript=None, prompt=None, correction_id=None,
                     attempts=0, created_at=now, updated_at=now)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_claim_is_exclusive_and_moves_are_conditional(node: EdgeNode) -> None:
    notes = NoteTable(node.duck)
    n, new = notes.insert(_note("a" * 64))
    assert new and notes.insert(_note("a" * 64))[1] is False  # same recording, same note
    claimed = notes.claim("acme", n.id)
    assert claimed is not None and claimed.status is NoteStatus.TRANSCRIBING
    assert claimed.attempts == 1
    assert notes.claim("acme", n.id) is None  # nobody takes it twice
    assert notes.move("acme", n.id, (NoteStatus.TRANSCRIBING,), NoteStatus.DRAFT,
                      transcript="E404 again")
    # A late worker cannot overwrite a note that moved on.
    assert not notes.move("acme", n.id, (NoteStatus.TRANSCRIBING,), NoteStatus.FAILED)
    got = notes.get("acme", n.id)
    assert got is not None and got.status is NoteStatus.DRAFT
    assert got.transcript == "E404 again"
    assert notes.get("globex", n.id) is None


def test_recover_requeues_or_fails_after_repeated_crashes(node: EdgeNode) -> None:
    notes = NoteTable(node.duck)
    cut, _ = notes.insert(_note("b" * 64, status=NoteStatus.TRANSCRIBING, attempts=1))
    poison, _ = notes.insert(_note("c" * 64, status=NoteStatus.TRANSCRIBING,
                                   attempts=MAX_ATTEMPTS))
    draft, _ = notes.insert(_note("d" * 64, status=NoteStatus.DRAFT, transcript="ok"))
    assert notes.recover(MAX_ATTEMPTS) == (1, 1)
    assert notes.pending(10, set()) == [("acme", cut.id)]
    failed = notes.get("acme", poison.id)
    assert failed is not None and failed.status is NoteStatus.FAILED
    assert failed.reason is not None and "restarted" in failed.reason
    kept = notes.get("acme", draft.id)
    assert kept is not None and kept.status is NoteStatus.DRAFT
