"""``/mcp``: the node as an MCP server (Streamable HTTP; see :mod:`rae_tablet_api.mcp`)."""

from __future__ import annotations

from rae_tablet_api.mcp.mount import mcp_endpoint, mcp_lifespan

ROUTES = [mcp_endpoint]
LIFESPANS = [mcp_lifespan]
