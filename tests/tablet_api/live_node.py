"""Real parts for tablet tests: a node served by uvicorn on a loopback port, in a thread of
the test process (so a test can make tokens and read the node it talks to over HTTP), and
the tablet page opened in a real headless Chromium.

- :class:`LiveNode`: a node on a fixed free port that can be stopped and started again on
  the same port and data folder (the tablet's Wi-Fi dead spot);
- :func:`served_node`: a node with tokens of every role, for the length of a ``with``;
- :func:`chromium`: Debian's Chromium through Playwright (the test is skipped without it);
- :func:`open_tablet`: a new page on the tablet app, signed in with a token.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from rae_edge import config
from rae_edge.node import EdgeNode
from rae_edge.tokens import create_token
from rae_sync.domain import Role
from rae_tablet_api.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync")


Seed = Callable[[EdgeNode], None]


class LiveNode:
    """One node (``tenant_id`` acme unless ``settings`` say otherwise) served on a loopback
    port chosen at the first start and kept across restarts. ``seed`` runs on the node
    before it serves (what its startup needs, e.g. the machines an alarm source names)."""

    def __init__(self, data_dir: Path, seed: Seed | None = None, **settings: Any) -> None:
        self.data_dir = data_dir
        self.seed = seed
        self.settings = {"node": {"tenant_id": "acme"}, **settings}
        self.port = 0
        self.tokens: dict[str, str] = {}  # the test's own names -> tokens
        self.node: EdgeNode | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None and not self._server.should_exit

    def start(self) -> EdgeNode:
        self.node = EdgeNode(config.load(None, data_dir=self.data_dir, **self.settings))
        if self.seed is not None:
            self.seed(self.node)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._server = uvicorn.Server(uvicorn.Config(create_app(self.node), log_level="warning",
                                                     lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, \
                "the node did not start"
            time.sleep(0.05)
        return self.node

    def stop(self) -> None:
        """Stops serving and closes the node: nothing answers on its port until
        :meth:`start`."""
        assert self._server is not None and self._thread is not None and self.node is not None
        self._server.should_exit = True
        self._thread.join(30)
        if self._sock is not None:
            self._sock.close()
        self.node.close()  # (the app's shutdown closes it too; closing twice is harmless)

    def count(self, sql: str, params: list[Any] | None = None) -> int:
        """The first column of the first row of ``sql`` on the node's DuckDB."""
        assert self.node is not None
        return int(self.node.duck.query(sql, params or [])[0][0])


@dataclass
class Served:
    url: str
    node: EdgeNode
    tokens: dict[str, str] = field(default_factory=dict)  # "acme_technician" -> token

    def h(self, who: str = "acme_admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@contextmanager
def served_node(data_dir: Path, seed: Seed | None = None, **settings: Any) -> Iterator[Served]:
    """Tokens ``{tenant}_{role}`` for tenants acme (the node's) and globex, every role."""
    live = LiveNode(data_dir, seed, **settings)
    node = live.start()
    tokens = {f"{t}_{r.value}": create_token(node.duck, t, r, f"{t}-{r.value}")
              for t in ("acme", "globex") for r in Role}
    try:
        yield Served(live.url, node, tokens)
    finally:
        live.stop()


@contextmanager
def chromium(*args: str) -> Iterator[Any]:
    """A headless Chromium (Playwright ``Browser``) with :data:`CHROMIUM_ARGS` and ``args``
    (fake camera, microphone, ...); skips the test where Chromium or Playwright is absent."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/test installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=[*CHROMIUM_ARGS, *args])
        try:
            yield browser
        finally:
            browser.close()


def open_tablet(browser: Any, url: str, token: str, errors: list[str], *,
                console_errors: bool = False, **context: Any) -> Any:
    """A page of a new browser context on the tablet app at ``url``, signed in with
    ``token`` (the scan view shown). Page errors (and console errors with
    ``console_errors``) are appended to ``errors``."""
    ctx = browser.new_context(**{"viewport": {"width": 1280, "height": 800}, **context})
    page = ctx.new_page()
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    if console_errors:
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url + "/")
    page.wait_for_selector("#view-token:not([hidden])")
    page.fill("#token-input", token)
    page.click("#form-token button[type=submit]")
    page.wait_for_selector("#view-scan:not([hidden])")
    return page
