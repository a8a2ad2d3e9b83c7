"""``rae-edge token create|list|revoke``: only hashes stored, revocation at once, no
token ever printed by ``list``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from litestar.testing import TestClient

from rae_edge.commands.token import revoke
from rae_edge.errors import InvalidInputError, NotFoundError
from rae_edge.node import EdgeNode
from rae_edge.tokens import create_token, hash_token
from rae_sync.domain import Role
from rae_tablet_api.auth import MAX_FAILURES
from tests.security.conftest import clear_auth_failures
from tests.security.serve import rae_edge_inproc
from tests.security.test_audit_hook import _app

RAE_EDGE = [sys.executable, "-m", "rae_tablet_api.cli"]


def test_token_cli_create_list_revoke(tmp_path: Path, capsys: Any) -> None:
    def _run(*args: str) -> subprocess.CompletedProcess[str]:
        return rae_edge_inproc(capsys, *args)

    d = str(tmp_path / "node")
    # the console script itself once: the token alone on the last line of its output
    first = subprocess.run([*RAE_EDGE, "token", "create", "--role", "technician", "--name",
                            "tablet-3", "--data-dir", d], capture_output=True, text=True,
                           timeout=120)
    made = [first, _run("token", "create", "--role", "technician", "--name", "tablet-3",
                        "--data-dir", d)]
    sup = _run("token", "create", "--role", "supervisor", "--tenant", "globex", "--name", "sup",
               "--data-dir", d)
    for r in [*made, sup]:
        assert r.returncode == 0, r.stderr
    tokens = [r.stdout.strip().splitlines()[-1] for r in [*made, sup]]
    assert all(t.startswith("rae_") and " " not in t for t in tokens)

    listed = _run("token", "list", "--data-dir", d)
    assert listed.returncode == 0, listed.stderr
    assert not any(t in listed.stdout for t in tokens)
    for t in tokens:
        assert hash_token(t)[:12] in listed.stdout
    con = duckdb.connect(str(tmp_path / "node" / "node.duckdb"))
    stored = repr(con.execute("SELECT * FROM tokens").fetchall())
    con.close()
    assert not any(t in stored for t in tokens)  # only hashes are stored

    one = _run("token", "revoke", hash_token(tokens[2])[:10], "--data-dir", d)
    assert one.returncode == 0, one.stderr
    both = _run("token", "revoke", "--all-for", "tablet-3", "--data-dir", d)
    assert both.returncode == 0 and both.stdout.count("revoked ") == 2, both
    after = _run("token", "list", "--data-dir", d)
    assert after.stdout.count("revoked") == 3 and " live " not in after.stdout
    again = _run("token", "revoke", "--all-for", "tablet-3", "--data-dir", d)
    assert again.returncode == 2 and "no live token is named 'tablet-3'" in again.stderr
    bad = _run("token", "revoke", "abc", "--data-dir", d)
    assert bad.returncode == 2 and "at least 8 hex digits" in bad.stderr
    norole = _run("token", "create", "--data-dir", d)
    assert norole.returncode == 2 and "needs --role" in norole.stderr


def test_revocation_takes_effect_at_once(node: EdgeNode) -> None:
    token = create_token(node.duck, "acme", Role.TECHNICIAN, "t")
    h = {"Authorization": f"Bearer {token}"}
    with TestClient(_app(node)) as client:
        assert client.get("/api/v1/probe", headers=h).status_code == 200
        assert revoke(node.duck, hash_token(token)[:8]) == [hash_token(token)[:12]]
        r = client.get("/api/v1/probe", headers=h)
    clear_auth_failures()
    assert r.status_code == 401


def test_revoke_refuses_ambiguous_or_unknown(node: EdgeNode) -> None:
    with pytest.raises(InvalidInputError):
        revoke(node.duck)
    with pytest.raises(NotFoundError):
        revoke(node.duck, "deadbeefdead")


def test_failed_attempts_are_rate_limited(node: EdgeNode) -> None:
    token = create_token(node.duck, "acme", Role.TECHNICIAN, "t")
    clear_auth_failures()
    try:
        with TestClient(_app(node)) as client:
            codes = [client.get("/api/v1/probe", headers={"Authorization": f"Bearer bad{i}"})
                     .status_code for i in range(MAX_FAILURES)]
            assert codes == [401] * MAX_FAILURES
            blocked = client.get("/api/v1/probe", headers={"Authorization": f"Bearer {token}"})
            assert blocked.status_code == 429  # even a good token waits out the window
            assert int(blocked.headers["retry-after"]) > 0
    finally:
        clear_auth_failures()
