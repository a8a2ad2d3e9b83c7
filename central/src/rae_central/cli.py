"""``rae-central``: serve, worker, migrate, enroll, revoke, audit verify.

``migrate``, ``enroll``, ``revoke`` and ``audit verify`` connect with ``--database-url``
(the owner; these are the operator's commands); ``serve`` and ``worker`` with the
application's login role (``--app-database-url``, or ``--database-url``'s server as
``app_role``), which ``migrate`` creates and row-level security binds
(:mod:`rae_central.rls`).

Every command takes ``--database-url`` and ``--config FILE``; settings come from the file,
then ``RAE_CENTRAL_*`` environment variables, then flags.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from rae_central import config


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="YAML or TOML settings file")
    p.add_argument("--database-url", default=None,
                   help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host:5432/rae")
    p.add_argument("--signing-key", type=Path, default=None,
                   help="central's Ed25519 signing key file (created if missing)")


def _settings(args: argparse.Namespace, **extra: Any) -> config.CentralSettings:
    return config.load(args.config, database_url=args.database_url,
                       signing_key_file=args.signing_key, **extra)


def _node_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenant", required=True)
    p.add_argument("--site", required=True)
    p.add_argument("--node", required=True)


def cmd_migrate(args: argparse.Namespace) -> int:
    from rae_central.db import migrate

    s = _settings(args)
    role, password = s.app_login()
    rev = migrate.upgrade(s.database_url, app_role=role, app_password=password)
    print(f"database at schema revision {rev}; the application connects as {role!r} "
          "(a member of rae_app: row-level security binds it)")
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    from rae_central.enroll import enroll

    s = _settings(args)
    path = enroll(s, (args.tenant, args.site, args.node), args.out, force=args.force)
    print(f"enrolled {args.tenant}/{args.site}/{args.node}; identity written to {path} "
          "(keep it secret: it holds the node's signing key)")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from rae_central.db.engine import make_engine
    from rae_central.store import CentralStore

    s = _settings(args)
    engine = make_engine(s.database_url, pool_size=1)
    at = CentralStore(engine).revoke((args.tenant, args.site, args.node))
    engine.dispose()
    print(f"revoked {args.tenant}/{args.site}/{args.node} at {at.isoformat()}")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Verifies every node's synced audit chain in full; exit 1 on any break."""
    from rae_central.audit_verify import verify
    from rae_central.db.engine import make_engine
    from rae_central.store import CentralStore

    s = _settings(args)
    engine = make_engine(s.database_url, pool_size=1)
    try:
        results = verify(CentralStore(engine), args.tenant)
    finally:
        engine.dispose()
    for r in results:
        print(f"{r.node}: {r.line()}")
    broken = [r for r in results if not r.ok]
    if not results:
        print("no nodes to verify" + (f" for tenant {args.tenant!r}" if args.tenant else ""))
    elif broken:
        print(f"{len(broken)} of {len(results)} audit chains broken", file=sys.stderr)
    return 1 if broken else 0


def _ingest_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"mqtt_url": args.mqtt_url, "app_database_url": args.app_database_url,
            "ingest": {"workers": getattr(args, "workers", None)}}


def _app_url_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--app-database-url", default=None,
                   help="URL of the application's login role (default: --database-url's "
                   "server and database as app_role, which `migrate` creates)")


def cmd_worker(args: argparse.Namespace) -> int:
    from rae_central.worker import run_worker

    s = _settings(args, **_ingest_overrides(args))
    if not s.mqtt_url:
        print("error: a worker needs --mqtt-url (or mqtt_url in the settings)", file=sys.stderr)
        return 2
    run_worker(s, args.index)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from rae_central.serve import serve

    s = _settings(args, **_ingest_overrides(args),
                  vectors={"qdrant": args.qdrant},
                  admin={"host": args.host, "port": args.port})
    return serve(s)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rae-central", description="RAE central")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="create or upgrade the database schema")
    _common(p)
    p.set_defaults(handler=cmd_migrate)

    p = sub.add_parser("serve", help="ingest workers, vector indexer and the admin console")
    _common(p)
    p.add_argument("--qdrant", default=None, help="Qdrant URL, or a local folder / :memory:")
    p.add_argument("--mqtt-url", default=None, help="mqtt://host:port of the broker")
    p.add_argument("--host", default=None, help="address of the admin console")
    p.add_argument("--port", type=int, default=None, help="port of the admin console")
    p.add_argument("--workers", type=int, default=None, help="ingest worker processes")
    _app_url_arg(p)
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("worker", help="one ingest worker (no console), e.g. on another host")
    _common(p)
    p.add_argument("--mqtt-url", default=None, help="mqtt://host:port of the broker")
    p.add_argument("--index", type=int, default=0,
                   help="worker number: its MQTT session is {share_group}-{index}")
    _app_url_arg(p)
    p.set_defaults(handler=cmd_worker)

    p = sub.add_parser("enroll", help="issue a node's identity and register its key")
    _common(p)
    _node_args(p)
    p.add_argument("--out", type=Path, required=True, help="identity file to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(handler=cmd_enroll)

    p = sub.add_parser("revoke", help="refuse a node's messages from now on")
    _common(p)
    _node_args(p)
    p.set_defaults(handler=cmd_revoke)

    p = sub.add_parser("audit", help="the edges' synced audit logs")
    audit = p.add_subparsers(dest="audit_command", required=True)
    p = audit.add_parser("verify", help="verify every node's audit hash chain in full "
                         "(exit 1 if any is broken)")
    _common(p)
    p.add_argument("--tenant", default=None, help="only this tenant's nodes")
    p.set_defaults(handler=cmd_audit_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except Exception as exc:  # one clear line for the operator, not a traceback
        from pydantic import ValidationError

        from rae_central.db.migrate import SchemaMismatchError
        from rae_central.rls import PrivilegedRoleError
        from rae_central.store import NodeNotFoundError

        if isinstance(exc, SchemaMismatchError | NodeNotFoundError | ValidationError |
                      FileExistsError | ValueError | PrivilegedRoleError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
