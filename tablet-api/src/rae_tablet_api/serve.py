"""The ``rae-edge`` commands: the edge's own plus ``serve`` and ``mcp`` (the stdio bridge
of :mod:`rae_tablet_api.mcp.bridge`); :mod:`rae_tablet_api.cli` is the entry point."""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import uvicorn
from litestar.concurrency import set_asyncio_executor

from rae_edge import cli as edge_cli
from rae_edge import config, tls
from rae_edge.node import EdgeNode
from rae_edge.sync_agent import EnrollmentError, settings_from_identity
from rae_tablet_api.app import create_app
from rae_tablet_api.audit_hook import install_token_redaction
from rae_tablet_api.local_admin import attach
from rae_tablet_api.mcp import bridge as mcp_bridge

# Threads for the API's synchronous handlers. Litestar runs them on asyncio's default pool,
# os.cpu_count() + 4 threads: 6 on a 2-core box. An ingest holds its thread for its
# embedding, the writers' lock and its push (100-300 ms under load), so a few ingests in
# flight left every scan queued behind them: under the load test scans waited seconds
# while the node held the GIL less than 40% of the time.
REQUEST_THREADS = 32


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default 8470)")
    p.add_argument("--mqtt-url", default=None, help="mqtt[s]://host:port; none = sync off")
    p.add_argument("--enroll", default=None, help="identity file issued by rae-central enroll")
    p.add_argument("--tls-cert", type=Path, default=None,
                   help="HTTPS certificate (PEM); default DATA_DIR/tls/cert.pem when present")
    p.add_argument("--tls-key", type=Path, default=None, help="private key of --tls-cert (PEM)")


def serve(args: argparse.Namespace) -> int:
    api = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    sync = {k: v for k, v in {"mqtt_url": args.mqtt_url, "enroll_file": args.enroll}.items()
            if v is not None}
    settings = config.load(args.config, data_dir=args.data_dir, api=api or None,
                                    sync=sync or None)
    try:  # the identity decides tenant, site, node and broker (settings may repeat them)
        settings = settings_from_identity(settings)
    except EnrollmentError as e:
        print(f"rae-edge serve: error: {e}", file=sys.stderr)
        return 2
    # Plain HTTP on loopback only; anywhere else HTTPS (refused before anything opens).
    tls_files = tls.resolve_for_serving(settings.api.host, settings.data_dir,
                                        args.tls_cert, args.tls_key)
    install_token_redaction()
    node = EdgeNode(settings)
    app = create_app(node)
    # Commands beside this node find it by its runtime file and come in over the local
    # admin channel, whatever port it listens on.
    host = settings.api.host
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, host)  # noqa: S104
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    attach(app, settings.data_dir, node.tenant_id,
           f"{'https' if tls_files else 'http'}://{host}:{settings.api.port}")
    pool = ThreadPoolExecutor(REQUEST_THREADS, thread_name_prefix="request")
    set_asyncio_executor(pool)
    try:
        uvicorn.run(app, host=settings.api.host, port=settings.api.port, log_level="info",
                    ssl_certfile=str(tls_files.cert) if tls_files else None,
                    ssl_keyfile=str(tls_files.key) if tls_files else None)
    finally:
        set_asyncio_executor(None)
        pool.shutdown(wait=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    return edge_cli.main(argv, extra={
        "serve": ("run the edge node", _serve_args, serve),
        "mcp": ("bridge an MCP agent on stdio to a node's /mcp", mcp_bridge.setup,
                mcp_bridge.run)})
