"""API tokens: random secrets shown once; only their sha256 is stored."""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass, field

from rae_edge.store.duck import DuckStore
from rae_sync.domain import Role


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's tenant, role and name (never the token itself)."""

    tenant_id: str
    role: Role
    name: str
    token_hash: str

    def can(self, needed: Role) -> bool:
        order = [Role.TECHNICIAN, Role.SUPERVISOR, Role.ADMIN]
        return order.index(self.role) >= order.index(needed)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(duck: DuckStore, tenant_id: str, role: Role, name: str = "") -> str:
    """Stores the hash of a new token and returns the token (the only time it is seen)."""
    token = "rae_" + secrets.token_urlsafe(32)
    with duck.transaction() as cur:
        cur.execute(
            "INSERT INTO tokens (hash, tenant_id, role, name) VALUES (?, ?, ?, ?)",
            [hash_token(token), tenant_id, role.value, name],
        )
    return token


@dataclass
class _Live:
    """Live tokens already looked up, per store (every API call authenticates, and the
    tokens table changes only through :func:`revoke_token` and :func:`create_token` in
    this process: DuckDB lets one process open the file). Unknown tokens are never kept."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    generation: int = 0  # moves on with every revocation: a lookup from before is dropped
    principals: dict[str, Principal] = field(default_factory=dict)


def authenticate(duck: DuckStore, token: str) -> Principal | None:
    """The principal of a live token, or None (unknown or revoked)."""
    h = hash_token(token)
    live = duck.shared(_Live)
    known = live.principals.get(h)
    if known is not None:
        return known
    with live.lock:
        generation = live.generation
    rows = duck.query(
        "SELECT tenant_id, role, name FROM tokens WHERE hash = ? AND revoked_at IS NULL", [h]
    )
    if not rows:
        return None
    tenant_id, role, name = rows[0]
    principal = Principal(str(tenant_id), Role(role), str(name), h)
    with live.lock:
        if live.generation == generation:  # not revoked while we read
            live.principals[h] = principal
    return principal


def revoke_token(duck: DuckStore, token_hash: str) -> bool:
    """Revokes a token at once; False when no live token has that hash."""
    with duck.transaction() as cur:
        live = cur.execute(
            "SELECT 1 FROM tokens WHERE hash = ? AND revoked_at IS NULL", [token_hash]
        ).fetchone()
        cur.execute("UPDATE tokens SET revoked_at = now() WHERE hash = ?", [token_hash])
    known = duck.shared(_Live)
    with known.lock:  # committed: refused from the next call on
        known.generation += 1
        known.principals.pop(token_hash, None)
    return live is not None
