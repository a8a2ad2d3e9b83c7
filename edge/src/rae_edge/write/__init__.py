"""The one write path: every fact the node stores goes through :class:`Writer`.

Modules:
- ``writer``: :class:`Writer` and its fixed steps (store + typed outbox message in one
  transaction, wake sync, index, one typed push, drift), reported to observers;
- ``facts``: the kinds of fact (incidents, corrections, document records), one small class
  each;
- ``targets``: the one rule for what a correction (typed or voiced) may amend.

Audit entries and drift alerts are written by their own modules (the audit log's group
commit, the drift monitor) but queue their messages with the same typed
:func:`rae_edge.store.outbox.enqueue`: nothing writes the outbox by raw SQL.
"""

from rae_edge.write.facts import CorrectionFacts, Document, DocumentFacts, IncidentFacts
from rae_edge.write.writer import STEPS, Fact, Writer, WriteStep

__all__ = ["STEPS", "CorrectionFacts", "Document", "DocumentFacts", "Fact", "IncidentFacts",
           "WriteStep", "Writer"]
