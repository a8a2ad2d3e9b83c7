"""``rae-edge token create``: prints a new API token (alone on its last line)."""

from __future__ import annotations

import argparse

from rae_edge.cli import command, settings_from_args
from rae_edge.node import EdgeNode
from rae_edge.tokens import create_token
from rae_sync.domain import Role


def _setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["create"])
    p.add_argument("--role", required=True, choices=[r.value for r in Role])
    p.add_argument("--tenant", default=None, help="tenant (default: the node's)")
    p.add_argument("--name", default="", help="who or what the token is for")


@command("token", "manage API tokens", _setup)
def token(args: argparse.Namespace) -> int:
    node = EdgeNode(settings_from_args(args))
    try:
        tok = create_token(node.duck, args.tenant or node.tenant_id, Role(args.role), args.name)
    finally:
        node.close()
    print(f"created a {args.role} token for tenant {args.tenant or node.tenant_id}:")
    print(tok)
    return 0
