"""How a running node can be reached from its own machine: the runtime file.

``rae-edge serve`` writes ``DATA_DIR/run/node.json`` (``pid``, ``url``: its real address,
``admin_socket``: its local admin channel) in a folder only the data folder's owner may
enter (0700), and removes it when it stops. The admin channel is a Unix socket (0600)
in that folder, or, when that path is too long for ``AF_UNIX``, in a private per-user
folder under the temp directory named after the data folder. Commands run beside the node
(``rae-edge token``, ``ingest``, ``backup``, ``audit``) read the file and talk over the
socket, needing no token (whoever can open the socket owns the data folder anyway).

A runtime file left by a killed node is stale: :func:`read` still returns it, but
:func:`admin_socket_answers` tells a live channel from a dead one, and the next ``serve``
replaces both.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import stat
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

RUN_DIR = "run"
RUNTIME_FILE = "node.json"
SOCKET_NAME = "admin.sock"
MAX_SUN_PATH = 100  # AF_UNIX paths hold 108 bytes on Linux (104 on BSDs): stay under both


@dataclass(frozen=True)
class RuntimeInfo:
    pid: int
    url: str  # the node's HTTP(S) base URL as it listens (loopback for a wildcard bind)
    admin_socket: str


def run_dir(data_dir: Path) -> Path:
    return data_dir / RUN_DIR


def private_dir(path: Path) -> Path:
    """``path`` as a folder only this user may enter: created 0700, or refused when it
    exists owned by someone else or open to others (someone could swap the socket)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise PermissionError(f"{path} is not a folder of this user: the local admin "
                              "channel cannot live there")
    if st.st_mode & 0o077:
        path.chmod(0o700)
    return path


def admin_socket_path(data_dir: Path) -> Path:
    """Where the node's admin socket goes: in its run folder, or a short private path
    when that one is too long for ``AF_UNIX``."""
    inside = run_dir(data_dir.resolve()) / SOCKET_NAME
    if len(os.fsencode(inside)) <= MAX_SUN_PATH:
        return inside
    digest = hashlib.sha256(os.fsencode(data_dir.resolve())).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"rae-edge-{os.getuid()}" / f"{digest}.sock"


def bind_admin_socket(path: Path) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600 from the start (bound under a umask,
    in a 0700 folder). A socket file left by a killed node is replaced."""
    private_dir(path.parent)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()  # stale: the caller holds the data folder's lock, so no live node
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    path.chmod(0o600)
    sock.listen(64)
    sock.setblocking(False)
    return sock


def write(data_dir: Path, info: RuntimeInfo) -> Path:
    """Writes the runtime file atomically (0600, in the private run folder)."""
    folder = private_dir(run_dir(data_dir))
    target = folder / RUNTIME_FILE
    tmp = folder / f".{RUNTIME_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(info), f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(target)
    return target


def read(data_dir: Path) -> RuntimeInfo | None:
    """The runtime file's content, or None when there is none (or it is unreadable)."""
    try:
        raw = json.loads((run_dir(data_dir) / RUNTIME_FILE).read_text())
        return RuntimeInfo(int(raw["pid"]), str(raw["url"]), str(raw["admin_socket"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove(data_dir: Path, info: RuntimeInfo) -> None:
    """Removes the runtime file and socket, if they are still this process's."""
    current = read(data_dir)
    if current is not None and current.pid == info.pid:
        with contextlib.suppress(FileNotFoundError):
            (run_dir(data_dir) / RUNTIME_FILE).unlink()
    with contextlib.suppress(FileNotFoundError):
        Path(info.admin_socket).unlink()


def remove_stale(data_dir: Path) -> None:
    """Removes a runtime file left behind; only for the holder of the data folder's lock."""
    with contextlib.suppress(FileNotFoundError):
        (run_dir(data_dir) / RUNTIME_FILE).unlink()


def admin_socket_answers(info: RuntimeInfo, timeout: float = 2.0) -> bool:
    """Whether a node listens on the runtime file's socket (False for a stale file)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(info.admin_socket)
        except OSError:
            return False
    return True
