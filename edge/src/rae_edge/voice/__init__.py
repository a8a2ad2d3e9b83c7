"""Voice notes: a technician's spoken note, transcribed on the node, becomes a correction.

Modules:
- ``audio``: decodes an upload with ``av`` and refuses what is not usable audio (empty,
  corrupt, not audio, unsupported container, too long, silent), naming the problem;
- ``audio_store``: :class:`AudioStore`, the content-addressed, fsynced folder of originals;
- ``notes``: the ``voice_notes`` table and its status moves;
- ``vocabulary``: a machine's error codes, part references and terms, as Whisper's prompt;
- ``transcriber``: faster-whisper (packaged tiny.en or base, int8 on CPU, VAD on);
- ``worker``: :class:`TranscriptionWorker`, the background thread with a bounded queue;
- ``service``: :class:`VoiceService` (``node.voice``), upload -> transcript -> confirmed
  correction (stored with its outbox row, indexed, pushed).
"""

from rae_edge.voice.audio import AudioRejectedError
from rae_edge.voice.notes import NoteStatus, VoiceNote
from rae_edge.voice.service import Uploader, VoiceService

__all__ = ["AudioRejectedError", "NoteStatus", "Uploader", "VoiceNote", "VoiceService"]
