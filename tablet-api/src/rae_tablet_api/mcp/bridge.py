"""``rae-edge mcp --url URL --token-file F``: a desktop agent that speaks MCP over stdio
reaches a node's ``/mcp`` through this bridge.

Messages are relayed as they are in both directions (the SDK's stdio server transport on
one side, its Streamable HTTP client on the other), so whatever the node's tools become,
the bridge needs no change. The token is read from a file (never a command-line argument,
which other users of the machine can see) and sent as the bearer token; a refused token
ends the bridge with a message on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp.client.streamable_http import streamable_http_client
from mcp.server.stdio import stdio_server
from mcp.shared._httpx_utils import create_mcp_http_client

log = logging.getLogger(__name__)


def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True,
                   help="the node's base URL (https://node:8470) or its /mcp endpoint")
    p.add_argument("--token-file", type=Path, required=True,
                   help="file holding the API token (any role; the tools check it)")


def endpoint(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/mcp") else url + "/mcp"


async def _pump(source: Any, sink: Any, label: str) -> None:
    async for message in source:
        if isinstance(message, Exception):  # a transport fault: say so, keep relaying
            log.warning("mcp bridge (%s): %s", label, message)
            continue
        await sink.send(message)


class RefusedError(Exception):
    pass


async def bridge(url: str, token: str) -> None:
    """Relays stdio <-> ``url`` until stdin closes. A token the node refuses ends it before
    the agent is answered anything (the agent sees the bridge exit, not a silent hang)."""
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http:
        probe = await http.post(url, json={"jsonrpc": "2.0", "id": 0, "method": "ping"},
                                headers={"Accept": "application/json, text/event-stream"})
        if probe.status_code in (401, 403, 429):
            raise RefusedError(f"{url} refused the token ({probe.status_code}): "
                               f"{probe.text[:300]}")
        await _relay(url, http)


async def _relay(url: str, http: Any) -> None:
    async with streamable_http_client(url, http_client=http) as (remote_in, remote_out), \
            stdio_server() as (local_in, local_out), anyio.create_task_group() as tg:
        async def agent_to_node() -> None:
            await _pump(local_in, remote_out, "agent -> node")
            tg.cancel_scope.cancel()  # stdin closed: the agent is gone

        tg.start_soon(agent_to_node)
        tg.start_soon(_pump, remote_in, local_out, "node -> agent")


def run(args: argparse.Namespace) -> int:
    try:
        token = args.token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        print(f"error: cannot read --token-file: {exc}", file=sys.stderr)
        return 2
    if not token:
        print(f"error: {args.token_file} is empty: put the API token in it", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        anyio.run(bridge, endpoint(args.url), token)
    except RefusedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0
