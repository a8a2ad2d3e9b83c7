"""A scanned QR payload to a registered machine.

A payload may be (tried in this order):
1. a machine's registered ``qr_code`` or its id;
2. the plant's own label format, ``settings.qr.label_pattern``: a regex with a named group
   ``id`` (e.g. ``^PLANT1/(?P<id>[A-Z0-9-]+)/\\d+$``);
3. a URL that ends in the machine id (``https://node.local/m/PRESS-07``), or names it in
   its query (``?machine=PRESS-07``) or fragment (``#PRESS-07``).

Lookups are within one tenant; an unknown code is a :class:`NotFoundError` that names it.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import parse_qs, unquote, urlsplit

from rae_edge.config import QrSettings
from rae_edge.errors import InvalidInputError, NotFoundError
from rae_edge.store.duck import DuckStore
from rae_sync.domain import Machine

MAX_PAYLOAD = 2000
_QUERY_KEYS = ("machine_id", "machine", "m", "id", "code", "qr")


@lru_cache(maxsize=8)
def _compile(pattern: str) -> re.Pattern[str]:
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise InvalidInputError(f"settings qr.label_pattern is not a valid regex: {exc}") \
            from exc
    if "id" not in rx.groupindex:
        raise InvalidInputError("settings qr.label_pattern needs a named group (?P<id>...)")
    return rx


def candidates(payload: str, settings: QrSettings | None = None) -> list[str]:
    """Machine ids or codes a payload may stand for, most specific first."""
    out = [payload]
    if settings is not None and settings.label_pattern:
        m = _compile(settings.label_pattern).search(payload)
        if m and m.group("id"):
            out.append(m.group("id"))
    if "/" in payload or "#" in payload or "?" in payload:
        parts = urlsplit(payload)
        query = parse_qs(parts.query)
        for key in _QUERY_KEYS:
            out.extend(query.get(key, []))
        if parts.fragment:
            out.append(unquote(parts.fragment.rstrip("/").rsplit("/", 1)[-1]))
        segments = [s for s in parts.path.split("/") if s]
        if segments:
            out.append(unquote(segments[-1]))
    return [c.strip() for c in dict.fromkeys(out) if c.strip()]


def resolve(duck: DuckStore, tenant_id: str, payload: str,
            settings: QrSettings | None = None) -> Machine:
    """The tenant's machine a QR payload (or typed code) names."""
    payload = payload.strip()
    if not payload:
        raise InvalidInputError("empty QR code: scan the label again or type the machine id")
    if len(payload) > MAX_PAYLOAD:
        raise InvalidInputError(f"QR code too long ({len(payload)} characters)")
    for cand in candidates(payload, settings):
        found = duck.find_machine_by_qr(tenant_id, cand)
        if found is not None:
            return found
    raise NotFoundError(f"no machine with the QR code or id {payload!r} is registered on "
                        f"this node (register it with POST /api/v1/machines)")
