"""The checker of the history test (:mod:`tests.e2e.test_history`): what every place
(central's PostgreSQL, each plant's DuckDB) holds, compared with what the writers were
told (:class:`tests.e2e.history_load.Ack`), and whether each fault landed while
corrections were in flight.

Every place is read as a *list* of rows in its own order (duplicates kept, counted with
:class:`collections.Counter`): an acknowledged correction must be at each place exactly
once, with the same hybrid-clock stamp everywhere, and any two corrections in the same
relative order at every place; a plant's own corrections carry growing stamps in the
order they were acknowledged (each writer waits for its answer before the next); each
plant's push log (what its tablets are sent) holds each of them exactly once.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rae_edge.store.duck import _CORRECTION_ORDER as NODE_ORDER  # the briefing's order
from tests.e2e.history_faults import Fault
from tests.e2e.history_load import Ack

KEY_RE = re.compile(r"^\[(hist-[a-z]+-\d+)\] ")


@dataclass(frozen=True)
class Row:
    """One correction as a place holds it; ``at`` is when that place stored it (epoch
    seconds by that place's clock)."""

    id: str
    hlc: str
    origin: str
    key: str
    at: float


def _row(r: Iterable[Any]) -> Row:
    id_, hlc, origin, text, at = r
    m = KEY_RE.match(str(text))
    stamp = at.timestamp() if isinstance(at, datetime) else float("nan")
    return Row(str(id_), str(hlc or ""), str(origin), m.group(1) if m else "", stamp)


def central_rows(engine: Any, tenant: str = "acme") -> list[Row]:
    """Central's corrections in its own order (:data:`rae_central.store.CORRECTION_ORDER`),
    ``at`` = ``received_at``."""
    from sqlalchemy import select

    from rae_central.db.models import CorrectionRow as C
    from rae_central.store import CORRECTION_ORDER

    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(
            select(C.id, C.hlc, C.origin_node, C.text, C.received_at)
            .where(C.tenant_id == tenant).order_by(*CORRECTION_ORDER)).all()]


def node_rows(duckdb_file: Path, tenant: str = "acme") -> tuple[list[Row], list[str]]:
    """A stopped node's corrections in its briefing order (``at`` = ``created_at``), and
    the correction ids of its push log (what its tablets were sent), in push order."""
    import duckdb

    con = duckdb.connect(str(duckdb_file), read_only=True)
    try:
        rows = [_row(r) for r in con.execute(
            "SELECT id, hlc, origin_node, text, created_at FROM corrections "
            "WHERE tenant_id = ?" + NODE_ORDER, [tenant]).fetchall()]
        pushed = [str(r[0]) for r in con.execute(
            "SELECT json_extract_string(payload, '$.correction.id') FROM push_messages "
            "WHERE tenant_id = ? AND type = 'correction' ORDER BY seq", [tenant]).fetchall()]
        return rows, pushed
    finally:
        con.close()


def _short(items: list[str], n: int = 12) -> str:
    return ", ".join(items[:n]) + (f" ... (+{len(items) - n})" if len(items) > n else "")


def problems(acks: list[Ack], unacked: list[str], places: dict[str, list[Row]],
             pushed: dict[str, list[str]], known: frozenset[str] = frozenset()) -> list[str]:
    """Everything that breaks the promise, one line each (empty: the history holds);
    ``pushed``: per plant, the correction ids its push log holds; ``known``: keys whose
    second copy is a known limit (:func:`retry_copies`), left out here."""
    out: list[str] = []
    acked = {a.id: a for a in acks}
    for plant, ids in pushed.items():
        counts = Counter(ids)
        wrong = [f"{i} x{counts[i]}" for i in acked if counts[i] != 1]
        if wrong:
            out.append(f"{plant}: {len(wrong)} acknowledged corrections not pushed to its "
                       f"tablets exactly once: {_short(wrong)}")
    if len(acked) != len(acks):
        dup = [i for i, n in Counter(a.id for a in acks).items() if n > 1]
        out.append(f"one id answered for two keys: {_short(dup)}")
    hlc_at: dict[str, dict[str, str]] = {}
    for place, rows in places.items():
        counts = Counter(r.id for r in rows)
        missing = [f"{i} ({acked[i].key})" for i in acked if counts[i] == 0]
        doubled = [f"{i} x{counts[i]}" for i in acked if counts[i] > 1]
        if missing:
            out.append(f"{place}: {len(missing)} acknowledged corrections missing: "
                       f"{_short(missing)}")
        if doubled:
            out.append(f"{place}: {len(doubled)} acknowledged corrections more than once: "
                       f"{_short(doubled)}")
        unstamped = [r.id for r in rows if not r.hlc]
        if unstamped:
            out.append(f"{place}: {len(unstamped)} corrections without a stamp: "
                       f"{_short(unstamped)}")
        hlc_at[place] = {r.id: r.hlc for r in rows}
        # a retry under the same key stored a second correction
        by_key = Counter(r.key for r in rows if r.key)
        twice = [f"{k} x{n}" for k, n in by_key.items() if n > 1 and k not in known]
        if twice:
            out.append(f"{place}: a key stored more than once (a retry duplicated): "
                       f"{_short(twice)}")
        strangers = [r.id for r in rows if r.key == "" or (
            r.id not in acked and r.key not in unacked and r.key not in known)]
        if strangers:
            out.append(f"{place}: corrections no writer made or lost track of: "
                       f"{_short(strangers)}")
    # the same stamp everywhere
    for i in acked:
        stamps = {p: h[i] for p, h in hlc_at.items() if i in h}
        if len(set(stamps.values())) > 1:
            out.append(f"{i}: different stamps at different places: {stamps}")
    # the same relative order everywhere: each place's sequence of the ids all hold
    common = set(acked).intersection(*(set(h) for h in hlc_at.values()))
    seqs = {p: [r.id for r in rows if r.id in common] for p, rows in places.items()}
    ref_place, ref = next(iter(seqs.items()))
    for p, seq in seqs.items():
        if seq != ref:
            k = next((j for j, (x, y) in enumerate(zip(seq, ref, strict=False)) if x != y),
                     min(len(seq), len(ref)))
            out.append(f"order differs between {ref_place} and {p} at position {k}: "
                       f"{ref[k:k + 4]} vs {seq[k:k + 4]}")
    # each plant's own corrections: stamps grow in the order they were acknowledged
    central = hlc_at.get("central", {})
    for plant in sorted({a.plant for a in acks}):
        mine = [(a.key, central.get(a.id, "")) for a in acks if a.plant == plant]
        mine = [(k, h) for k, h in mine if h]
        back = [f"{mine[j][0]} {mine[j][1]} after {mine[j - 1][0]} {mine[j - 1][1]}"
                for j in range(1, len(mine)) if mine[j][1] <= mine[j - 1][1]]
        if back:
            out.append(f"plant {plant}: stamps not growing in the order acknowledged: "
                       f"{_short(back, 4)}")
    return out


def retry_copies(acks: list[Ack], central: list[Row], faults: list[Fault]) -> dict[str, str]:
    """Keys stored twice at central because their node was killed (or stopped for its
    offline window) while the first attempt ran, and the retry with the same key stored
    again: the known limit of ``rae_tablet_api.idempotency`` (the handler's write and the
    kept answer are two commits). Key -> the id of the unacknowledged copy."""
    out: dict[str, str] = {}
    by_key = {a.key: a for a in acks}
    for key, n in Counter(r.key for r in central if r.key).items():
        a = by_key.get(key)
        if n != 2 or a is None or a.attempts < 2:
            continue
        if not any(f.kind in ("node-kill", "node-offline") and f.target == a.plant
                   and a.sent_at <= f.start <= a.acked_at for f in faults):
            continue
        [other] = [r.id for r in central if r.key == key and r.id != a.id]
        out[key] = other
    return out


@dataclass(frozen=True)
class Landing:
    """Evidence that one fault struck while corrections were in flight."""

    fault: Fault
    acked_before: int  # acknowledged before it began
    acked_during: int  # acknowledged while it lasted
    acked_after: int  # acknowledged after it ended
    in_flight: int  # acknowledged before it began, stored at central / applied after it began
    skewed_stamps: int = 0  # clock-skew: corrections stamped ahead of true time by >= 30 s

    @property
    def landed(self) -> bool:
        if self.fault.kind == "clock-skew":
            return self.skewed_stamps > 0
        return self.acked_before > 0 and self.acked_after > 0 and self.in_flight > 0

    def __str__(self) -> str:
        extra = f", {self.skewed_stamps} stamped ahead" if self.fault.kind == "clock-skew" else ""
        return (f"{self.fault}: acks before/during/after {self.acked_before}/"
                f"{self.acked_during}/{self.acked_after}, {self.in_flight} in flight{extra}")


def landings(faults: list[Fault], acks: list[Ack], places: dict[str, list[Row]],
             plant_of: dict[str, str], skewed: str) -> list[Landing]:
    """Per fault: acks around it and the acknowledged corrections still on their way when
    it began: up (acked before, stored at central after) and down (acked at another plant
    before, applied at a plant after; at the faulted node for a node fault, at any plant
    otherwise). A node offline for minutes has, besides, everything the other plants
    acknowledge while it is away on its way to it: down counts those too (acked before it
    came back, applied at it after it went). The skewed plant's own clock does not date
    its applications."""
    central = {r.id: r for r in places["central"]}
    applied = {p: {r.id: r.at for r in places[p] if r.origin != plant_of[p]}
               for p in plant_of if p != skewed}
    out = []
    for f in faults:
        node_fault = f.target in plant_of
        before = [a for a in acks if a.acked_at < f.start]
        up = [a for a in before if (not node_fault or a.plant == f.target)
              and a.id in central and central[a.id].at >= f.start]
        sent = ([a for a in acks if a.acked_at < f.end] if f.kind == "node-offline"
                else before)
        down = [a for a in sent for p in ([f.target] if node_fault else list(applied))
                if p in applied and a.plant != p and applied[p].get(a.id, 0.0) >= f.start]
        ahead = 0
        if f.kind == "clock-skew":
            ahead = sum(1 for a in acks if a.plant == f.target and f.start <= a.acked_at
                        <= f.end and a.id in central
                        and int(central[a.id].hlc[:13]) - a.acked_at * 1000 > 30_000)
        out.append(Landing(
            f, len(before), sum(f.start <= a.acked_at <= f.end for a in acks),
            sum(a.acked_at > f.end for a in acks), len(up) + len(down), ahead))
    return out
