"""Commands beside a running node: DuckDB lets one process write the data folder, so when
a node holds it a command goes through that node's API instead.

:func:`add_live_args` adds ``--url`` and ``--token-file``; :func:`open_unless_held` opens
the node or says (None) that a running one holds the folder, :func:`is_lock_conflict`
tells that error apart; :func:`call_live_node` sends a JSON request and
:func:`upload_to_live_node` a multipart file upload. Both go over the node's local admin
channel (the Unix socket named in its runtime file, :mod:`rae_edge.runtime`): no token,
any port. With ``--url`` or ``--token-file``, or when the channel cannot be opened, they
go over HTTP(S) with a token (``--token-file`` or ``$RAE_ADMIN_TOKEN``) to ``--url``, the
address in the runtime file, or the settings' (HTTPS verified against the node's own
certificate in its data folder). Every failure is a :class:`ConflictError` that says what
to do.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import ssl
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, NoReturn

import duckdb

from rae_edge import runtime
from rae_edge.config import EdgeSettings
from rae_edge.errors import ConflictError, NotFoundError
from rae_edge.node import EdgeNode


def add_live_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=None,
                   help="a running node's base URL (default: from the config's api section)")
    p.add_argument("--token-file", type=Path, default=None,
                   help="admin token for a running node (default: $RAE_ADMIN_TOKEN)")


def is_lock_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def open_unless_held(settings: EdgeSettings) -> EdgeNode | None:
    """The node on the data folder, or None when a running node holds it (the command
    then goes through that node)."""
    try:
        return EdgeNode(settings)
    except duckdb.IOException as exc:
        if not is_lock_conflict(exc):
            raise
        return None


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the node's admin socket (``AF_UNIX``)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _local_channel(settings: EdgeSettings) -> tuple[runtime.RuntimeInfo | None, str]:
    """The running node's runtime file when its admin socket answers, else None and why."""
    info = runtime.read(settings.data_dir)
    if info is None:
        return None, f"no runtime file in {runtime.run_dir(settings.data_dir)}"
    if not runtime.admin_socket_answers(info):
        return info, f"its admin socket {info.admin_socket} does not answer (this user may " \
                     "not open it, or the runtime file is stale)"
    return info, ""


def _fail(settings: EdgeSettings, where: str, status: int, detail: str,
          not_found_passes: bool) -> NoReturn:
    if (not_found_passes and status == 404 and "not_found" in detail
            and "no live token" not in detail):
        raise NotFoundError(detail)
    raise ConflictError(f"{settings.data_dir} is held by a running node; {where} answered "
                        f"{status}: {detail}")


def _send(settings: EdgeSettings, args: argparse.Namespace, path: str, *, method: str,
          data: bytes | None, content_type: str, missing_hint: str,
          not_found_passes: bool) -> dict[str, Any]:
    """One request to the node holding the data folder; its JSON answer. Over its local
    admin channel (no token) unless ``--url`` or ``--token-file`` asks for HTTP."""
    held = f"{settings.data_dir} is held by a running node"
    info, why_not = _local_channel(settings)
    if args.url is None and args.token_file is None and not why_not:
        assert info is not None
        conn = _UnixHTTPConnection(info.admin_socket, timeout=600)
        try:
            conn.request(method, path, body=data, headers={"Content-Type": content_type})
            resp = conn.getresponse()
            raw = resp.read()
        except OSError as exc:
            raise ConflictError(f"{held}, and its admin socket {info.admin_socket} failed: "
                                f"{exc}") from exc
        finally:
            conn.close()
        if resp.status >= 400:
            _fail(settings, f"its admin socket {info.admin_socket}", resp.status,
                  raw[:500].decode("utf-8", "replace"), not_found_passes)
        answer: dict[str, Any] = json.loads(raw)
        return answer
    # Over HTTP(S) with a token: the node's address from --url, its runtime file, or the
    # settings (a wildcard bind is reached on loopback).
    wildcard = settings.api.host in ("0.0.0.0", "::")  # noqa: S104 - a bind address we read
    host = "127.0.0.1" if wildcard else settings.api.host
    tls_on = (settings.data_dir / "tls" / "cert.pem").is_file()
    base = args.url or (info.url if info is not None else
                        f"{'https' if tls_on else 'http'}://{host}:{settings.api.port}")
    url = base.rstrip("/") + path
    if not url.startswith(("http://", "https://")):
        raise ConflictError(f"--url must be an http(s) URL, not {url!r}")
    token = (args.token_file.read_text().strip() if args.token_file
             else os.environ.get("RAE_ADMIN_TOKEN", ""))
    if not token:
        raise ConflictError(f"{held}, and its local admin channel cannot be used ({why_not}); "
                            f"pass --token-file {missing_hint} at {url}, or stop the node first")
    req = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, data=data, method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
    ctx = None
    if url.startswith("https://") and tls_on and args.url is None:
        # our own node's self-signed certificate, read from its data folder
        ctx = ssl.create_default_context(cafile=str(settings.data_dir / "tls" / "cert.pem"))
    try:
        with urllib.request.urlopen(req, timeout=600, context=ctx) as resp:  # noqa: S310
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        _fail(settings, url, exc.code, exc.read()[:500].decode("utf-8", "replace"),
              not_found_passes)
    except urllib.error.URLError as exc:
        raise ConflictError(f"{held}, and it does not answer at {url}: {exc.reason}") from exc
    return answer


def call_live_node(settings: EdgeSettings, args: argparse.Namespace, method: str, path: str,
                   body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The data folder is held by a running node: ask that node (admin API). A 404 for a
    missing thing stays a :class:`NotFoundError`."""
    return _send(settings, args, path, method=method,
                 data=json.dumps(body).encode() if body is not None else None,
                 content_type="application/json",
                 missing_hint="(an admin token) so the command goes through it",
                 not_found_passes=True)


def upload_to_live_node(settings: EdgeSettings, args: argparse.Namespace, path: str,
                        fields: dict[str, str], file: Path) -> dict[str, Any]:
    """``POST`` of ``file`` (multipart part ``file``, beside the text ``fields``) to the
    node that holds the data folder, e.g. ``/api/v1/documents``."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items())
    body += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
             f'filename="{file.name.replace(chr(34), "_")}"\r\n'
             f"Content-Type: application/octet-stream\r\n\r\n").encode()
    body += file.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return _send(settings, args, path, method="POST", data=body,
                 content_type=f"multipart/form-data; boundary={boundary}",
                 missing_hint="(a supervisor or admin token) so the files are uploaded to it",
                 not_found_passes=False)
