"""The node's local admin channel: the same app served on a Unix socket (0600, see
:mod:`rae_edge.runtime`) that only the data folder's owner can open.

A request that arrives there is the data folder's owner acting as admin of the node's own
tenant: :class:`LocalAdminChannel` marks its ASGI scope (a client cannot set scope keys)
with the local principal, so it needs no token; everything else (guards, the audit log,
which records it as ``local-admin#local``) is the same as over TCP. The channel
starts and stops with the app (lifespan hooks), runs in the app's event loop, and writes
the runtime file with the node's real address beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import uvicorn
from litestar import Litestar
from litestar.types import Receive, Scope, Send

from rae_edge import runtime
from rae_tablet_api.auth import LOCAL_ADMIN_KEY, PRINCIPAL_KEY, local_admin

log = logging.getLogger(__name__)


class _QuietServer(uvicorn.Server):
    """A second uvicorn server in the same loop: the main one owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class LocalAdminChannel:
    """Serves ``app`` on the data folder's admin socket as the local admin."""

    def __init__(self, app: Litestar, data_dir: Path, tenant_id: str, url: str) -> None:
        self.app, self.data_dir, self.url = app, data_dir, url
        self.principal = local_admin(tenant_id)
        self.info: runtime.RuntimeInfo | None = None
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = cast("Scope", {**scope, LOCAL_ADMIN_KEY: True,
                                   PRINCIPAL_KEY: self.principal})
        await self.app(scope, receive, send)

    async def start(self) -> None:
        path = runtime.admin_socket_path(self.data_dir)
        # A runtime file left by a killed node would name this socket (same path) with the
        # dead node's pid and port from the moment it is bound: gone first (the caller holds
        # the data folder's lock, so no live node wrote it).
        runtime.remove_stale(self.data_dir)
        try:
            sock = runtime.bind_admin_socket(path)
        except OSError as exc:  # e.g. a temp folder of another user: commands need a token
            log.warning("no local admin channel (%s): commands beside this node need "
                        "--token-file", exc)
            return
        # No logging set-up (the main server's stays: even access_log=False would switch
        # the process's access log off), no proxy headers, no lifespan (the app's own
        # start-up ran once already: this hook is part of it).
        config = uvicorn.Config(self, lifespan="off", log_config=None, proxy_headers=False)
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        self.info = runtime.RuntimeInfo(os.getpid(), self.url, str(path))
        runtime.write(self.data_dir, self.info)
        log.info("local admin channel on %s", path)

    async def stop(self) -> None:
        if self.info is not None:
            runtime.remove(self.data_dir, self.info)
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await self._task


def attach(app: Litestar, data_dir: Path, tenant_id: str, url: str) -> LocalAdminChannel:
    """Starts the channel after the app's own start-up and stops it before the node
    closes (so no local request meets closed stores)."""
    channel = LocalAdminChannel(app, data_dir, tenant_id, url)
    app.on_startup.append(channel.start)
    app.on_shutdown.insert(0, channel.stop)
    return channel
