"""A real node served by uvicorn on a free loopback port, in a thread of the test process
(so a test can make tokens and read the audit log of the same node it talks to over HTTP)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from rae_edge import config
from rae_edge.node import EdgeNode
from rae_edge.tokens import create_token
from rae_sync.domain import Role
from rae_tablet_api.app import create_app


@dataclass
class Served:
    url: str
    node: EdgeNode
    tokens: dict[str, str] = field(default_factory=dict)  # "acme_technician" -> token

    def h(self, who: str = "acme_admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@contextmanager
def served_node(data_dir: Path, **settings: Any) -> Iterator[Served]:
    """Tokens ``{tenant}_{role}`` for tenants acme (the node's) and globex, every role."""
    node = EdgeNode(config.load(None, data_dir=data_dir, node={"tenant_id": "acme"},
                                **settings))
    tokens = {f"{t}_{r.value}": create_token(node.duck, t, r, f"{t}-{r.value}")
              for t in ("acme", "globex") for r in Role}
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(node), log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the node did not start"
        time.sleep(0.05)
    try:
        yield Served(f"http://127.0.0.1:{port}", node, tokens)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        node.close()
