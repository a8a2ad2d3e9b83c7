"""Bundles built once per test session (wheels come from the stable download cache, so only
the first build on a machine downloads), and helpers to run an installed node."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from rae_image import bundle

UNVERIFIED = ssl._create_unverified_context()  # the node's certificate is self-signed


def base_python() -> str:
    """A plain interpreter (not this venv): what an appliance has before the install."""
    return getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable


def offline_prefix() -> list[str]:
    """``unshare -n`` (new network namespace with only loopback, brought up) when we may."""
    if shutil.which("unshare") and shutil.which("ip") and subprocess.run(
            ["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "offline"]
    return []


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two builds of the same tree under two versions (an update needs a second release)."""
    out = tmp_path_factory.mktemp("bundles")
    return {v: bundle.build(out, v, make_tar=(v == "1.0.0")) for v in ("1.0.0", "1.1.0")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunningNode:
    def __init__(self, exe: Path, config: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("w")
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(
            [str(exe), "serve", "--config", str(config), "--host", "127.0.0.1", "--port",
             str(self.port)], stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, log.read_text()[-3000:]
            for scheme in ("http", "https"):  # HTTPS when the data folder has a certificate
                url = f"{scheme}://127.0.0.1:{self.port}"
                try:
                    with urllib.request.urlopen(url + "/api/v1/health", timeout=2,
                                                context=UNVERIFIED) as r:
                        if r.status == 200:
                            self.url = url
                            return
                except OSError:
                    pass
            time.sleep(0.3)
        raise AssertionError(f"node did not come up: {log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def run_node() -> Iterator[type[RunningNode]]:
    started: list[RunningNode] = []

    class Tracked(RunningNode):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, **kw)  # type: ignore[arg-type]
            started.append(self)

    yield Tracked
    for n in started:
        if n.proc.poll() is None:
            n.stop()
