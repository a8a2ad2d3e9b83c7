"""PDF manuals to page-aware chunks that keep their section headings.

Text comes from pypdf page by page. A heading (a numbered line such as "4.2 Sensor
faults", "Chapter 3 ...", or a short line in capitals) starts a new section; the
section path ("4 Troubleshooting > 4.2 Sensor faults") carries across pages until the
next heading. A chunk never spans two pages and holds at most about ``max_words``
words, cut at a sentence end where possible, so it fits the embedder's 256 tokens.
Lines repeated on most pages (running headers and footers) are dropped.

A corrupt PDF, one that needs a password, or one without any extractable text (a scan)
is rejected with its reason; a single page that fails is rejected alone.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError, PyPdfError

from rae_edge.ingest.result import RejectedFileError, Rejection

MAX_WORDS = 150

_NUMBERED = re.compile(r"^(\d{1,2}(?:\.\d{1,2}){0,3})\.?\s+([A-Z][^.:;]{1,78})$")
_CHAPTER = re.compile(r"^(chapter|section|part|appendix)\s+[\dA-Z]+\b.{0,70}$", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?:]$")


@dataclass
class PdfChunk:
    page: int
    section: str
    text: str


@dataclass
class ParsedPdf:
    title: str
    pages: int
    chunks: list[PdfChunk] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def _heading(line: str) -> tuple[int, str] | None:
    """(level, text) when ``line`` looks like a heading."""
    if len(line) > 80 or len(line.split()) > 10:
        return None
    m = _NUMBERED.match(line)
    if m and not re.search(r"\d\s*(mm|nm|bar|kg|v|a|hz|rpm|%)\b", line, re.IGNORECASE):
        return m.group(1).count(".") + 1, line
    if _CHAPTER.match(line):
        return 1, line
    letters = [c for c in line if c.isalpha()]
    if (len(letters) >= 4 and all(c.isupper() for c in letters) and len(line.split()) <= 6
            and not _SENTENCE_END.search(line)):
        return 1, line
    return None


def _open(path: Path) -> PdfReader:
    try:
        with path.open("rb") as f:
            if not f.read(1024).lstrip().startswith(b"%PDF-"):
                raise RejectedFileError("not a PDF file (no %PDF- header): corrupt or misnamed")
        reader = PdfReader(str(path), strict=False)
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")  # owner-password-only PDFs open with an empty one
            except (DependencyError, NotImplementedError) as exc:
                raise RejectedFileError(f"encrypted PDF that cannot be decrypted ({exc})") from exc
            if not ok:
                raise RejectedFileError(
                    "encrypted PDF: it needs a password; save an unencrypted copy and ingest that"
                )
        _ = len(reader.pages)
        return reader
    except RejectedFileError:
        raise
    except FileNotDecryptedError as exc:
        raise RejectedFileError("encrypted PDF: it needs a password") from exc
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise RejectedFileError(f"corrupt PDF: {exc}") from exc


def _page_lines(reader: PdfReader, path: Path, rejected: list[Rejection]) -> list[list[str]]:
    pages: list[list[str]] = []
    for n, page in enumerate(reader.pages, start=1):
        try:
            text = page.extract_text() or ""
        except Exception as exc:  # a broken page must not lose the others
            rejected.append(Rejection(f"{path}, page {n}", f"cannot extract its text ({exc})"))
            text = ""
        pages.append([" ".join(line.split()) for line in text.splitlines() if line.strip()])
    return pages


def _running_lines(pages: list[list[str]]) -> set[str]:
    """Lines (digits ignored) found on most pages: running headers and footers."""
    if len(pages) < 3:
        return set()
    seen: Counter[str] = Counter()
    for lines in pages:
        seen.update({re.sub(r"\d+", "#", ln) for ln in lines})
    return {k for k, v in seen.items() if v >= max(3, len(pages) * 0.6)}


def parse_pdf(path: Path, max_words: int = MAX_WORDS) -> ParsedPdf:
    """Reads a manual into chunks. Raises :class:`RejectedFileError` for the whole file."""
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings become our reasons
    reader = _open(path)
    rejected: list[Rejection] = []
    pages = _page_lines(reader, path, rejected)
    meta_title = ""
    try:
        meta = reader.metadata
        meta_title = str(meta.title or "").strip() if meta is not None else ""
    except (PdfReadError, PyPdfError, ValueError):
        meta_title = ""
    out = ParsedPdf(title=meta_title or path.stem, pages=len(pages), rejected=rejected)
    running = _running_lines(pages)
    stack: list[tuple[int, str]] = []  # open headings by level

    def flush(page: int, buf: list[str]) -> None:
        text = " ".join(buf).strip()
        if text:
            out.chunks.append(PdfChunk(page, " > ".join(h for _, h in stack), text))
        buf.clear()

    for n, lines in enumerate(pages, start=1):
        buf: list[str] = []
        words = 0
        for raw in lines:
            if re.sub(r"\d+", "#", raw) in running:
                continue
            head = _heading(raw)
            if head:
                flush(n, buf)
                words = 0
                level, text = head
                stack[:] = [h for h in stack if h[0] < level] + [(level, text)]
                continue
            if buf and buf[-1].endswith("-") and raw[:1].islower():
                buf[-1] = buf[-1][:-1] + raw  # a word hyphenated across lines
            else:
                buf.append(raw)
            words += len(raw.split())
            if words >= max_words and (_SENTENCE_END.search(raw) or words >= max_words * 1.4):
                flush(n, buf)
                words = 0
        flush(n, buf)
    if not out.chunks:
        raise RejectedFileError(
            "no extractable text (a scanned PDF? text recognition is not supported)"
        )
    return out
