"""``rae-edge token`` and ``rae-edge audit verify`` beside a running node (which holds the
DuckDB lock): they go through the node's admin API, within the admin token's tenant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.security.serve import rae_edge, rae_edge_inproc, running_node


def test_token_and_audit_commands_go_through_a_running_node(tmp_path: Path,
                                                           capsys: Any) -> None:
    d = tmp_path / "node"
    admin = rae_edge("token", "create", "--role", "admin", "--name", "ops", "--data-dir", str(d))
    admin_token = admin.stdout.strip().splitlines()[-1]
    token_file = tmp_path / "admin.token"
    token_file.write_text(admin_token)
    with running_node(d, tmp_path / "serve.log") as base:
        live = ("--data-dir", str(d), "--token-file", str(token_file), "--url", base)
        made = rae_edge_inproc(capsys, "token", "create", "--role", "technician", "--name",
                               "tablet-9", *live)
        assert made.returncode == 0, made.stderr
        tech = made.stdout.strip().splitlines()[-1]
        h = {"Authorization": f"Bearer {tech}"}
        assert httpx.get(f"{base}/api/v1/machines", headers=h).status_code == 200
        listed = rae_edge_inproc(capsys, "token", "list", *live)
        assert "tablet-9" in listed.stdout and tech not in listed.stdout
        ok = rae_edge_inproc(capsys, "audit", "verify", *live)
        assert ok.returncode == 0 and "audit log intact" in ok.stdout, ok
        gone = rae_edge_inproc(capsys, "token", "revoke", "--all-for", "tablet-9", *live)
        assert gone.returncode == 0 and "revoked" in gone.stdout, gone
        assert httpx.get(f"{base}/api/v1/machines", headers=h).status_code == 401
        # no admin token: a clear refusal that says what to do
        bare = rae_edge_inproc(capsys, "token", "list", "--data-dir", str(d), "--url", base)
        assert bare.returncode == 2 and "--token-file" in bare.stderr
    # the audit log recorded the admin calls, and is intact once the node has stopped
    after = rae_edge_inproc(capsys, "audit", "tail", "-n", "50", "--data-dir", str(d))
    assert "/api/v1/admin/tokens" in after.stdout and "/api/v1/admin/audit/verify" in after.stdout
    assert admin_token not in after.stdout and tech not in after.stdout
    assert rae_edge_inproc(capsys, "audit", "verify", "--data-dir", str(d)).returncode == 0
