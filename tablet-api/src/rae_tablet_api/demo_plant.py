"""One demo plant: its edge node's settings file, the sample plant loaded into it once,
and an admin token.

``python -m rae_tablet_api.demo_plant CONFIG TOKEN_FILE`` loads the sample plant into the
node that ``CONFIG`` describes (once: a marker file in the node's folder makes a second
run skip it), writes a fresh admin token into ``TOKEN_FILE`` (mode 0600) and exits. The
demo runs it as a child process before the node starts, so the embedding model the
loading needs is freed again (one model per running node) and the demo itself never
opens the stores (rae_edge is imported lazily here for that reason).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rae_edge.config import EdgeSettings
    from rae_edge.node import EdgeNode

TENANT = "demo"
MARKER = ".demo-sample-plant"


@dataclass(frozen=True)
class Plant:
    """Plant ``letter`` (a, b, ...) of the demo: site ``plant-a``, node ``node-a``."""

    letter: str
    root: Path  # the demo's data folder
    port: int
    mqtt_url: str | None  # None: sync off

    @property
    def site(self) -> str:
        return f"plant-{self.letter}"

    @property
    def node(self) -> str:
        return f"node-{self.letter}"

    @property
    def data_dir(self) -> Path:
        return self.root / self.node

    @property
    def config_file(self) -> Path:
        return self.root / f"{self.node}.json"

    @property
    def identity_file(self) -> Path:
        return self.root / f"{self.node}.identity.json"

    @property
    def plc_port(self) -> int:
        """The simulated PLC's loopback port: beside the API's (8470 → 9470)."""
        return self.port + 1000 if self.port + 1000 <= 65535 else self.port - 1000

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        """The node's settings (YAML is a superset of JSON, so ``--config`` reads it)."""
        sync: dict[str, str] = {}
        if self.mqtt_url:
            sync = {"mqtt_url": self.mqtt_url, "enroll_file": str(self.identity_file)}
        data = {"data_dir": str(self.data_dir),
                "node": {"tenant_id": TENANT, "site_id": self.site, "node_id": self.node},
                "api": {"host": "127.0.0.1", "port": self.port}, "sync": sync,
                "alarms": demo_alarms(self.plc_port)}
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps(data, indent=2) + "\n")
        return self.config_file

    def settings(self) -> EdgeSettings:
        from rae_edge import config

        return config.load(self.config_file)

    @property
    def sample_loaded(self) -> bool:
        return (self.data_dir / MARKER).is_file()


def demo_alarms(plc_port: int) -> dict[str, Any]:
    """The sample plant's simulated PLC (in the node's process, on loopback) and the OPC UA
    source that watches it: press-1 raises E404 every minute for 20 s."""
    return {"simulated_plc": {"port": plc_port, "every_s": 60, "active_s": 20},
            "sources": [{"type": "opcua", "name": "sample-plc",
                         "url": f"opc.tcp://127.0.0.1:{plc_port}/sample-plant",
                         "security": "basic256sha256",
                         "tags": [{"node_id": "ns=2;s=press-1.ErrorCode",
                                   "machine_id": "press-1", "severity": 700}]}]}


def load_sample(node: EdgeNode) -> str:
    """Loads the sample plant unless the marker says it is there; returns a summary."""
    marker = node.data_dir / MARKER
    if marker.is_file():
        return f"loaded on an earlier run ({marker.read_text().strip()})"
    from rae_edge.sample_plant import load_sample_plant

    summary = load_sample_plant(node)
    marker.write_text(summary + "\n")
    return summary


def admin_token(node: EdgeNode, name: str = "demo admin") -> str:
    """A fresh admin token in the node's own tenant."""
    from rae_edge.tokens import create_token
    from rae_sync.domain import Role

    return create_token(node.duck, node.tenant_id, Role.ADMIN, name)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m rae_tablet_api.demo_plant CONFIG TOKEN_FILE", file=sys.stderr)
        return 2
    from rae_edge import config
    from rae_edge.node import EdgeNode

    node = EdgeNode(config.load(Path(args[0])))
    try:
        print(f"sample plant: {load_sample(node)}", flush=True)
        token_file = Path(args[1])
        token_file.unlink(missing_ok=True)
        token_file.touch(mode=0o600)
        token_file.write_text(admin_token(node) + "\n")
    finally:
        node.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
