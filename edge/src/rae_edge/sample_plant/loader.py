"""Loads the sample plant into a node (machines, manual, error log, shift book)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from rae_edge.ingest.mapping import load_mapping
from rae_edge.ingest.pipeline import ingest_paths
from rae_edge.ingest.result import IngestResult
from rae_sync.domain import Machine

if TYPE_CHECKING:
    from rae_edge.node import EdgeNode

SAMPLE_DIR = Path(__file__).parent


def sample_machines(tenant_id: str, site: str) -> list[Machine]:
    data = json.loads((SAMPLE_DIR / "machines.json").read_text(encoding="utf-8"))
    return [Machine(tenant_id=tenant_id, site=site, **m) for m in data]


def load_sample_plant(node: EdgeNode) -> str:
    """Registers the sample machines and ingests the sample files into ``node``; returns
    a one-line summary. Running it again adds nothing (everything is a duplicate)."""
    machines = sample_machines(node.tenant_id, node.settings.node.site_id)
    node.duck.upsert_machines(machines)
    result = IngestResult()
    for files, kwargs in (
        (["manual.pdf"], {"kind": "manual", "machine_id": "press-1"}),
        (["error_log.csv"], {"mapping": load_mapping(SAMPLE_DIR / "error_log.yaml")}),
        (["shift_report.md"], {"kind": "shift", "timezone": "Europe/Berlin"}),
    ):
        part = ingest_paths(node, [SAMPLE_DIR / f for f in files], **kwargs)
        result.files.extend(part.files)
    return (f"{len(machines)} machines; added {result.added}, skipped {result.duplicates} as "
            f"duplicate, rejected {len(result.rejected)}")
