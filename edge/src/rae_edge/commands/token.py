"""``rae-edge token create|list|revoke``: API tokens (only their sha256 is ever stored).

- ``create --role R [--tenant T] [--name N]`` prints the new token alone on its last line;
- ``list`` shows each token's hash prefix, tenant, role, name and state (never a token);
- ``revoke HASH_PREFIX`` or ``revoke --all-for NAME`` revokes at once: the next request
  with that token is refused (authentication reads the table on every request).

When a running node holds the data folder, the command goes through that node's admin API
(``/api/v1/admin/tokens``): over its local admin channel with no token (as admin of the
node's tenant; this is how the first token of a running node is made), or over HTTP(S)
with ``--url``/``--token-file`` (within that token's tenant).
"""

from __future__ import annotations

import argparse
import sys

from rae_edge.commands.live_node import add_live_args, call_live_node, open_unless_held
from rae_edge.commands.registry import command, settings_from_args
from rae_edge.config import EdgeSettings
from rae_edge.errors import InvalidInputError, NotFoundError
from rae_edge.store.duck import DuckStore
from rae_edge.tokens import create_token, revoke_token
from rae_sync.domain import Role

MIN_PREFIX = 8  # shorter prefixes are too easy to mistype into the wrong token
SHOWN_PREFIX = 12


def _setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("hash_prefix", nargs="?", default=None,
                   help=f"revoke: the token's hash prefix from 'token list' (>= {MIN_PREFIX})")
    p.add_argument("--role", default=None, choices=[r.value for r in Role],
                   help="create: the token's role")
    p.add_argument("--tenant", default=None, help="tenant (default: the node's)")
    p.add_argument("--name", default="", help="create: who or what the token is for")
    p.add_argument("--all-for", default=None, metavar="NAME",
                   help="revoke: every live token with this name")
    add_live_args(p)


def list_tokens(duck: DuckStore, tenant: str | None = None) -> list[dict[str, str]]:
    sql = ("SELECT hash, tenant_id, role, name, created_at, revoked_at FROM tokens"
           + (" WHERE tenant_id = ?" if tenant else "") + " ORDER BY created_at, hash")
    out = []
    for h, t, role, name, created, revoked in duck.query(sql, [tenant] if tenant else []):
        out.append({"hash_prefix": str(h)[:SHOWN_PREFIX], "tenant": str(t), "role": str(role),
                    "name": str(name), "created_at": created.isoformat(timespec="seconds"),
                    "state": "revoked" if revoked else "live"})
    return out


def revoke(duck: DuckStore, hash_prefix: str | None = None, all_for: str | None = None,
           tenant: str | None = None) -> list[str]:
    """Revokes by hash prefix (exactly one live token must match) or every live token of
    a name; returns the revoked hash prefixes. Raises when nothing or too much matches."""
    if (hash_prefix is None) == (all_for is None):
        raise InvalidInputError("revoke needs either a HASH_PREFIX or --all-for NAME")
    where = "revoked_at IS NULL"
    params: list[str] = []
    if tenant:
        where += " AND tenant_id = ?"
        params.append(tenant)
    if hash_prefix is not None:
        prefix = hash_prefix.strip().lower()
        if len(prefix) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in prefix):
            raise InvalidInputError(
                f"hash prefix {hash_prefix!r}: give at least {MIN_PREFIX} hex digits "
                "as shown by 'rae-edge token list'")
        hashes = [str(r[0]) for r in duck.query(
            f"SELECT hash FROM tokens WHERE {where} AND starts_with(hash, ?)", [*params, prefix])]
        if len(hashes) > 1:
            raise InvalidInputError(
                f"hash prefix {prefix!r} matches {len(hashes)} live tokens: give more digits")
        if not hashes:
            raise NotFoundError(f"no live token has a hash starting with {prefix!r}")
    else:
        hashes = [str(r[0]) for r in duck.query(
            f"SELECT hash FROM tokens WHERE {where} AND name = ?", [*params, str(all_for)])]
        if not hashes:
            raise NotFoundError(f"no live token is named {all_for!r}")
    return [h[:SHOWN_PREFIX] for h in hashes if revoke_token(duck, h)]


@command("token", "create, list or revoke API tokens", _setup)
def token(args: argparse.Namespace) -> int:
    if args.action == "create" and args.role is None:
        raise InvalidInputError("token create needs --role " + "|".join(r.value for r in Role))
    settings = settings_from_args(args)
    node = open_unless_held(settings)
    if node is None:
        return _via_live_node(settings, args)
    try:
        if args.action == "create":
            tenant = args.tenant or node.tenant_id
            tok = create_token(node.duck, tenant, Role(args.role), args.name)
            _print_created(args.role, tenant, tok)
        elif args.action == "list":
            _print_list(list_tokens(node.duck, args.tenant))
        else:
            _print_revoked(revoke(node.duck, args.hash_prefix, args.all_for, args.tenant))
    finally:
        node.close()
    return 0


def _via_live_node(settings: EdgeSettings, args: argparse.Namespace) -> int:
    if args.action == "create":
        got = call_live_node(settings, args, "POST", "/api/v1/admin/tokens",
                             {"role": args.role, "name": args.name,
                              **({"tenant": args.tenant} if args.tenant else {})})
        _print_created(got["role"], got["tenant"], got["token"])
    elif args.action == "list":
        _print_list(call_live_node(settings, args, "GET", "/api/v1/admin/tokens")["tokens"])
    else:
        body = {"hash_prefix": args.hash_prefix, "all_for": args.all_for}
        _print_revoked(call_live_node(settings, args, "POST", "/api/v1/admin/tokens/revoke",
                                      body)["revoked"])
    return 0


def _print_created(role: str, tenant: str, tok: str) -> None:
    print(f"created a {role} token for tenant {tenant}:")
    print(tok)


def _print_list(rows: list[dict[str, str]]) -> None:
    print(f"{'HASH':<{SHOWN_PREFIX}}  {'TENANT':<16} {'ROLE':<10} {'STATE':<7} "
          f"{'CREATED':<25} NAME")
    for r in rows:
        print(f"{r['hash_prefix']:<{SHOWN_PREFIX}}  {r['tenant']:<16} {r['role']:<10} "
              f"{r['state']:<7} {r['created_at']:<25} {r['name']}")


def _print_revoked(done: list[str]) -> None:
    for h in done:
        print(f"revoked {h}")
    print(f"{len(done)} token(s) revoked", file=sys.stderr)
