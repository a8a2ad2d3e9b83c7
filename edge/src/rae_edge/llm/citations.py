"""Citations read back from an answer and checked against the pack that was sent.

An answer cites memories inline as ``[id]``. Any id that was not in the pack is removed
from the text and reported, so every citation left resolves to a memory the model saw.
A structured answer (``{"no_evidence", "sentences": [{"text", "cites"}]}``) is rendered
to the same inline form; :func:`visible_text` does that for a partial answer while it
streams, and only ever grows (anything not yet complete is held back).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

CITE = re.compile(r"\[([A-Za-z0-9][A-Za-z0-9_~.:\-]{2,100})\]")
_TEXT = re.compile(r'"text"\s*:\s*"((?:[^"\\]|\\.)*)("?)')
_CITES = re.compile(r'"cites"\s*:\s*\[([^\]]*)\]')
_OPEN_TAIL = re.compile(r"(\[[^\]\s]{0,101}|<[A-Z_0-9]{0,24})$")


@dataclass
class Checked:
    text: str
    cited: list[str] = field(default_factory=list)  # in order of first citation
    rejected: list[str] = field(default_factory=list)  # cited, not in the pack (removed)


def check(text: str, pack_ids: Collection[str]) -> Checked:
    out = Checked(text="")

    def keep(m: re.Match[str]) -> str:
        ident = m.group(1)
        if ident in pack_ids:
            if ident not in out.cited:
                out.cited.append(ident)
            return m.group(0)
        out.rejected.append(ident)
        return ""

    out.text = re.sub(r"[ \t]{2,}", " ", CITE.sub(keep, text)).strip()
    return out


def render(obj: Any) -> tuple[str, bool]:
    """A structured answer as inline-cited text, and its ``no_evidence`` flag."""
    if not isinstance(obj, dict):
        raise ValueError("the structured answer is not a JSON object")
    parts = []
    for s in obj.get("sentences") or []:
        if not isinstance(s, dict):
            continue
        text = str(s.get("text", "")).strip()
        cites = "".join(f" [{c}]" for c in s.get("cites") or [] if isinstance(c, str))
        if text or cites:
            parts.append(text + cites)
    return " ".join(parts), bool(obj.get("no_evidence"))


_CITES_SO_FAR = re.compile(r'\s*,\s*"cites"\s*:\s*\[([^\]]*)')
_QUOTED = re.compile(r'"([^"\\]+)"')
_NO_EVIDENCE = re.compile(r'"no_evidence"\s*:\s*(true|false)')


def parse_structured(raw: str) -> tuple[str, bool]:
    """The answer's text and ``no_evidence``. An answer cut off (``max_answer_tokens``) or
    otherwise not valid JSON keeps the sentences that were complete with their citations."""
    try:
        return render(json.loads(raw))
    except ValueError:
        pass
    sentences = []
    for t in _TEXT.finditer(raw):
        c = _CITES_SO_FAR.match(raw, t.end())
        if not t.group(2) or c is None:
            break
        ids = _QUOTED.findall(c.group(1))  # complete ids only, even in a cut-off list
        if ids:
            sentences.append({"text": _unescape(t.group(1)), "cites": ids})
    flag = _NO_EVIDENCE.search(raw)
    return render({"sentences": sentences,
                   "no_evidence": flag is not None and flag.group(1) == "true"})


def _unescape(partial: str) -> str:
    """A JSON string body that may end mid-escape: decode what is complete."""
    cut = partial
    while cut:
        try:
            return str(json.loads(f'"{cut}"'))
        except ValueError:
            cut = cut[:-1]
    return ""


def visible_text(raw: str, structured: bool, pack_ids: Collection[str],
                 restore: Callable[[str], str] = lambda s: s) -> str:
    """What may be shown of a partial answer ``raw``: rendered, unknown citations removed,
    placeholders restored, any unfinished ``[id`` or ``<PLACEHOLDER`` at the end held back."""
    if structured:
        texts = list(_TEXT.finditer(raw))
        cites = [json.loads(f"[{m.group(1)}]") if m.group(1).strip() else []
                 for m in _CITES.finditer(raw)]
        parts = []
        for n, m in enumerate(texts):
            piece = _unescape(m.group(1))
            if n < len(cites):
                piece += "".join(f" [{c}]" for c in cites[n])
            elif not m.group(2):  # the text is still streaming
                parts.append(piece)
                break
            else:  # text done, its cites not yet: hold back what follows
                parts.append(piece)
                break
            parts.append(piece)
        text = " ".join(parts)
    else:
        text = raw
    text = _OPEN_TAIL.sub("", text)
    return restore(CITE.sub(lambda m: m.group(0) if m.group(1) in pack_ids else "", text))
