"""The committed JSON Schemas of every tablet push kind (``sync/schemas/push/``).

Apart from :mod:`rae_edge.push_kinds` because it also gathers the kinds defined beside
their feature (``alarm``: :mod:`rae_edge.alarms.push`, built on the memory models), which
the write path and the push kinds themselves must not import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rae_edge.alarms.push import AlarmPush
from rae_edge.push_kinds import PUSH_CLASSES, PushBody, render

#: every kind a tablet may receive
ALL_PUSH_CLASSES: tuple[type[PushBody], ...] = (*PUSH_CLASSES, AlarmPush)


def generate() -> dict[str, dict[str, Any]]:
    """Every push kind's JSON Schema by file name (``correction.json``)."""
    out: dict[str, dict[str, Any]] = {}
    for cls in ALL_PUSH_CLASSES:
        schema = cls.model_json_schema()
        schema["$comment"] = (f"'data' of a tablet push message with type '{cls.TYPE}' "
                              "(WS /api/v1/push)")
        out[f"{cls.TYPE}.json"] = schema
    return out


def write(folder: Path) -> list[Path]:
    """Writes every push schema into ``folder`` and removes stale ``*.json`` there."""
    folder.mkdir(parents=True, exist_ok=True)
    schemas = generate()
    for old in folder.glob("*.json"):
        if old.name not in schemas:
            old.unlink()
    paths = []
    for name, schema in schemas.items():
        path = folder / name
        path.write_text(render(schema), encoding="utf-8")
        paths.append(path)
    return paths
