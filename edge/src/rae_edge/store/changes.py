"""Change counters: what a cached briefing was built from, and whether it has changed since.

A briefing reads a machine's incidents, the tenant's corrections and verdicts and the
machine rows. Each writer of those tells :class:`ChangeCounters` what it changed *after*
its transaction committed; a reader takes the stamp *before* it reads. So a stamp that
still matches means nothing the reader saw has changed since (a write that committed
while it read moves the stamp on, and the next reader builds again): a cached briefing is
never older than the last acknowledged write.

Incidents, the frequent writes (machine alarms, bulk imports), move one machine's counter;
corrections, verdicts, documents and machine rows, written by people and rare, move the
whole tenant's (a correction may amend a manual section shown on any machine).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

#: (tenant id, machine id) a write changed; machine ``None``: every machine of the tenant
Touch = tuple[str, str | None]
#: what :meth:`ChangeCounters.stamp` returns: compare for equality only
Stamp = tuple[int, int]


class ChangeCounters:
    """Monotonic counters per machine and per tenant."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tenants: dict[str, int] = {}
        self._machines: dict[tuple[str, str], int] = {}

    def stamp(self, tenant_id: str, machine_id: str) -> Stamp:
        """The counters a briefing of this machine depends on (take it before reading)."""
        return (self._tenants.get(tenant_id, 0), self._machines.get((tenant_id, machine_id), 0))

    def tenant_stamp(self, tenant_id: str) -> int:
        """The counter of what all of a tenant's machines share (corrections, manuals)."""
        return self._tenants.get(tenant_id, 0)

    def touch(self, changed: Iterable[Touch]) -> None:
        """Records committed changes (call after the commit, never before)."""
        with self._lock:
            for tenant_id, machine_id in set(changed):
                if machine_id is None:
                    self._tenants[tenant_id] = self._tenants.get(tenant_id, 0) + 1
                else:
                    key = (tenant_id, machine_id)
                    self._machines[key] = self._machines.get(key, 0) + 1
