"""The one process supervisor: runs parts of the system (broker, database, central, edge
nodes) as child processes, waits until they answer, and stops them, in order, leaving
nothing behind. The demo (``rae_tablet_api.demo``), the test stack
(``tests/fixtures/stack.py``, ``tests/central/serve_proc.py``) and the benchmarks
(``bench/nodeproc.py``) all build on it. Standard library only, so every member may use it.

- :class:`Part`: one child in its own process group (a Ctrl-C in the terminal reaches only
  the supervisor; a stop or kill reaches the whole group, e.g. central's workers), its
  output appended to a log; by default told by the kernel to stop when the thread that
  started it dies (``PR_SET_PDEATHSIG``), so even a killed supervisor leaves no orphans;
  :meth:`Part.wait_until` polls readiness and names the part and its log on failure;
- :class:`Supervisor`: the started parts; stops them stage by stage, or kills them all;
- :func:`run_once`: a short command (migrate, enroll) with its output logged;
- helpers: :func:`free_port`, :func:`port_is_free`, :func:`http_ok`,
  :func:`group_members`, :func:`children`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

try:  # loaded here, not in the child between fork and exec
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
except OSError:
    _LIBC = None

PR_SET_PDEATHSIG = 1


class StartError(RuntimeError):
    """A part did not come up; the message names it and quotes its log."""


def port_is_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:``port`` (connections of a stopped run still
    in TIME_WAIT do not count: the servers bind with SO_REUSEADDR too)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - our loopback URL
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def children(ppid: int, cmdline_has: bytes = b"", cmdline_lacks: bytes = b"") -> list[int]:
    """PIDs whose parent is ``ppid`` (e.g. PostgreSQL's backends, central's workers),
    optionally only those whose command line holds ``cmdline_has`` and not
    ``cmdline_lacks``; sorted."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != ppid:
                continue
            if cmdline_has or cmdline_lacks:
                cmdline = (stat.parent / "cmdline").read_bytes()
                if cmdline_has not in cmdline or (cmdline_lacks and cmdline_lacks in cmdline):
                    continue
        except (OSError, ValueError, IndexError):
            continue
        out.append(int(stat.parent.name))
    return sorted(out)


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid`` (zombies excluded)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            rest = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if rest[0] != "Z" and int(rest[2]) == pgid:
            out.append(int(stat.parent.name))
    return out


@dataclass
class Part:
    """One child process: ``argv`` with ``env`` added to this process's environment."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 30.0
    # PR_SET_PDEATHSIG follows the starting *thread*: off for parts started from a
    # short-lived thread (the test stack starts nodes in parallel threads).
    die_with_parent: bool = True
    proc: subprocess.Popen[bytes] | None = None
    log_offset: int = 0  # the log's size when this run of the part began

    def start(self) -> Part:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        death = int(self.stop_signal)

        def in_child() -> None:
            if _LIBC is not None and self.die_with_parent:
                _LIBC.prctl(PR_SET_PDEATHSIG, death)

        with self.log.open("ab") as log:
            self.log_offset = log.tell()
            log.write(f"\n==> {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.argv)}\n"
                      .encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **self.env}, start_new_session=True,
                preexec_fn=in_child)  # only a prctl between fork and exec
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def new_output(self) -> str:
        """What the part has written to its log in this run."""
        try:
            with self.log.open("rb") as f:
                f.seek(self.log_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.new_output()[-chars:]
        except OSError:
            return ""

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        """Polls ``ready`` until it holds; raises :class:`StartError` with the log tail
        if the process exits first or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.running:
                code = self.proc.returncode if self.proc else None
                raise StartError(f"{self.name} exited (code {code}) before {what}; "
                                 f"its log ({self.log}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise StartError(f"{self.name}: no {what} within {timeout:.0f} s; "
                                 f"its log ({self.log}):\n{self.log_tail()}")
            time.sleep(0.1)

    def signal_stop(self, group: bool = False) -> None:
        """Sends the stop signal to the leader (which stops its own children), or with
        ``group`` to every process of its group."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                if group:
                    os.killpg(self.pid, self.stop_signal)
                else:
                    os.kill(self.pid, self.stop_signal)

    def wait_stopped(self, timeout: float | None = None) -> None:
        """Waits for the leader, then kills what is left of its process group."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait()
        self.kill_leftovers()

    def kill_leftovers(self) -> None:
        if self.proc is None:
            return
        for _ in range(50):
            left = group_members(self.pid)
            if not left:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL to the whole group (a crash), then waits for it."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait()
            self.kill_leftovers()


def run_once(name: str, argv: list[str], log: Path, env: dict[str, str] | None = None,
             timeout: float = 300) -> str:
    """Runs a short command to completion (output appended to ``log``); returns its
    output, raises :class:`StartError` with it when the command fails."""
    res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, timeout=timeout, check=False)
    out = res.stdout + res.stderr
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(f"\n==> {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n{out}")
    if res.returncode != 0:
        raise StartError(f"{name} failed (code {res.returncode}):\n{out[-3000:]}")
    return out


class Supervisor:
    """The started parts, in start order; :meth:`stop` stops them in stages."""

    def __init__(self) -> None:
        self.parts: list[Part] = []

    def start(self, part: Part) -> Part:
        self.parts.append(part.start())
        return part

    def died(self) -> Part | None:
        """The first part whose process has exited, if any."""
        return next((p for p in self.parts if p.proc is not None and not p.running), None)

    def stop(self, stages: list[list[str]]) -> None:
        """Stops the named parts stage by stage (each stage in parallel), then any part
        not named; each stage waits for its parts before the next begins."""
        named = {n for stage in stages for n in stage}
        rest = [p.name for p in self.parts if p.name not in named]
        for stage in [*stages, rest]:
            parts = [p for p in self.parts if p.name in stage]
            for p in parts:
                p.signal_stop()
            for p in parts:
                p.wait_stopped()

    def kill_all(self) -> None:
        for p in reversed(self.parts):
            p.kill()
