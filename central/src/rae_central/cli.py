"""``rae-central``: serve, worker, migrate, enroll, revoke, audit verify, pki init,
broker-config.

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

    s = _settings(args, mqtt_url=args.mqtt_url, allow_plain_mqtt=args.allow_plain_mqtt)
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


def cmd_pki_init(args: argparse.Namespace) -> int:
    """The CA, the broker's server certificate and central's client certificate."""
    from rae_central.pki import PkiLayout

    layout = PkiLayout(args.dir)
    layout.init(args.host)
    print(f"CA in {layout.ca_dir} (keep ca.key on central only); broker certificate for "
          f"{', '.join(args.host)} in {layout.root / 'broker'}; central's client "
          f"certificate in {layout.root / 'central'}. Next: set "
          f"RAE_CENTRAL_MQTT_PKI_DIR={args.dir} and RAE_CENTRAL_MQTT_URL=mqtts://"
          f"{args.host[0]}:8883, enroll the nodes, then `rae-central broker-config`")
    return 0


def cmd_broker_config(args: argparse.Namespace) -> int:
    """mosquitto.conf + dynsec.json for the enrolled nodes (run again after each enroll
    or revoke)."""
    from rae_central.broker_setup import write_broker_config

    s = _settings(args, mqtt_pki_dir=args.pki_dir)
    conf = write_broker_config(s, args.out, port=args.port, bind=args.bind,
                               run_as=args.run_as)
    print(f"broker configuration written to {conf} (start: mosquitto -c {conf})")
    return 0


def _ingest_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"mqtt_url": args.mqtt_url, "app_database_url": args.app_database_url,
            "allow_plain_mqtt": args.allow_plain_mqtt,
            "ingest": {"workers": getattr(args, "workers", None)}}


def _plain_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-plain-mqtt", action="store_true", default=None,
                   help="accept an mqtt:// (no TLS) broker URL on loopback (tests, demos)")


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
    _plain_arg(p)
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("worker", help="one ingest worker (no console), e.g. on another host")
    _common(p)
    p.add_argument("--mqtt-url", default=None, help="mqtt://host:port of the broker")
    p.add_argument("--index", type=int, default=0,
                   help="worker number: its MQTT session is {share_group}-{index}")
    _app_url_arg(p)
    _plain_arg(p)
    p.set_defaults(handler=cmd_worker)

    p = sub.add_parser("enroll", help="issue a node's identity and register its key")
    _common(p)
    _node_args(p)
    p.add_argument("--out", type=Path, required=True, help="identity file to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--mqtt-url", default=None, help="the broker URL written into the "
                   "identity (default: mqtt_url of the settings)")
    _plain_arg(p)
    p.set_defaults(handler=cmd_enroll)

    p = sub.add_parser("pki", help="central's MQTT certificates")
    pki = p.add_subparsers(dest="pki_command", required=True)
    p = pki.add_parser("init", help="make the CA (kept if present), the broker's server "
                       "certificate and central's client certificate")
    p.add_argument("--dir", type=Path, required=True, help="folder for the certificates")
    p.add_argument("--host", action="append", required=True,
                   help="a name or address the nodes dial the broker by (repeatable)")
    p.set_defaults(handler=cmd_pki_init)

    p = sub.add_parser("broker-config", help="write mosquitto.conf and its dynamic-security "
                       "file (TLS, client certificates, per-node topics and client ids)")
    _common(p)
    p.add_argument("--pki-dir", type=Path, default=None, help="as made by `pki init` "
                   "(default: mqtt_pki_dir of the settings)")
    p.add_argument("--out", type=Path, required=True, help="folder to write into")
    p.add_argument("--port", type=int, default=8883, help="the broker's TLS port")
    p.add_argument("--bind", default="0.0.0.0", help="address the broker listens on")  # noqa: S104
    p.add_argument("--run-as", default=None, help="user mosquitto runs as (default: you)")
    p.set_defaults(handler=cmd_broker_config)

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
