"""Starts a real edge node (``rae-edge serve``) in its own process for benchmarks and
fault tests, on a free loopback port, and tells its PID, URL and an admin token. The
process is a :class:`rae_sync.supervisor.Part` (the one supervisor); the /proc readings
(RSS, CPU time, children) are for the benchmarks' figures."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rae_sync.supervisor import Part, StartError, children, free_port, http_ok

VENV_BIN = Path(sys.executable).parent
__all__ = ["NodeProcess", "child_pids", "cpu_seconds", "free_port", "make_token",
           "peak_rss_mib", "rss_mib"]


def rss_mib(pid: int) -> float:
    """Resident set size of a process from /proc, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime (seconds) of these processes, from /proc (gone ones count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def child_pids(ppid: int) -> list[int]:
    """PIDs whose parent is ``ppid`` (e.g. PostgreSQL's backends, central's workers)."""
    return children(ppid)


def make_token(data_dir: Path, role: str = "admin", tenant: str | None = None) -> str:
    cmd = [str(VENV_BIN / "rae-edge"), "token", "create", "--role", role,
           "--data-dir", str(data_dir)]
    if tenant:
        cmd += ["--tenant", tenant]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


@dataclass
class NodeProcess:
    data_dir: Path
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    part: Part | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.part.proc if self.part is not None else None

    def start(self, timeout: float = 120.0) -> NodeProcess:
        self.log_path = self.data_dir.parent / f"node-{self.port}.log"
        self.part = Part("rae-edge serve", [
            str(VENV_BIN / "rae-edge"), "serve", "--data-dir", str(self.data_dir),
            "--host", "127.0.0.1", "--port", str(self.port), *self.extra_args],
            self.log_path, env={"HF_HUB_OFFLINE": "1", **self.env}, stop_timeout=20,
            die_with_parent=False).start()
        try:
            self.part.wait_until(lambda: http_ok(f"{self.url}/api/v1/health"),
                                 "/health answer", timeout)
        except StartError as exc:
            raise RuntimeError(str(exc)) from exc
        return self

    @property
    def pid(self) -> int:
        assert self.part is not None
        return self.part.pid

    def kill9(self) -> None:
        """SIGKILL to the node's process group: a crash."""
        if self.part is not None and self.part.running:
            self.part.kill()

    def stop(self) -> None:
        """SIGTERM; SIGKILL to the group after 20 s."""
        if self.part is not None and self.part.running:
            self.part.signal_stop()
            self.part.wait_stopped()
