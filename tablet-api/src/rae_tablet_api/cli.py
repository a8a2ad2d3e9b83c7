"""The ``rae-edge`` entry point: the edge's own commands plus ``serve``."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from rae_edge import cli as edge_cli
from rae_edge import config
from rae_edge.node import EdgeNode
from rae_tablet_api.app import create_app


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default 8470)")
    p.add_argument("--mqtt-url", default=None, help="mqtt[s]://host:port; none = sync off")
    p.add_argument("--enroll", default=None, help="identity file issued by rae-central enroll")


def serve(args: argparse.Namespace) -> int:
    api = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    sync = {k: v for k, v in {"mqtt_url": args.mqtt_url, "enroll_file": args.enroll}.items()
            if v is not None}
    settings = config.load(args.config, data_dir=args.data_dir, api=api or None,
                                    sync=sync or None)
    node = EdgeNode(settings)
    app = create_app(node)
    uvicorn.run(app, host=settings.api.host, port=settings.api.port, log_level="info")
    return 0


def main(argv: list[str] | None = None) -> int:
    return edge_cli.main(argv, extra={"serve": ("run the edge node", _serve_args, serve)})


if __name__ == "__main__":
    sys.exit(main())
