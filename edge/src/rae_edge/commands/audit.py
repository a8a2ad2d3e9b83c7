"""``rae-edge audit verify|tail``: check the audit log's hash chain, or show its end.

``verify`` exits 0 when the chain is whole and 1 on any break, naming the first broken
``seq`` and what is wrong there. When a running node holds the data folder, ``verify``
asks that node (``GET /api/v1/admin/audit/verify``) over its local admin channel (the
node's tenant), or over HTTP(S) with ``--url``/``--token-file`` (that token's tenant).
"""

from __future__ import annotations

import argparse
import json
import sys

import duckdb

from rae_edge.audit import AuditLog, VerifyReport
from rae_edge.commands.live_node import add_live_args, call_live_node, is_lock_conflict
from rae_edge.commands.registry import command, settings_from_args
from rae_edge.store.duck import DuckStore


def _setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["verify", "tail"])
    p.add_argument("-n", type=int, default=20, help="tail: how many entries (default 20)")
    p.add_argument("--tenant", default=None, help="tail: only this tenant's entries")
    add_live_args(p)


@command("audit", "verify or show the append-only audit log", _setup)
def audit(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    # Only the relational store is needed: the vector store is not opened.
    try:
        duck = DuckStore(settings.data_dir / "node.duckdb")
    except duckdb.IOException as exc:
        if not is_lock_conflict(exc) or args.action != "verify":
            raise
        got = call_live_node(settings, args, "GET", "/api/v1/admin/audit/verify")
        return _print_report(VerifyReport(got["ok"], got["checked"], got["first_broken_seq"],
                                          got["reason"], {"(this tenant)": got["head_seq"] or 0}))
    try:
        log = AuditLog(duck)
        if args.action == "tail":
            total = int(duck.query("SELECT coalesce(max(seq), 0) FROM audit_log")[0][0])
            for e in log.entries(args.tenant, after_seq=max(0, total - args.n), limit=args.n):
                print(e.model_dump_json())
            return 0
        report = log.verify()
    finally:
        duck.close()
    return _print_report(report)


def _print_report(report: VerifyReport) -> int:
    if report.ok:
        heads = ", ".join(f"{t}@{s}" for t, s in sorted(report.heads.items())) or "empty"
        print(f"audit log intact: {report.checked} entries checked (heads: {heads})")
        return 0
    print(f"audit log BROKEN at seq {report.first_broken_seq}: {report.reason} "
          f"({report.checked} entries before it are intact)", file=sys.stderr)
    print(json.dumps({"ok": False, "first_broken_seq": report.first_broken_seq,
                      "reason": report.reason}))
    return 1
