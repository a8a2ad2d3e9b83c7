"""The watchdog wrapper speaks sd_notify the way systemd expects: READY once the node
answers its health check, WATCHDOG pings while it keeps answering, signals passed on."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import rae_image.supervise as supervise
from tests.image.conftest import free_port


def test_ready_and_watchdog_pings_then_clean_stop(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(sock_path))
    srv.settimeout(60)
    port = free_port()
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(f"data_dir: {tmp_path / 'data'}\napi:\n  host: 127.0.0.1\n  port: {port}\n")
    proc = subprocess.Popen(
        [sys.executable, supervise.__file__, "--config", str(cfg), "--interval", "0.5"],
        env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "30000000",
             "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    try:
        got: list[str] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and got.count("WATCHDOG=1") < 3:
            got.extend(srv.recv(4096).decode().splitlines())
        assert "READY=1" in got and got.index("READY=1") < got.index("WATCHDOG=1")
        assert any(line.startswith("STATUS=serving on http://127.0.0.1:") for line in got)
        assert got.count("WATCHDOG=1") >= 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert "STOPPING=1" in srv.recv(4096).decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        srv.close()


def test_without_systemd_notify_is_a_no_op(monkeypatch: object) -> None:
    import os

    saved = os.environ.pop("NOTIFY_SOCKET", None)
    try:
        assert supervise.notify("READY=1") is False
    finally:
        if saved is not None:
            os.environ["NOTIFY_SOCKET"] = saved
