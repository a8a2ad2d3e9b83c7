"""``rae-edge token``, ``audit``, ``backup``, ``ingest`` and ``restore`` beside a running
node (which holds the DuckDB lock): over its local admin channel (a 0600 Unix socket named
in its runtime file) with no token on any port, or over HTTP with an admin token, within
that token's tenant; a killed node's runtime file is stale and harmless."""

from __future__ import annotations

import signal
import stat
from pathlib import Path
from typing import Any

import httpx

from rae_edge import runtime
from rae_edge.sample_plant import SAMPLE_DIR
from rae_sync.supervisor import Part
from tests.security.serve import RAE_EDGE, free_port, rae_edge, rae_edge_inproc, running_node


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


def _start_node(d: Path, log: Path, port: int) -> Part:
    """``rae-edge serve`` on ``port``, ready once its admin socket answers."""
    part = Part("rae-edge serve", [*RAE_EDGE, "serve", "--host", "127.0.0.1", "--port",
                                   str(port), "--data-dir", str(d)],
                log, env={"PYTHONUNBUFFERED": "1"}, die_with_parent=False).start()

    def channel_up() -> bool:
        info = runtime.read(d)
        # This node's file (not one a killed node left) and a socket that answers.
        return info is not None and info.pid == part.pid and runtime.admin_socket_answers(info)

    part.wait_until(channel_up, "local admin channel", 90)
    return part


def _stop(part: Part, sig: int) -> None:
    if sig == signal.SIGKILL:
        part.kill()
    else:
        part.signal_stop()
        part.wait_stopped()


def test_commands_beside_a_node_on_any_port_need_no_token(tmp_path: Path, capsys: Any) -> None:
    """INTERFACE: beside a running node the commands go through its local admin channel,
    need no token and work whatever port it listens on; over TCP a token is still needed."""
    d = tmp_path / "node"
    port = free_port()
    assert port != 8470
    proc = _start_node(d, tmp_path / "serve.log", port)
    try:
        info = runtime.read(d)
        assert info is not None and info.url == f"http://127.0.0.1:{port}"
        assert info.pid == proc.pid
        sock = Path(info.admin_socket)
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600  # only the folder's owner
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE((d / "run" / "node.json").stat().st_mode) == 0o600
        # The first token of a running node, with no token file and no --url.
        made = rae_edge_inproc(capsys, "token", "create", "--role", "admin", "--name", "ops",
                               "--data-dir", str(d))
        assert made.returncode == 0, made.stderr
        tok = made.stdout.strip().splitlines()[-1]
        h = {"Authorization": f"Bearer {tok}"}
        base = info.url
        assert httpx.get(f"{base}/api/v1/machines", headers=h).status_code == 200
        listed = rae_edge_inproc(capsys, "token", "list", "--data-dir", str(d))
        assert listed.returncode == 0 and listed.stdout.count(" ops") == 1
        # The folder's owner may make any tenant's token, as the direct command does ...
        other = rae_edge_inproc(capsys, "token", "create", "--role", "technician",
                                "--tenant", "globex", "--data-dir", str(d))
        assert other.returncode == 0 and "for tenant globex" in other.stdout, other
        gtok = other.stdout.strip().splitlines()[-1]
        assert httpx.get(f"{base}/api/v1/machines",
                         headers={"Authorization": f"Bearer {gtok}"}).status_code == 200
        # ... an admin token over HTTP only its own tenant's.
        (tmp_path / "admin.token").write_text(tok)
        cross = rae_edge_inproc(capsys, "token", "create", "--role", "admin", "--tenant",
                                "globex", "--data-dir", str(d), "--token-file",
                                str(tmp_path / "admin.token"))
        assert cross.returncode == 2 and "403" in cross.stderr and "globex" in cross.stderr
        verified = rae_edge_inproc(capsys, "audit", "verify", "--data-dir", str(d))
        assert verified.returncode == 0 and "audit log intact" in verified.stdout, verified
        dest = Path(f"{d}-backups") / "b1"
        backed = rae_edge_inproc(capsys, "backup", str(dest), "--data-dir", str(d))
        assert backed.returncode == 0, backed.stderr
        assert (dest / "manifest.json").is_file()
        ingested = rae_edge_inproc(capsys, "ingest", "--no-progress", "--data-dir", str(d),
                                   str(SAMPLE_DIR / "manual.pdf"))
        assert ingested.returncode == 0, ingested.stderr
        assert "through the running node: added 8, skipped 0 as duplicate" in ingested.stdout
        refused = rae_edge_inproc(capsys, "restore", str(dest), "--data-dir", str(d))
        assert refused.returncode == 2 and "held by a running node" in refused.stderr
        # Over TCP a token is still required: no token, a clear refusal naming the way.
        bare = rae_edge_inproc(capsys, "token", "list", "--data-dir", str(d), "--url", base)
        assert bare.returncode == 2 and "--token-file" in bare.stderr, bare
        assert httpx.get(f"{base}/api/v1/admin/tokens").status_code == 401
        # What came over the channel is on record as the local admin.
        tail = httpx.get(f"{base}/api/v1/admin/audit/verify", headers=h)
        assert tail.status_code == 200 and tail.json()["ok"] is True
        _stop(proc, signal.SIGTERM)
        # A clean stop removes the runtime file and the socket.
        assert runtime.read(d) is None and not sock.exists()
    finally:
        if proc.running:
            _stop(proc, signal.SIGKILL)
    after = rae_edge_inproc(capsys, "audit", "tail", "-n", "100", "--data-dir", str(d))
    local = [line for line in after.stdout.splitlines() if "local-admin#local" in line]
    assert any("POST /api/v1/admin/tokens" in line for line in local), after.stdout
    assert any("POST /api/v1/admin/backup" in line for line in local)
    assert any("POST /api/v1/documents" in line for line in local)
    assert tok not in after.stdout


def test_a_killed_nodes_runtime_file_is_stale_not_a_trap(tmp_path: Path, capsys: Any) -> None:
    d = tmp_path / "node"
    proc = _start_node(d, tmp_path / "serve1.log", free_port())
    _stop(proc, signal.SIGKILL)  # no clean-up: the runtime file and socket stay behind
    stale = runtime.read(d)
    assert stale is not None and not runtime.admin_socket_answers(stale)
    # No node holds the folder now: the command opens it itself, ignoring the stale file.
    made = rae_edge_inproc(capsys, "token", "create", "--role", "technician",
                           "--data-dir", str(d))
    assert made.returncode == 0, made.stderr
    tech = made.stdout.strip().splitlines()[-1]
    # A new node (another port) replaces the stale file and socket, and the commands reach it.
    port = free_port()
    proc = _start_node(d, tmp_path / "serve2.log", port)
    try:
        fresh = runtime.read(d)
        assert fresh is not None and fresh.pid == proc.pid and fresh.url.endswith(f":{port}")
        listed = rae_edge_inproc(capsys, "token", "list", "--data-dir", str(d))
        assert listed.returncode == 0 and listed.stdout.count("technician") == 1, listed
        assert httpx.get(f"{fresh.url}/api/v1/machines",
                         headers={"Authorization": f"Bearer {tech}"}).status_code == 200
    finally:
        _stop(proc, signal.SIGTERM)
