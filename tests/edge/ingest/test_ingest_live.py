"""``rae-edge ingest`` beside a running node (``rae-edge serve`` on the same data folder):
the files go through that node's upload API and job, nothing is lost or doubled."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from rae_edge.sample_plant import SAMPLE_DIR

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ingest_goes_through_the_running_node(tmp_path: Path) -> None:
    data = tmp_path / "node"
    tok = subprocess.run([str(BIN / "rae-edge"), "token", "create", "--role", "supervisor",
                          "--data-dir", str(data)], capture_output=True, text=True, check=True,
                         timeout=120).stdout.strip().splitlines()[-1]
    (tmp_path / "tok").write_text(tok)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(BIN / "rae-edge"), "serve", "--data-dir", str(data),
                               "--port", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{url}/api/v1/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        cmd = [str(BIN / "rae-edge"), "ingest", "--data-dir", str(data), "--token-file",
               str(tmp_path / "tok"), "--url", url, str(SAMPLE_DIR / "manual.pdf"),
               str(tmp_path / "absent.pdf")]
        first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert first.returncode == 1, first.stderr  # absent.pdf: no such file
        assert "through the running node: added 8, skipped 0 as duplicate" in first.stdout
        assert "absent.pdf: no such file or folder" in first.stdout
        second = subprocess.run(cmd[:-1], capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stderr
        assert "added 0, skipped 8 as duplicate" in second.stdout
        mapped = subprocess.run([*cmd[:-2], "--mapping", str(SAMPLE_DIR / "error_log.yaml"),
                                 str(SAMPLE_DIR / "error_log.csv")],
                                capture_output=True, text=True, timeout=120)
        assert mapped.returncode == 2 and "--mapping needs direct access" in mapped.stderr
    finally:
        server.terminate()
        server.wait(timeout=60)
