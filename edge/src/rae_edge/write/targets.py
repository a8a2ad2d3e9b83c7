"""The one rule for what a correction may amend (typed, voiced, or a voice note's target
checked at upload): the machine exists in the tenant, and the target, when given, is

- an incident of that machine, or
- a correction of that machine, or
- a searchable memory (manual section, shift entry, ...) of that machine or of no machine
  in particular; a manual section may be amended from any machine (manuals are shared).

Anything else: 404 for an unknown machine or target, 400 for another machine's memory.
"""

from __future__ import annotations

from rae_edge.errors import InvalidInputError, NotFoundError
from rae_edge.store.duck import DuckStore
from rae_edge.store.lance import LanceStore, sql_literal
from rae_sync.domain import MemoryKind


def check_machine(duck: DuckStore, tenant_id: str, machine_id: str) -> None:
    if duck.get_machine(tenant_id, machine_id) is None:
        raise NotFoundError(f"unknown machine {machine_id!r}: register it first "
                            "(POST /api/v1/machines)")


def check_target(duck: DuckStore, lance: LanceStore, tenant_id: str, machine_id: str,
                 target_id: str | None) -> None:
    """Raises unless ``machine_id`` exists and ``target_id`` (if any) may be amended from
    it (see the module's rule)."""
    check_machine(duck, tenant_id, machine_id)
    if not target_id:
        return
    inc = duck.get_incident(tenant_id, target_id)
    if inc is not None:
        if inc.machine_id != machine_id:
            raise InvalidInputError(
                f"target {target_id!r} is an incident of machine {inc.machine_id!r}, "
                f"not of {machine_id!r}")
        return
    cor = duck.query("SELECT machine_id FROM corrections WHERE tenant_id = ? AND id = ?",
                     [tenant_id, target_id])
    if cor:
        if cor[0][0] != machine_id:
            raise InvalidInputError(
                f"target {target_id!r} is a correction of machine {cor[0][0]!r}, "
                f"not of {machine_id!r}")
        return
    rows = lance.rows(f"tenant_id = {sql_literal(tenant_id)} AND id = {sql_literal(target_id)}",
                      ["id", "machine_id", "kind"], 1)
    if not rows:
        raise NotFoundError(f"unknown target {target_id!r}: no incident, manual section or "
                            "correction has that id")
    other = rows[0].get("machine_id")
    if other and other != machine_id and rows[0]["kind"] != MemoryKind.MANUAL.value:
        raise InvalidInputError(
            f"target {target_id!r} belongs to machine {other!r}, not to {machine_id!r}")
