"""``rae-edge ingest PATH...``: manuals, error logs, shift reports and work orders in, with
a progress bar and a closing summary (added, skipped as duplicate, rejected with reason).

Exit status: 0 when every file was read (single rows may still be rejected, listed in the
summary), 1 when a whole file was rejected, 2 for a bad call (unknown machine, bad mapping).
The command opens the data folder itself: DuckDB lets one process write a file, so it
cannot run beside a live node on the same folder (that goes through the node's API).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import duckdb
from tqdm import tqdm

from rae_edge.cli import command, settings_from_args
from rae_edge.errors import ConflictError
from rae_edge.ingest.pipeline import KINDS, ingest_paths
from rae_edge.ingest.result import Progress
from rae_edge.node import EdgeNode


def _setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders")
    p.add_argument("--kind", choices=KINDS, default=None,
                   help="what the files are (default: from the mapping or the extension)")
    p.add_argument("--machine", default=None, metavar="ID",
                   help="the registered machine every item belongs to")
    p.add_argument("--mapping", type=Path, default=None, metavar="FILE",
                   help="YAML/JSON column mapping for CSV/JSON-lines files")
    p.add_argument("--timezone", default="UTC", metavar="ZONE",
                   help="zone of shift-report times, e.g. Europe/Berlin (default UTC)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def open_node(args: argparse.Namespace) -> EdgeNode:
    """Opens the data folder, or says clearly that a running node holds it."""
    settings = settings_from_args(args)
    try:
        return EdgeNode(settings)
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise
        raise ConflictError(
            f"the data folder {settings.data_dir} is in use by a running node (DuckDB lets "
            f"one process write it): upload through that node (POST /api/v1/documents) or "
            f"stop it first"
        ) from exc


class _Bar:
    """A tqdm bar whose total grows as files are parsed."""

    def __init__(self, enabled: bool) -> None:
        self.bar: Any = tqdm(total=0, unit="item", disable=not enabled, file=sys.stderr,
                             dynamic_ncols=True)

    def __call__(self, p: Progress) -> None:
        self.bar.total = max(p.items_total, p.items_done)
        self.bar.set_description(f"[{min(p.files_done + 1, p.files_total)}/{p.files_total}] "
                                 f"{Path(p.path).name[:30]}", refresh=False)
        self.bar.update(p.items_done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


@command("ingest", "ingest manuals (PDF), error logs and work orders (CSV/JSON lines) and "
                   "shift reports (text/Markdown)", _setup)
def ingest(args: argparse.Namespace) -> int:
    node = open_node(args)
    bar = _Bar(enabled=not args.no_progress and sys.stderr.isatty())
    try:
        result = ingest_paths(node, args.paths, kind=args.kind, machine_id=args.machine,
                              mapping=args.mapping, progress=bar,
                              timezone=args.timezone)
    finally:
        bar.close()
        node.close()
    print(result.summary())
    return 1 if any(f.file_rejected for f in result.files) else 0
