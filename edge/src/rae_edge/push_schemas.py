"""The JSON Schemas of every push kind (:mod:`rae_edge.push_kinds` and the kinds defined
beside their feature, such as ``alarm`` in :mod:`rae_edge.alarms.push`): generated, and
written to ``sync/schemas/push/`` by ``scripts/check_schemas.py --write``.

Apart from :mod:`rae_edge.push_kinds` so that module imports no feature (``alarms.push``
builds on it: importing it back would make a circle).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rae_edge.alarms.push import AlarmPush
from rae_edge.push_kinds import PUSH_CLASSES, PushBody
from rae_sync.schemas import render, write_all

__all__ = ["all_push_classes", "generate", "render", "write"]


def all_push_classes() -> tuple[type[PushBody], ...]:
    """:data:`~rae_edge.push_kinds.PUSH_CLASSES` and the kinds defined beside their
    feature (``alarm`` in :mod:`rae_edge.alarms.push`)."""
    return (*PUSH_CLASSES, AlarmPush)


def generate() -> dict[str, dict[str, Any]]:
    """Every push kind's JSON Schema by file name (``correction.json``)."""
    out: dict[str, dict[str, Any]] = {}
    for cls in all_push_classes():
        schema = cls.model_json_schema()
        schema["$comment"] = (f"'data' of a tablet push message with type '{cls.TYPE}' "
                              "(WS /api/v1/push)")
        out[f"{cls.TYPE}.json"] = schema
    return out


def write(folder: Path) -> list[Path]:
    """Writes every push schema into ``folder`` and removes stale ``*.json`` there."""
    return write_all(folder, generate())
