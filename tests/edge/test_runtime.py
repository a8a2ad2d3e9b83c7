"""The runtime file and admin socket of a running node (``rae_edge.runtime``): private
modes, a short socket path when the data folder's is too long for ``AF_UNIX``, stale
files from a killed node replaced, and a stale socket told apart from a live one."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
from pathlib import Path

from rae_edge import runtime


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_socket_in_the_run_folder_is_private_and_a_stale_one_is_replaced(tmp_path: Path) -> None:
    d = tmp_path / "node"
    path = runtime.admin_socket_path(d)
    assert path == d.resolve() / "run" / "admin.sock"
    first = runtime.bind_admin_socket(path)
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    info = runtime.RuntimeInfo(os.getpid(), "http://127.0.0.1:34973", str(path))
    written = runtime.write(d, info)
    assert _mode(written) == 0o600 and runtime.read(d) == info
    assert runtime.admin_socket_answers(info)
    first.close()  # as after kill -9: the file stays, nobody listens
    assert path.exists() and not runtime.admin_socket_answers(info)
    second = runtime.bind_admin_socket(path)  # the next node takes the place over
    try:
        assert runtime.admin_socket_answers(info) and _mode(path) == 0o600
        runtime.remove(d, info)
        assert runtime.read(d) is None and not path.exists()
    finally:
        second.close()


def test_a_data_folder_too_deep_for_af_unix_gets_a_short_private_socket(tmp_path: Path) -> None:
    d = tmp_path.joinpath(*["a-rather-long-folder-name"] * 5) / "node"
    assert len(os.fsencode(d / "run" / "admin.sock")) > runtime.MAX_SUN_PATH
    path = runtime.admin_socket_path(d)
    assert path.parent == Path(tempfile.gettempdir()) / f"rae-edge-{os.getuid()}"
    assert len(os.fsencode(path)) <= runtime.MAX_SUN_PATH
    assert runtime.admin_socket_path(d) == path  # the same folder, the same socket
    assert runtime.admin_socket_path(tmp_path / "other") != path
    sock = runtime.bind_admin_socket(path)
    try:
        assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(str(path))
    finally:
        sock.close()
        path.unlink()


def test_an_unreadable_or_absent_runtime_file_reads_as_none(tmp_path: Path) -> None:
    assert runtime.read(tmp_path) is None
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "node.json").write_text("{not json")
    assert runtime.read(tmp_path) is None
