"""The README's demo: one edge node on 127.0.0.1 with the sample plant loaded.

Creates ``data/demo`` on first run, registers the sample machines and ingests the sample
documents (skipped when already there), prints the URL and a fresh admin token, serves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvicorn

from rae_edge import config
from rae_edge.node import EdgeNode
from rae_edge.tokens import create_token
from rae_sync.domain import Role
from rae_tablet_api.app import create_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path("data/demo"))
    parser.add_argument("--port", type=int, default=8470)
    args = parser.parse_args(argv)
    settings = config.load(None, data_dir=args.data_dir, api={"host": "127.0.0.1",
                                                               "port": args.port})
    node = EdgeNode(settings)
    try:
        from rae_edge.sample_plant import load_sample_plant
    except ImportError:  # the sample plant arrives with the ingest pipeline
        pass
    else:
        summary = load_sample_plant(node)
        print(f"sample plant: {summary}")
    token = create_token(node.duck, node.tenant_id, Role.ADMIN, "demo admin")
    url = f"http://127.0.0.1:{settings.api.port}"
    print(f"\nRAE Edge node ready at {url}/  (API {url}/api/v1, OpenAPI {url}/api/v1/schema)")
    print(f"admin token: {token}\n", flush=True)
    uvicorn.run(create_app(node), host="127.0.0.1", port=settings.api.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
