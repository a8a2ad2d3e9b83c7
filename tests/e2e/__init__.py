"""End-to-end tests: two real edge nodes, ``rae-central serve``, mosquitto and PostgreSQL
as processes (:mod:`tests.fixtures.stack`).

- ``test_two_plants``: a correction made at plant A reaches plant B's briefing and push
  socket once; concurrent corrections of one fix both survive in HLC order; an edge
  killed with a full outbox delivers everything exactly once.
"""
