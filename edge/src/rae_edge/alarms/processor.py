"""From raises and clears to incidents and ``alarm`` pushes (the alarm writer thread).

Per alarm (a source's tag, metric or condition) it keeps the newest incident
(:class:`AlarmState`). A raise opens a new incident unless:
- the alarm is already open with that code (a re-read after a reconnect, a repeated
  DATA): nothing new;
- it was cleared less than ``chatter_window_s`` before: the same incident counts one more
  raise (chattering is one incident with a count);
- its source timestamp is not newer than what was applied (a replay): nothing new.
The incident id derives from (tenant, source, alarm, code, source timestamp), and the
write is idempotent on id, so even with the state lost a replay stores nothing twice. A
clear closes the incident with its duration (the first clear of an incident is pushed;
a chattering alarm's later clears are only counted). Each new incident is pushed as ``alarm``
to the machine's watchers with the machine's briefing for that code, before it is
stored and indexed (the push is what the technician waits for).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rae_edge.alarms.inbox import Episode, Inbox, Pending
from rae_edge.alarms.push import AlarmBriefing, AlarmPush
from rae_edge.alarms.store import AlarmState, AlarmStore
from rae_edge.alarms.writer import AlarmDeps, store_alarm_incidents
from rae_sync.domain import Incident

log = logging.getLogger(__name__)
BRIEFING_TTL_S = 5.0  # one briefing per machine and code for a burst of alarms


def incident_id(tenant_id: str, source: str, key: str, code: str, at: datetime) -> str:
    """The deterministic id of the incident a raise opens."""
    raw = "\x1f".join(["alarm", tenant_id, source, key, code, at.isoformat()])
    return "inc_" + hashlib.sha256(raw.encode()).hexdigest()[:24]


@dataclass
class Counters:
    incidents: int = 0
    pushes: int = 0
    clears: int = 0
    chatter: int = 0  # raises counted on an open or just-cleared incident
    replays: int = 0  # raises ignored as already applied
    errors: int = 0
    batches: int = 0


class AlarmProcessor:
    def __init__(self, deps: AlarmDeps, store: AlarmStore, inbox: Inbox,
                 chatter_window_s: float) -> None:
        self.deps = deps
        self.tenant = deps.tenant_id
        self.store = store
        self.inbox = inbox
        self.window = timedelta(seconds=chatter_window_s)
        self.states = store.load(self.tenant)
        self.counters = Counters()
        self._briefings: dict[tuple[str, str], tuple[float, AlarmBriefing]] = {}
        self._told_cleared: set[str] = {s.incident_id for s in self.states.values()
                                        if not s.active}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.idle = threading.Event()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="alarms-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.inbox.close()
        if self._thread is not None:
            self._thread.join(15)

    def _run(self) -> None:
        while not self._stop.is_set():
            items = self.inbox.take(0.2)
            if not items:
                self.idle.set()
                continue
            self.idle.clear()
            try:
                self.process(items)
            except Exception:  # a closed store at shutdown, a full disk: log, go on
                self.counters.errors += 1
                log.exception("alarms: a batch of %d alarm(s) failed", len(items))
        # what arrived before the stop is still written
        items = self.inbox.take(0)
        if items:
            try:
                self.process(items)
            except Exception:
                log.exception("alarms: the last batch failed at shutdown")

    # -- one batch ---------------------------------------------------------------------
    def process(self, items: Sequence[tuple[tuple[str, str], Pending]]) -> None:
        self.counters.batches += 1
        opened: list[tuple[Incident, AlarmState]] = []
        cleared: list[dict[str, Any]] = []  # clear pushes, as of each clear
        changed: dict[tuple[str, str], AlarmState] = {}
        for key, pending in items:
            for ep in pending.episodes:
                self._apply(key, ep, opened, cleared, changed)
        # Replays after a lost state: the incident may already be stored.
        fresh = [(inc, st) for inc, st in opened
                 if self.deps.duck.get_incident(self.tenant, inc.id) is None]
        self.counters.replays += len(opened) - len(fresh)
        for inc, st in fresh:
            try:
                self._push(self._alarm_payload(st, inc), st.machine_id)
            except Exception:
                self.counters.errors += 1
                log.exception("alarms: push of %s on %s failed", st.error_code, st.machine_id)
        if fresh:
            new = store_alarm_incidents(self.deps.memory(), self.tenant, [inc for inc, _ in fresh])
            self.counters.incidents += len(new)
        self.store.save(list(changed.values()))
        for payload in cleared:  # not waited on: the bus stores a burst in one flush
            self.deps.push.publish_soon(self.tenant, payload["machine_id"], AlarmPush.TYPE,
                                        payload)
            self.counters.pushes += 1

    def _ended(self, st: AlarmState, cleared: list[dict[str, Any]]) -> None:
        """An open incident cleared: its first clear is pushed (the banner turns green);
        the clears of a chattering alarm after that are only counted."""
        self.counters.clears += 1
        if st.incident_id not in self._told_cleared:
            self._told_cleared.add(st.incident_id)
            cleared.append(self._cleared_payload(st))

    def _apply(self, key: tuple[str, str], ep: Episode, opened: list[tuple[Incident, AlarmState]],
               cleared: list[dict[str, Any]], changed: dict[tuple[str, str], AlarmState],
               ) -> None:
        st = self.states.get(key)
        if ep.code is None:  # a clear only
            if st is not None and st.active and ep.last.occurred_at >= st.raised_at:
                st.active, st.cleared_at = False, ep.cleared_at or ep.last.occurred_at
                st.last_at = max(st.last_at, st.cleared_at)
                changed[key] = st
                self._ended(st, cleared)
            return
        first = ep.first
        at = first.occurred_at
        if st is not None and st.error_code == ep.code and st.machine_id == first.machine_id:
            chatter = (not st.active and st.cleared_at is not None
                       and at > st.cleared_at and at - st.cleared_at <= self.window)
            if st.active or chatter or at <= st.last_at:
                if at <= st.last_at and not st.active and not chatter:
                    self.counters.replays += 1  # an old raise again: nothing new
                    return
                extra = ep.raises - (1 if st.active else 0)
                if extra > 0:
                    st.count += extra
                    self.counters.chatter += extra
                was_active = st.active
                st.active = ep.active
                if not ep.active:
                    st.cleared_at = ep.cleared_at or ep.last.occurred_at
                    if was_active:
                        self._ended(st, cleared)
                st.last_at = max(st.last_at, ep.last.occurred_at)
                changed[key] = st
                return
        if st is not None and st.active:
            # The code changed without a clear (an error-code register): the old one ends.
            st.active, st.cleared_at = False, at
            self._ended(st, cleared)
        inc_id = incident_id(self.tenant, first.source, first.key, ep.code, at)
        new = AlarmState(
            tenant_id=self.tenant, source=first.source, alarm_key=first.key,
            machine_id=first.machine_id, error_code=ep.code, incident_id=inc_id,
            text=first.text, severity=first.severity, active=ep.active, raised_at=at,
            cleared_at=None if ep.active else (ep.cleared_at or ep.last.occurred_at),
            last_at=ep.last.occurred_at, count=max(1, ep.raises))
        self.counters.chatter += max(0, ep.raises - 1)
        self.states[key] = new
        changed[key] = new
        opened.append((Incident(
            tenant_id=self.tenant, machine_id=first.machine_id, occurred_at=at,
            error_code=ep.code, symptom=first.text or f"{ep.code} on {first.machine_id}",
            source=f"alarm:{first.source}", id=inc_id), new))

    # -- pushes ----------------------------------------------------------------------------
    def _push(self, payload: dict[str, Any], machine_id: str) -> None:
        self.deps.push.publish(self.tenant, machine_id, AlarmPush.TYPE, payload)
        self.counters.pushes += 1

    def _briefing(self, machine_id: str, code: str) -> AlarmBriefing:
        now = time.monotonic()
        hit = self._briefings.get((machine_id, code))
        if hit is not None and now - hit[0] < BRIEFING_TTL_S:
            return hit[1]
        b = self.deps.memory().briefing(self.tenant, machine_id, error_code=code, publish=False)
        out = AlarmBriefing(
            machine=b.machine, summary=b.summary, error_code=code,
            incidents=[i for i in b.incidents if i.error_code == code][:3],
            manual_sections=b.manual_sections[:3], drift_alerts=b.drift_alerts,
            incident_count=b.incident_count)
        self._briefings[(machine_id, code)] = (now, out)
        return out

    def _alarm_payload(self, st: AlarmState, inc: Incident) -> dict[str, Any]:
        brief = self._briefing(st.machine_id, st.error_code)
        past = [i for i in brief.incidents if i.id != inc.id]
        message = f"{st.error_code} on {st.machine_id} just now."
        if past:
            p = past[0]
            message += f" Last time ({p.occurred_at.strftime('%-d %b %Y')})"
            message += f" fixed by: {p.action}" if p.action else f": {p.symptom}"
            if p.corrections:
                message += f" — correction: {p.corrections[-1].text}"
        elif brief.manual_sections:
            s = brief.manual_sections[0]
            message += f" Manual: {s.section or s.document_title or ''}".rstrip()
        else:
            message += " No earlier record of it on this machine."
        return self._push_body(st, message, brief).data()

    def _cleared_payload(self, st: AlarmState) -> dict[str, Any]:
        times = f" (raised {st.count} times)" if st.count > 1 else ""
        message = (f"{st.error_code} on {st.machine_id} cleared after "
                   f"{_human(st.duration_s or 0.0)}{times}.")
        return self._push_body(st, message, None).data()

    @staticmethod
    def _push_body(st: AlarmState, message: str, brief: AlarmBriefing | None) -> AlarmPush:
        machine = brief.machine if brief is not None else None
        return AlarmPush(
            machine_id=st.machine_id, machine_name=machine.name if machine else None,
            line=machine.line if machine else None,
            state="active" if st.active else "cleared", error_code=st.error_code,
            text=st.text, severity=st.severity, source=st.source, key=st.alarm_key,
            incident_id=st.incident_id, raised_at=st.raised_at, cleared_at=st.cleared_at,
            duration_s=st.duration_s, count=st.count, message=message, briefing=brief)


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
