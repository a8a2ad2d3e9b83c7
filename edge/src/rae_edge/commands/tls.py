"""``rae-edge tls create``: the tablet API's self-signed HTTPS certificate
(``DATA_DIR/tls/cert.pem`` and ``key.pem``), which ``rae-edge serve`` then uses."""

from __future__ import annotations

import argparse

from rae_edge import tls
from rae_edge.commands.registry import command, settings_from_args


def _setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["create"])
    p.add_argument("--host", action="append", default=[],
                   help="a name or address tablets use to reach the node (repeatable)")
    p.add_argument("--days", type=int, default=tls.VALID_DAYS, help="validity in days")
    p.add_argument("--force", action="store_true", help="replace an existing certificate")


@command("tls", "create the tablet API's HTTPS certificate", _setup)
def tls_command(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    hosts = [*args.host, settings.api.host]
    files = tls.create_self_signed(tls.default_paths(settings.data_dir), hosts, args.days,
                                   overwrite=args.force)
    print(f"certificate {files.cert}\nkey {files.key} (mode 0600)")
    return 0
