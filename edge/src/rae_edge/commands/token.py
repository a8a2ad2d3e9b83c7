"""``rae-edge token create|list|revoke``: API tokens (only their sha256 is ever stored).

- ``create --role R [--tenant T] [--name N]`` prints the new token alone on its last line;
- ``list`` shows each token's hash prefix, tenant, role, name and state (never a token);
- ``revoke HASH_PREFIX`` or ``revoke --all-for NAME`` revokes at once: the next request
  with that token is refused (authentication reads the table on every request).

When a running node holds the data folder, the command goes through that node's admin API
(``/api/v1/admin/tokens``) with an admin token from ``--token-file`` or
``$RAE_ADMIN_TOKEN`` (within that token's tenant).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import duckdb

from rae_edge.cli import command, settings_from_args
from rae_edge.config import EdgeSettings
from rae_edge.errors import ConflictError, InvalidInputError, NotFoundError
from rae_edge.node import EdgeNode
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


def add_live_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=None,
                   help="a running node's base URL (default: from the config's api section)")
    p.add_argument("--token-file", type=Path, default=None,
                   help="admin token for a running node (default: $RAE_ADMIN_TOKEN)")


def is_lock_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def call_live_node(settings: EdgeSettings, args: argparse.Namespace, method: str, path: str,
                   body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The data folder is held by a running node: ask that node (admin API)."""
    wildcard = settings.api.host in ("0.0.0.0", "::")  # noqa: S104 - a bind address we read
    host = "127.0.0.1" if wildcard else settings.api.host
    tls_on = (settings.data_dir / "tls" / "cert.pem").is_file()
    base = args.url or f"{'https' if tls_on else 'http'}://{host}:{settings.api.port}"
    url = base.rstrip("/") + path
    if not url.startswith(("http://", "https://")):
        raise ConflictError(f"--url must be an http(s) URL, not {url!r}")
    token = (args.token_file.read_text().strip() if args.token_file
             else os.environ.get("RAE_ADMIN_TOKEN", ""))
    held = f"{settings.data_dir} is held by a running node"
    if not token:
        raise ConflictError(f"{held}; pass --token-file (an admin token) so the command goes "
                            f"through it at {url}, or stop the node first")
    req = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, data=json.dumps(body).encode() if body is not None else None, method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    ctx = None
    if url.startswith("https://") and tls_on and args.url is None:
        import ssl

        # our own node's self-signed certificate, read from its data folder
        ctx = ssl.create_default_context(cafile=str(settings.data_dir / "tls" / "cert.pem"))
    try:
        with urllib.request.urlopen(req, timeout=600, context=ctx) as resp:  # noqa: S310
            answer: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:500].decode("utf-8", "replace")
        if exc.code == 404 and "not_found" in detail and "no live token" not in detail:
            raise NotFoundError(detail) from exc
        raise ConflictError(f"{held}; {url} answered {exc.code}: {detail}") from exc
    except urllib.error.URLError as exc:
        raise ConflictError(f"{held}, and it does not answer at {url}: {exc.reason}") from exc
    return answer


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
    try:
        node = EdgeNode(settings)
    except duckdb.IOException as exc:
        if not is_lock_conflict(exc):
            raise
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
                             {"role": args.role, "name": args.name})
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
