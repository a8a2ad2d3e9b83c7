"""``rae-edge ingest PATH...``: manuals, error logs, shift reports and work orders in, with
a progress bar and a closing summary (added, skipped as duplicate, rejected with reason).

Exit status: 0 when every file was read (single rows may still be rejected, listed in the
summary), 1 when a whole file was rejected, 2 for a bad call (unknown machine, bad mapping).
The command opens the data folder itself. When a running node holds it (DuckDB lets one
process write a file), each file is uploaded to that node instead (``POST
/api/v1/documents``, then ``GET /api/v1/jobs/{id}`` until done) over its local admin
channel (no token), or over HTTP(S) with ``--url``/``--token-file`` (a supervisor or admin
token); ``--mapping`` needs the direct path (the upload takes none).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
from tqdm import tqdm

from rae_edge.commands.live_node import (
    add_live_args,
    call_live_node,
    is_lock_conflict,
    open_unless_held,
    upload_to_live_node,
)
from rae_edge.commands.registry import command, settings_from_args
from rae_edge.config import EdgeSettings
from rae_edge.errors import ConflictError
from rae_edge.ingest.pipeline import KINDS, detect_kind, expand_paths, ingest_paths
from rae_edge.ingest.result import Progress, RejectedFileError
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
    add_live_args(p)


def open_node(args: argparse.Namespace, what: str) -> EdgeNode:
    """Opens the data folder, or says clearly that a running node holds it."""
    settings = settings_from_args(args)
    try:
        return EdgeNode(settings)
    except duckdb.IOException as exc:
        if not is_lock_conflict(exc):
            raise
        raise ConflictError(
            f"the data folder {settings.data_dir} is in use by a running node (DuckDB lets "
            f"one process write it): stop the node, then {what}"
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
    settings = settings_from_args(args)
    node = open_unless_held(settings)
    if node is None:
        return _ingest_live(settings, args)
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


# -- through a running node ---------------------------------------------------------------
def _ingest_live(settings: EdgeSettings, args: argparse.Namespace) -> int:
    if args.mapping is not None:
        raise ConflictError(
            f"{settings.data_dir} is held by a running node, and --mapping needs direct "
            f"access (the upload API takes no mapping): stop the node first")
    files, missing = expand_paths(args.paths)
    lines = [f"{r}" for r in missing]
    added = duplicates = rejected = 0
    whole_file_rejected = bool(missing)
    for path in files:
        try:
            kind = detect_kind(path, args.kind, None)
        except RejectedFileError as exc:
            lines.append(f"{path}: {exc}")
            rejected += 1
            whole_file_rejected = True
            continue
        fields = {"kind": kind, **({"machine_id": args.machine} if args.machine else {})}
        job = upload_to_live_node(settings, args, "/api/v1/documents", fields, path)
        while job["status"] not in ("done", "failed"):
            time.sleep(0.5)
            job = call_live_node(settings, args, "GET", f"/api/v1/jobs/{job['id']}")
        if job["status"] == "failed":
            lines.append(f"{path}: the node's ingest job failed: {job.get('error')}")
            whole_file_rejected = True
            continue
        res = job["result"] or {}
        added += int(res.get("added", 0))
        duplicates += int(res.get("duplicates", 0))
        rejected += int(res.get("rejected", 0))
        whole_file_rejected |= any(r.get("source") == path.name
                                   for r in res.get("rejections", []))
        lines.append(str(res.get("summary", "")))
    print(f"{len(files) + len(missing)} file(s) through the running node: added {added}, "
          f"skipped {duplicates} as duplicate, rejected {rejected}")
    print("\n".join(lines))
    return 1 if whole_file_rejected else 0
