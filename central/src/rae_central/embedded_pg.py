"""An embedded PostgreSQL server in one folder, on loopback: for the demo and the tests.

The binaries are found by globbing ``/usr/lib/postgresql/*/bin`` (newest first; set
``RAE_PG_BIN`` to override; Debian package ``postgresql``). ``initdb`` refuses to run as
root, so as root every server command runs as user ``postgres`` on a folder chowned to
it. The unix socket lives in the folder, TCP listens on 127.0.0.1 only (trust
authentication: loopback of a single machine, never a production set-up), and ``fsync``
stays on: the fault tests rely on what a commit means.

:class:`PgServer` drives a cluster with ``pg_ctl`` (``init`` / ``start`` / ``stop`` /
``restart`` / ``kill`` / ``create_database`` / ``url`` / ``destroy``), as the tests do.

``python -m rae_central.embedded_pg run --folder DIR --port P --database NAME`` is what the
demo runs: it creates the cluster on first use, runs ``postgres`` in the foreground as its
own child (so a supervisor sees one process tree and nothing is left daemonised), creates
the database if missing, prints ``ready <SQLAlchemy URL>`` and on SIGINT/SIGTERM shuts the
server down cleanly (a "fast" shutdown) before it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import FrameType

PG_USER = "postgres"

try:  # loaded here, not in the child between fork and exec
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
except OSError:
    _LIBC = None


def find_pg_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<v>/bin`` holding ``initdb``, or ``$RAE_PG_BIN``."""
    env = os.environ.get("RAE_PG_BIN")
    if env:
        return Path(env) if (Path(env) / "initdb").exists() else None
    found = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "initdb").exists()]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: a fast shutdown (SIGINT) when the process that started it dies, so
    a killed supervisor leaves no server behind (Linux ``PR_SET_PDEATHSIG``; it runs
    after the switch to user ``postgres``, which would otherwise clear it)."""
    if _LIBC is not None:
        _LIBC.prctl(1, int(signal.SIGINT))  # 1 = PR_SET_PDEATHSIG


class PgServer:
    """One PostgreSQL cluster in ``folder`` (``data/`` the cluster, ``sock/`` the socket)."""

    def __init__(self, bin_dir: Path, folder: Path, port: int | None = None) -> None:
        self.bin_dir = bin_dir
        self.folder = folder.absolute()
        self.data = self.folder / "data"
        self.sock = self.folder / "sock"
        self.log = self.folder / "postgres.log"
        self.port = port or free_port()
        self.as_root = os.geteuid() == 0

    def _cmd(self, *args: str) -> list[str]:
        if self.as_root:
            return ["runuser", "-u", PG_USER, "--", *args]
        return list(args)

    def _run(self, *args: str, timeout: float = 60) -> None:
        res = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed ({res.returncode}):\n"
                               f"{res.stdout}\n{res.stderr}\n{log[-3000:]}")

    @property
    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").is_file()

    def init(self) -> None:
        """Creates the cluster (``initdb``); the folder must not hold one yet."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        if self.as_root:
            # The folder becomes postgres's; the chain above it must be traversable.
            os.chmod(self.folder, 0o700)
            shutil.chown(self.folder, PG_USER)
            shutil.chown(self.sock, PG_USER)
            probe = subprocess.run(self._cmd("test", "-w", str(self.folder)),
                                   capture_output=True, check=False)
            if probe.returncode != 0:
                raise RuntimeError(
                    f"user {PG_USER!r} cannot reach {self.folder}: a folder above it is closed "
                    "to other users (e.g. /root); use a data folder outside it")
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", PG_USER,
                  "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8")
        with (self.data / "postgresql.conf").open("a") as f:
            f.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.sock}'\n"
                "max_connections = 200\nshared_buffers = 64MB\n"
                "log_min_messages = warning\n"
            )

    def start(self) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                  "-o", f"-p {self.port}", "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stops the server (``fast`` rolls back open transactions; ``immediate`` is a
        crash as far as the data is concerned, recovered from WAL on the next start)."""
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL to the postmaster: the harshest crash; ``start()`` recovers."""
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            # Children exit when the postmaster dies; the stale pid file is handled by start.

    def is_running(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Creates a database and returns its SQLAlchemy URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={PG_USER} dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def ensure_database(self, name: str) -> str:
        """Creates database ``name`` unless it exists; returns its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={PG_USER} dbname=postgres",
                             autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                 [name]).fetchone()
        return self.url(name) if found else self.create_database(name)

    def destroy(self) -> None:
        if self.is_running():
            with contextlib.suppress(RuntimeError):
                self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- foreground (the demo) -----------------------------------------------------------
    def popen_foreground(self) -> subprocess.Popen[bytes]:
        """``postgres`` as a direct child (as root: switched to user ``postgres`` in the
        child, no ``runuser`` in between), port and socket given on its command line so
        a cluster made elsewhere runs here unchanged; its log goes to ``postgres.log``."""
        # A postmaster.pid left by a killed server is handled by postgres itself (it checks
        # that the recorded pid is gone); a live one makes it refuse, with a clear message.
        cmd = [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port),
               "-k", str(self.sock), "-c", "listen_addresses=127.0.0.1"]
        log = self.log.open("ab")
        try:
            if self.as_root:
                return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                        cwd=self.folder, preexec_fn=_die_with_parent,
                                        user=PG_USER, group=PG_USER, extra_groups=[])
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder,
                                    preexec_fn=_die_with_parent)
        finally:
            log.close()

    def wait_ready(self, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
        """Waits until the server takes connections (raises with its log if it exits)."""
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log = self.log.read_text(errors="replace") if self.log.exists() else ""
                raise RuntimeError(f"postgres exited ({proc.returncode}):\n{log[-3000:]}")
            try:
                psycopg.connect(f"host=127.0.0.1 port={self.port} user={PG_USER} "
                                "dbname=postgres", connect_timeout=1).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not accept connections on port "
                                       f"{self.port} within {timeout:.0f} s") from None
                time.sleep(0.1)


def run_foreground(folder: Path, port: int, database: str) -> int:
    """``run``: init when needed, serve in the foreground until SIGINT/SIGTERM."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        print("error: PostgreSQL is not installed (Debian package 'postgresql'; or set "
              "RAE_PG_BIN to the folder holding initdb)", file=sys.stderr)
        return 2
    server = PgServer(bin_dir, folder, port)
    stop_requested = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if not server.initialized:
            server.init()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    proc = server.popen_foreground()
    try:
        server.wait_ready(proc)
        url = server.ensure_database(database)
        print(f"ready {url}", flush=True)
        while not stop_requested and proc.poll() is None:
            time.sleep(0.2)
    except Exception as exc:  # one clear line for the supervisor
        print(f"error: {exc}", file=sys.stderr, flush=True)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # "fast" shutdown: a clean checkpoint
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return 0 if stop_requested else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rae_central.embedded_pg",
                                     description="An embedded PostgreSQL on 127.0.0.1.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="create (first time) and run a cluster in the foreground")
    p.add_argument("--folder", type=Path, required=True, help="the cluster's folder")
    p.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    p.add_argument("--database", default="rae_central", help="database to create if missing")
    args = parser.parse_args(argv)
    return run_foreground(args.folder, args.port, args.database)


if __name__ == "__main__":
    sys.exit(main())
