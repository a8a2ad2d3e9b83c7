"""Runs the real ``rae-edge serve`` in a subprocess on a free loopback port (on the one
supervisor, :mod:`rae_sync.supervisor`)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from rae_sync.supervisor import Part, StartError

RAE_EDGE = [sys.executable, "-m", "rae_tablet_api.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rae_edge(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RAE_EDGE, *args], capture_output=True, text=True, timeout=timeout)


@contextmanager
def running_node(data_dir: Path, log_path: Path, *extra: str, scheme: str = "http",
                 verify: Any = True) -> Iterator[str]:
    """Starts ``rae-edge serve`` (a :class:`rae_sync.supervisor.Part`) and yields its base
    URL once /health answers; stops it (SIGTERM to its process group) on exit. Its stdout
    and stderr go to ``log_path``."""
    port = free_port()
    part = Part("rae-edge serve", [*RAE_EDGE, "serve", "--host", "127.0.0.1", "--port",
                                   str(port), "--data-dir", str(data_dir), *extra],
                log_path, env={"PYTHONUNBUFFERED": "1"}, die_with_parent=False).start()
    base = f"{scheme}://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/api/v1/health", verify=verify, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        try:
            part.wait_until(healthy, "/health answer", 90)
        except StartError as exc:
            raise AssertionError(f"rae-edge serve did not start: {exc}") from exc
        yield base
    finally:
        part.signal_stop(group=True)
        part.wait_stopped(timeout=30)


def rae_edge_inproc(capsys: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs a ``rae-edge`` command in this process (the same entry point as the console
    script, without paying its start-up once per call); same shape as :func:`rae_edge`."""
    from rae_tablet_api.cli import main

    capsys.readouterr()
    try:
        rc = main(list(args))
    except SystemExit as exc:  # argparse errors
        rc = int(exc.code or 0)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), rc, out.out, out.err)
