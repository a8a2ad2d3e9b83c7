"""Runs ``rae-edge serve`` under systemd's watchdog (shipped in each release as
``supervise.py``; run by that release's venv Python; standard library + ``rae_edge.config``).

systemd (``Type=notify``, ``WatchdogSec=``) restarts a service that stops pinging. Pinging
from a timer thread inside the server would prove only that the thread runs; this pings
only while ``GET /api/v1/health`` answers ``ok``, so a node that is up but no longer
serves is restarted too. ``READY=1`` is sent on the first healthy answer; SIGTERM/SIGINT
are passed to the node, and the node's exit status becomes this process's.

    python supervise.py --config /etc/rae-edge/edge.yaml [-- extra serve flags]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path


def notify(message: str) -> bool:
    """Sends one sd_notify datagram; False when not run by systemd (no NOTIFY_SOCKET)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):  # abstract namespace
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        s.sendall(message.encode())
    return True


def healthy(url: str) -> bool:
    try:
        # Loopback only: never through an http_proxy from the environment.
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),  # loopback: never through an http_proxy
            urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))  # noqa: S323
        with opener.open(url, timeout=5) as resp:
            return bool(resp.status == 200 and json.loads(resp.read()).get("status") == "ok")
    except (urllib.error.URLError, OSError, ValueError):
        return False


def health_url(config_file: Path | None, port: int | None) -> str:
    from rae_edge import config  # the release's own settings loader: same defaults, same env

    s = config.load(config_file)
    wildcard = s.api.host in ("0.0.0.0", "::")  # noqa: S104
    host = "127.0.0.1" if wildcard else s.api.host
    # rae-edge serve speaks HTTPS whenever the data folder holds its certificate (and
    # refuses plain HTTP off loopback).
    scheme = "https" if (s.data_dir / "tls" / "cert.pem").exists() else "http"
    return f"{scheme}://{host}:{port or s.api.port}/api/v1/health"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="run rae-edge serve with an sd_notify watchdog")
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--port", type=int, default=None, help="overrides the config's api.port")
    p.add_argument("--interval", type=float, default=None,
                   help="seconds between health checks (default: WatchdogSec/3, else 10)")
    p.add_argument("serve_args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
    interval = args.interval or (usec / 3e6 if usec else 10.0)
    rae_edge = Path(sys.executable).with_name("rae-edge")
    cmd = [str(rae_edge), "serve"]
    if args.config:
        cmd += ["--config", str(args.config)]
    if args.port:
        cmd += ["--port", str(args.port)]
    cmd += [a for a in args.serve_args if a != "--"]
    url = health_url(args.config, args.port)
    child = subprocess.Popen(cmd)

    stopping: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        stopping.append(signum)
        notify("STOPPING=1")
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    ready = False
    while child.poll() is None:
        if healthy(url):
            if not ready:
                notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving on {url}")
                ready = True
            notify("WATCHDOG=1")
        elif ready:
            notify(f"STATUS=health check failing at {url}")
        deadline = time.monotonic() + (interval if ready else 0.5)
        while child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    rc = int(child.returncode)
    if stopping and rc in (0, -signal.SIGTERM, -signal.SIGINT):
        return 0  # asked to stop, and it did (uvicorn re-raises the signal it handled)
    return 128 - rc if rc < 0 else rc


if __name__ == "__main__":
    sys.exit(main())
