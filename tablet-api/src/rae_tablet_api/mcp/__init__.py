"""The node as an MCP server for AI agents (official ``mcp`` SDK, Streamable HTTP at ``/mcp``).

Modules:
- ``tools``: the MCP server: typed tools (briefing, search, context pack, correction,
  incident, machines, voice-note status) and resources (machines, manual sections), each
  call scoped to the caller's tenant, role-checked and audited with the ids it returned;
- ``schemas``: output schemas published compact (references inlined, nullable fields as
  type lists): the same constraints, cheaper for agents to check;
- ``mount``: the ASGI endpoint mounted on the Litestar app (bearer token checked before the
  SDK sees the request) and the session manager's lifespan;
- ``bridge``: ``rae-edge mcp --url --token-file``, stdio <-> Streamable HTTP for desktop agents.
"""
