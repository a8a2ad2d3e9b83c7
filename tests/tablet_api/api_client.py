"""A real node's app behind Litestar's TestClient, with one token per role and tenant.

Used by the memory API tests (HTTP and WebSocket): real DuckDB and LanceDB files in a
temporary folder, the real packaged embedder, the app exactly as ``rae-edge serve`` builds it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litestar.testing import TestClient

from rae_edge import config
from rae_edge.node import EdgeNode
from rae_edge.tokens import create_token
from rae_sync.domain import Role
from rae_tablet_api.app import create_app


@dataclass
class Api:
    node: EdgeNode
    client: TestClient[Any]
    tokens: dict[str, str] = field(default_factory=dict)  # "acme_admin" -> token

    def h(self, who: str = "acme_admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def get(self, path: str, who: str = "acme_admin", **params: Any) -> Any:
        return self.client.get("/api/v1" + path, params=params, headers=self.h(who))

    def post(self, path: str, body: Any, who: str = "acme_admin") -> Any:
        return self.client.post("/api/v1" + path, json=body, headers=self.h(who))

    def ok(self, r: Any) -> Any:
        assert r.status_code < 300, (r.status_code, r.text)
        return r.json()


@contextmanager
def api_for(data_dir: Path, **settings: Any) -> Iterator[Api]:
    s = config.load(None, data_dir=data_dir, node={"tenant_id": "acme"}, **settings)
    node = EdgeNode(s)
    tokens = {f"{t}_{r.value}": create_token(node.duck, t, r, f"{t}-{r.value}")
              for t in ("acme", "globex") for r in Role}
    with TestClient(create_app(node)) as client:
        yield Api(node, client, tokens)
