"""rae_tablet_api: the Litestar app a technician's tablet talks to.

Modules:
- ``app``: builds the Litestar application around one :class:`rae_edge.node.EdgeNode`;
- ``cli``: the ``rae-edge`` entry point, adding ``serve`` to the edge's own commands;
- ``demo``: the README's demo command (sample plant, admin token, URL printed).

It imports ``rae_edge`` only; nothing imports it.
"""
