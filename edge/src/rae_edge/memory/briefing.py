"""The briefing a technician gets on scanning a machine, built from stored records only.

Sources: the machine's own incidents (DuckDB, by machine and time: never another
machine's), the corrections in force at ``as_of`` (each shown with the incident it amends;
the correction wins, the superseded fix stays visible), recurring problems (the same error
code, also one its text names, or the same symptom more than once), "this fixed it"
confirmations per incident (every plant's), the manual sections for its error codes (LanceDB,
prefiltered), open drift alerts, and a one-paragraph summary written from these records
by :func:`summarize` (no language model).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict, defaultdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from rae_edge.memory.fields import text_code
from rae_edge.memory.models import (
    BriefIncident,
    Briefing,
    CorrectionOut,
    MachineOut,
    ManualSection,
    RecurringProblem,
)
from rae_edge.store.lance import sql_literal
from rae_sync.domain import Correction, Incident, Machine

if TYPE_CHECKING:
    from rae_edge.drift import DriftAlert, DriftMonitor
    from rae_edge.memory.feedback import FeedbackService
    from rae_edge.store.duck import DuckStore
    from rae_edge.store.lance import LanceStore

MAX_INCIDENTS = 50  # shown; ``incident_count`` tells how many there are
MAX_SECTIONS = 8
MAX_CODES = 16
MAX_EVIDENCE = 5  # ids per drift alert evidence list in a briefing
MAX_ALERTS = 10  # newest open drift alerts in a briefing
MAX_ALERT_SUMMARY = 240
MAX_MANUAL_ROWS = 100_000  # manual sections naming error codes, per tenant
SUMMARY_INCIDENTS = 3
CACHED_BRIEFINGS = 1024  # (machine, error code) pairs kept; ~30 KiB each at most
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECTION_COLUMNS = ["id", "document_id", "section", "page", "error_codes", "text", "source"]


def _symptom_key(s: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", s.casefold()))


def recurring_problems(incidents: list[Incident]) -> list[RecurringProblem]:
    """Error codes, then symptoms (codeless incidents), seen more than once."""
    by_code: dict[str, list[Incident]] = defaultdict(list)
    by_symptom: dict[str, list[Incident]] = defaultdict(list)
    for inc in incidents:
        if inc.error_code:
            by_code[inc.error_code].append(inc)
        else:
            by_symptom[_symptom_key(inc.symptom)].append(inc)
    out: list[RecurringProblem] = []
    for code, group in by_code.items():
        if len(group) > 1:
            out.append(_problem(code, code, group[0].symptom, group))
    for _, group in by_symptom.items():
        if len(group) > 1:
            out.append(_problem(group[0].symptom, None, group[0].symptom, group))
    out.sort(key=lambda p: (-p.count, -p.last_at.timestamp(), p.label))
    return out


def _problem(label: str, code: str | None, symptom: str,
             group: list[Incident]) -> RecurringProblem:
    times = [i.occurred_at for i in group]
    return RecurringProblem(label=label, error_code=code, symptom=symptom, count=len(group),
                            first_at=min(times), last_at=max(times),
                            incident_ids=[i.id for i in group])


def _day(t: datetime) -> str:
    return f"{t.day} {t:%b %Y}"


def _later(start: datetime, end: datetime) -> str:
    days = (end - start).days
    if days <= 0:
        hours = int((end - start).total_seconds() // 3600)
        return "the same day" if hours < 1 else f"{hours} hours later"
    if days == 1:
        return "1 day later"
    if days < 60:
        return f"{days} days later"
    return f"{days // 30} months later"


def _sentence(text: str) -> str:
    text = " ".join(text.split()).rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."


def summarize(machine: Machine, incidents: list[BriefIncident],
              recurring: list[RecurringProblem], sections: list[ManualSection],
              drift: list[dict[str, Any]], general: list[CorrectionOut],
              error_code: str | None = None) -> str:
    """One paragraph from the records, e.g. "This machine had error E404 (...) on 12 Nov
    2026. Fixed by: replaced sensor X. Correction (3 days later): sensor X was loose."""
    parts: list[str] = []
    if error_code:
        seen = [i for i in incidents if i.error_code == error_code]
        parts.append(f"Current error {error_code}: seen {len(seen)} time(s) before on this "
                     "machine." if seen else
                     f"Current error {error_code}: not seen before on this machine.")
    if not incidents:
        parts.append(f"No incidents are recorded for {machine.name} yet.")
    for n, inc in enumerate(incidents[:SUMMARY_INCIDENTS]):
        what = f"error {inc.error_code} ({inc.symptom})" if inc.error_code else inc.symptom
        lead = "This machine had" if n == 0 else "Before that, it had"
        parts.append(f"{lead} {_sentence(what)[:-1]} on {_day(inc.occurred_at)}.")
        if inc.action:
            parts.append(f"Fixed by: {_sentence(inc.action)}")
        for c in inc.corrections:
            parts.append(f"Correction ({_later(inc.occurred_at, c.valid_from)}): "
                         f"{_sentence(c.text)}")
        if inc.confirmations:
            plants = f"{inc.confirmed_plants} plant{'s' if inc.confirmed_plants != 1 else ''}"
            parts.append(f"Confirmed {inc.confirmations}× at {plants}.")
    for p in recurring[:2]:
        parts.append(f"Recurring: {p.label} {p.count} times, last on {_day(p.last_at)}.")
    for c in general[-2:]:
        parts.append(f"Field note ({_day(c.valid_from)}): {_sentence(c.text)}")
    if sections:
        codes = sorted({c for s in sections for c in s.error_codes})
        parts.append(f"The manual covers {', '.join(codes[:6]) or 'this machine'} "
                     f"({len(sections)} section(s) below).")
    if drift:
        parts.append(f"{len(drift)} open drift alert(s): the field contradicts the manual.")
    return " ".join(parts)


class BriefingBuilder:
    """Builds briefings for one node."""

    def __init__(self, duck: DuckStore, lance: LanceStore, *, feedback: FeedbackService,
                 drift: DriftMonitor) -> None:
        self.duck = duck
        self.lance = lance
        self.feedback = feedback
        self.drift = drift
        self._manual_cache: dict[
            str, tuple[tuple[int, int], list[dict[str, Any]], dict[str, list[str]]]] = {}
        self._drift_cache: dict[str, tuple[tuple[int, int, int], list[DriftAlert]]] = {}
        # Briefings of now (no ``as_of``) by (tenant, machine, error code), with the stamp
        # of what they were built from: a scan of a machine nothing was written to since
        # its last scan costs a dict lookup (see rae_edge.store.changes for why a matching
        # stamp means the briefing is current).
        self._built: OrderedDict[tuple[str, str, str | None],
                                 tuple[tuple[Any, ...], Briefing]] = OrderedDict()
        self._built_lock = threading.Lock()

    def build(self, tenant_id: str, machine: Machine, *, as_of: datetime | None = None,
              error_code: str | None = None) -> Briefing:
        if as_of is not None:
            return self._build(tenant_id, machine, as_of, error_code)
        # Taken before anything is read: a write committed meanwhile moves it on.
        stamp = (self.duck.changes.stamp(tenant_id, machine.id), self.lance.manual_writes,
                 self.drift.generation, machine)
        key = (tenant_id, machine.id, error_code)
        with self._built_lock:
            hit = self._built.get(key)
            if hit is not None and hit[0] == stamp:
                self._built.move_to_end(key)
                return hit[1]
        out = self._build(tenant_id, machine, None, error_code)
        with self._built_lock:
            self._built[key] = (stamp, out)
            self._built.move_to_end(key)
            while len(self._built) > CACHED_BRIEFINGS:
                self._built.popitem(last=False)
        return out

    def _build(self, tenant_id: str, machine: Machine, as_of: datetime | None,
               error_code: str | None) -> Briefing:
        duck = self.duck
        incidents, count = self._incidents(tenant_id, machine.id, as_of)
        incidents = self._with_text_codes(incidents)
        corrections = duck.corrections_for_machine(tenant_id, machine.id, as_of)
        by_target: dict[str, list[Correction]] = defaultdict(list)
        for c in corrections:
            if c.target_id:
                by_target[c.target_id].append(c)
        recurring = recurring_problems(incidents)
        in_recurring = {i for p in recurring for i in p.incident_ids}
        shown = incidents
        if error_code:  # the current error's history first, each group newest first
            shown = sorted(incidents, key=lambda i: i.error_code != error_code)
        brief = [self._incident(i, by_target.get(i.id, []), error_code, in_recurring)
                 for i in shown[:MAX_INCIDENTS]]
        self._confirmations(tenant_id, brief)
        codes = list(dict.fromkeys(
            ([error_code] if error_code else []) + [i.error_code for i in incidents
                                                    if i.error_code]))[:MAX_CODES]
        # What the manual sections and drift alerts were read from (tenant-wide caches).
        version = (self.lance.manual_writes, self.duck.changes.tenant_stamp(tenant_id))
        sections = self._sections(tenant_id, machine.id, codes, by_target, as_of, version)
        incident_ids = {i.id for i in incidents}
        section_ids = {s.id for s in sections}
        general = [CorrectionOut.of(c) for c in corrections
                   if not c.target_id or (c.target_id not in incident_ids
                                          and c.target_id not in section_ids)]
        drift = self._drift(tenant_id, machine.id, {i.error_code for i in incidents}, version)
        summary = summarize(machine, brief, recurring, sections, drift, general, error_code)
        return Briefing(machine=MachineOut.of(machine), as_of=as_of, error_code=error_code,
                        summary=summary, incidents=brief, recurring=recurring,
                        manual_sections=sections,
                        corrections=[CorrectionOut.of(c) for c in corrections],
                        drift_alerts=drift, incident_count=count)

    def _incidents(self, tenant_id: str, machine_id: str,
                   as_of: datetime | None) -> tuple[list[Incident], int]:
        """The machine's newest incidents (up to ``10 * MAX_INCIDENTS``, for recurring
        problems) and how many it has in all, in one query."""
        # epoch_us: DuckDB's per-value time-zone conversion costs more than the query.
        sql = ("SELECT tenant_id, id, machine_id, epoch_us(occurred_at) AS occurred_at, "
               "error_code, symptom, action, source, content_hash, count(*) OVER () AS total "
               "FROM incidents WHERE tenant_id = ? AND machine_id = ?")
        params: list[Any] = [tenant_id, machine_id]
        if as_of is not None:
            sql += " AND occurred_at <= ?"
            params.append(as_of)
        sql += " ORDER BY occurred_at DESC, id LIMIT ?"
        params.append(10 * MAX_INCIDENTS)
        rows = self.duck.query_dicts(sql, params)
        total = int(rows[0]["total"]) if rows else 0
        for r in rows:
            del r["total"]
            r["occurred_at"] = _EPOCH + timedelta(microseconds=r["occurred_at"])
        # Rows read back from our own table were validated when stored: skip re-validation
        # (it costs more than the query at a hundred incidents).
        return [Incident.model_construct(**r) for r in rows], total

    @staticmethod
    def _with_text_codes(incidents: list[Incident]) -> list[Incident]:
        """Incidents logged without a code take the first code their text names (the one
        ingest stored in ``memory_fields``), so "E404 again" groups with the E404 ones."""
        out: list[Incident] = []
        for i in incidents:
            code = None if i.error_code else text_code(i)
            out.append(Incident.model_construct(**{**dict(i), "error_code": code})
                       if code else i)
        return out

    def _confirmations(self, tenant_id: str, brief: list[BriefIncident]) -> None:
        """"This fixed it" verdicts on each incident and its corrections (every plant)."""
        ids = [x for b in brief for x in (b.id, *b.superseded_by)]
        verdicts = self.feedback.for_memories(tenant_id, ids)
        for b in brief:
            found = [verdicts[x] for x in (b.id, *b.superseded_by) if x in verdicts]
            b.confirmations = sum(v.confirmations for v in found)
            b.confirmed_plants = len(set().union(*(v.plants for v in found))) if found else 0

    @staticmethod
    def _incident(inc: Incident, corrections: list[Correction], error_code: str | None,
                  in_recurring: set[str]) -> BriefIncident:
        relevance = ("error_code" if error_code and inc.error_code == error_code
                     else "recurring" if inc.id in in_recurring else "recent")
        outs = [CorrectionOut.of(c) for c in corrections]
        # Built from stored, validated records: construct without re-validating.
        return BriefIncident.model_construct(
            id=inc.id, machine_id=inc.machine_id, occurred_at=inc.occurred_at,
            error_code=inc.error_code, symptom=inc.symptom, action=inc.action,
            source=inc.source, corrections=outs, superseded=bool(outs),
            superseded_by=[c.id for c in outs],
            current_fix=outs[-1].text if outs else inc.action, relevance=relevance)

    def _sections(self, tenant_id: str, machine_id: str, codes: list[str],
                  by_target: dict[str, list[Correction]], as_of: datetime | None,
                  version: tuple[int, int]) -> list[ManualSection]:
        if not codes:
            return []
        wanted = set(codes)
        manual, amended = self._manual(tenant_id, version)
        rows = [r for r in manual
                if (r.get("machine_id") is None or r.get("machine_id") == machine_id)
                and wanted.intersection(r.get("error_codes") or ())]
        order = {c: n for n, c in enumerate(codes)}

        def rank(r: dict[str, Any]) -> tuple[int, int, str]:
            mine = [order[c] for c in (r.get("error_codes") or []) if c in order]
            return (min(mine, default=len(order)), int(r.get("page") or 0), str(r["id"]))

        rows = sorted(rows, key=rank)[:MAX_SECTIONS]
        if as_of is not None:  # what amended them then, not now
            amended = {k: [c.id for c in v] for k, v in self.duck.corrections_for_targets(
                tenant_id, [r["id"] for r in rows], as_of).items()}
        return [ManualSection(
            id=r["id"], document_id=r.get("document_id"), document_title=r.get("source"),
            section=r.get("section"), page=r.get("page"),
            error_codes=list(r.get("error_codes") or []), text=r["text"],
            superseded_by=amended.get(r["id"], [])) for r in rows]

    def _manual(self, tenant_id: str, version: tuple[int, int],
                ) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
        """The tenant's manual sections that name error codes, and the corrections amending
        each, cached per ``version``: LanceDB's writes of manual sections and the tenant's
        change counter (which every stored correction moves), so never stale."""
        hit = self._manual_cache.get(tenant_id)
        if hit is not None and hit[0] == version:
            return hit[1], hit[2]
        where = (f"tenant_id = {sql_literal(tenant_id)} AND kind = 'manual' AND "
                 "array_length(error_codes) > 0")
        rows = self.lance.rows(where, [*_SECTION_COLUMNS, "machine_id"], MAX_MANUAL_ROWS)
        amended = {k: [c.id for c in v] for k, v in self.duck.corrections_for_targets(
            tenant_id, [r["id"] for r in rows]).items()}
        self._manual_cache[tenant_id] = (version, rows, amended)
        return rows, amended

    def _drift(self, tenant_id: str, machine_id: str, codes: set[str | None],
               version: tuple[int, int]) -> list[dict[str, Any]]:
        """Open drift alerts that concern the machine (it is in their evidence, or it had
        their error code). The tenant's alerts are re-read only when an alert, a
        correction or a manual changed since the last briefing: the monitor's generation
        moves on with every change to the alerts (read before the alerts)."""
        key = (self.drift.generation, *version)
        hit = self._drift_cache.get(tenant_id)
        if hit is None or hit[0] != key:
            hit = (key, [a for a in self.drift.open_alerts(tenant_id)])
            self._drift_cache[tenant_id] = hit
        mine = [a for a in hit[1] if machine_id in a.machine_ids or a.error_code in codes]
        return [_alert_brief(a) for a in mine[:MAX_ALERTS]]  # newest first


def _alert_brief(alert: DriftAlert) -> dict[str, Any]:
    """An alert as a briefing shows it: evidence lists cut to their first
    :data:`MAX_EVIDENCE` ids with counts, the summary to :data:`MAX_ALERT_SUMMARY`
    characters (``GET /api/v1/drift-alerts`` has everything)."""
    out = alert.to_json()
    if len(out["summary"]) > MAX_ALERT_SUMMARY:
        out["summary"] = out["summary"][:MAX_ALERT_SUMMARY - 1].rstrip() + "…"
    for key in ("machine_ids", "correction_ids", "manual_section_ids"):
        ids = out[key]
        out[key.replace("_ids", "_count")] = len(ids)
        out[key] = ids[:MAX_EVIDENCE]
    return out
