"""One module per ``rae-edge`` command family; each registers itself with
:func:`rae_edge.cli.command` when imported."""
