"""What an ingest run did: added, skipped as duplicate, rejected (with the reason), per
file; and the progress events it reports while it runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class RejectedFileError(Exception):
    """A whole file cannot be ingested; the message is the reason shown to the user."""


@dataclass(frozen=True)
class Rejection:
    """One file or row that was not ingested, and why."""

    source: str  # a file path, or "path, row N" / "path, page N" / "path, lines A-B"
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass
class FileResult:
    """The outcome for one file."""

    path: str
    kind: str
    document_id: str | None = None
    added: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    machines_created: list[str] = field(default_factory=list)

    @property
    def file_rejected(self) -> bool:
        """True when the file as a whole was refused (nothing of it stored)."""
        return any(r.source == self.path for r in self.rejected)


@dataclass
class IngestResult:
    """The outcome of one :func:`rae_edge.ingest.ingest_paths` call."""

    files: list[FileResult] = field(default_factory=list)

    @property
    def added(self) -> int:
        return sum(f.added for f in self.files)

    @property
    def duplicates(self) -> int:
        return sum(f.duplicates for f in self.files)

    @property
    def rejected(self) -> list[Rejection]:
        return [r for f in self.files for r in f.rejected]

    def summary(self, max_rejections: int = 50) -> str:
        """The closing summary the CLI prints (and the HTTP job returns as text)."""
        n_files = len(self.files)
        bad_files = sum(1 for f in self.files if f.file_rejected)
        lines = [
            f"{n_files} file(s): added {self.added}, skipped {self.duplicates} as duplicate, "
            f"rejected {len(self.rejected)}"
            + (f" (of which {bad_files} whole file(s))" if bad_files else "")
        ]
        for f in self.files:
            if not f.file_rejected:
                lines.append(f"  {f.path} [{f.kind}]: added {f.added}, duplicates {f.duplicates}"
                             + (f", rejected {len(f.rejected)}" if f.rejected else "")
                             + (f", new machines {', '.join(f.machines_created)}"
                                if f.machines_created else ""))
        rejected = self.rejected
        if rejected:
            lines.append("rejected:")
            lines.extend(f"  {r}" for r in rejected[:max_rejections])
            if len(rejected) > max_rejections:
                lines.append(f"  ... and {len(rejected) - max_rejections} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the HTTP job's result)."""
        return {
            "added": self.added,
            "duplicates": self.duplicates,
            "rejected": [{"source": r.source, "reason": r.reason} for r in self.rejected],
            "files": [
                {"path": f.path, "kind": f.kind, "document_id": f.document_id, "added": f.added,
                 "duplicates": f.duplicates, "rejected": len(f.rejected),
                 "machines_created": f.machines_created}
                for f in self.files
            ],
        }


@dataclass(frozen=True)
class Progress:
    """Reported while ingesting: which file, and items (rows, chunks) done of those known."""

    path: str
    files_done: int
    files_total: int
    items_done: int
    items_total: int


ProgressFn = Callable[[Progress], None]
