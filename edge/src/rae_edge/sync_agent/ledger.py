"""The sync agent's durable state in the node's DuckDB (tables of migration 4).

- ``sync_state``: ``last_seq`` (the node's stream position, only grows), ``last_outbox_seq``
  (outbox rows up to here are sealed) and ``hlc`` (the clock, so it grows across restarts);
- ``sync_sent``: every sealed envelope by ``seq``, until central acks it and for
  ``retain_acked`` more after (replays of acked seqs);
- ``sync_unsendable``: outbox rows that cannot become a message, moved aside with why;
- ``sync_applied``: message ids of down messages already applied (dedupe), and of those
  set aside as refused (type ``refused``; the message itself, with why, is appended to
  ``sync-refused.jsonl`` beside the database);
- ``sync_state.down_cursor`` / ``down_applied``: the node's own position in what comes
  down (the highest fanned-out seq applied) and how many it applied, sent to central in
  the resume message of every connect.

Sealing and acking are each one transaction: after a kill -9 a row is either still in the
outbox unsealed, or sealed (seq, message id and bytes fixed) and still in the outbox until
its ack, so a restart re-sends the same envelope and never a second copy under a new id.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rae_edge.store import DuckStore
from rae_edge.sync_agent.codec import Unsendable, message_for
from rae_sync.envelope import Envelope
from rae_sync.hlc import Hlc, HybridClock
from rae_sync.messages import CorrectionMsg, Message


@dataclass(frozen=True)
class Sealed:
    """One sealed envelope waiting to go (or go again)."""

    seq: int
    message_id: str
    type: str
    data: bytes


Sealer = Callable[[Message, int, Hlc], tuple[Envelope, bytes]]


class SyncLedger:
    """Reads and writes the agent's tables."""

    def __init__(self, duck: DuckStore, tenant_id: str) -> None:
        self.duck = duck
        self.tenant_id = tenant_id

    # -- state --------------------------------------------------------------------------
    def state(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.duck.query("SELECT key, value FROM sync_state")}

    def last_seq(self) -> int:
        return int(self.state().get("last_seq", "0"))

    def clock(self) -> HybridClock:
        return HybridClock(start=self.state().get("hlc") or None)

    @staticmethod
    def _put(cur: Any, key: str, value: object, *more: tuple[str, object]) -> None:
        pairs = [(key, value), *more]
        cur.execute("INSERT INTO sync_state VALUES " + ", ".join("(?, ?)" for _ in pairs)
                    + " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [x for k, v in pairs for x in (k, str(v))])

    def save_clock(self, hlc: Hlc) -> None:
        with self.duck.transaction() as cur:
            self._put(cur, "hlc", hlc)

    # -- sealing ------------------------------------------------------------------------
    def unacked_count(self) -> int:
        return int(self.duck.query("SELECT count(*) FROM sync_sent WHERE acked_at IS NULL")[0][0])

    def seal_outbox(self, limit: int, clock: HybridClock, seal: Sealer
                    ) -> tuple[list[Sealed], list[str]]:
        """Seals up to ``limit`` outbox rows not sealed yet, in one transaction; returns
        the sealed envelopes and the reasons of rows moved aside as unsendable."""
        problems: list[str] = []
        with self.duck.transaction() as cur:
            st = dict(cur.execute("SELECT key, value FROM sync_state").fetchall())
            last_seq = int(st.get("last_seq", 0))
            last_outbox = int(st.get("last_outbox_seq", 0))
            rows = cur.execute(
                "SELECT seq, tenant_id, kind, payload FROM outbox WHERE seq > ? "
                "ORDER BY seq LIMIT ?", [last_outbox, limit]).fetchall()
            if not rows:
                return [], problems
            sent: list[list[Any]] = []
            stamped: list[tuple[str, str]] = []
            stamp = clock.last
            for oseq, tenant, kind, payload in rows:
                last_outbox = int(oseq)
                body = json.loads(payload) if isinstance(payload, str) else payload
                stamp = clock.now()
                try:
                    if tenant != self.tenant_id:
                        raise Unsendable(f"row of tenant {tenant!r} on a node of tenant "
                                         f"{self.tenant_id!r}")
                    msg = message_for(str(kind), dict(body), str(stamp))
                except Unsendable as e:
                    problems.append(f"outbox row {oseq} ({kind}): {e}")
                    cur.execute("INSERT OR REPLACE INTO sync_unsendable (outbox_seq, tenant_id, "
                                "kind, payload, reason) VALUES (?, ?, ?, ?, ?)",
                                [oseq, tenant, kind, json.dumps(body), str(e)])
                    cur.execute("DELETE FROM outbox WHERE seq = ?", [oseq])
                    continue
                last_seq += 1
                env, data = seal(msg, last_seq, stamp)
                sent.append([last_seq, env.message_id, oseq, env.type.value,
                             data.decode("utf-8")])
                if isinstance(msg, CorrectionMsg):
                    stamped.append((msg.correction.id, msg.correction.hlc))
            # one statement each (DuckDB's executemany costs ~1 ms a row)
            if sent:
                cols = list(zip(*sent, strict=True))
                cur.execute(
                    "INSERT INTO sync_sent (seq, message_id, outbox_seq, type, envelope) "
                    "SELECT unnest(?::BIGINT[]), unnest(?::VARCHAR[]), unnest(?::BIGINT[]), "
                    "unnest(?::VARCHAR[]), unnest(?::VARCHAR[])", [list(c) for c in cols])
            if stamped:  # the node's own copy of a correction gets the same clock stamp
                ids, hlcs = (list(c) for c in zip(*stamped, strict=True))
                cur.execute(
                    "UPDATE corrections SET hlc = m.hlc FROM (SELECT unnest(?::VARCHAR[]) AS id, "
                    "unnest(?::VARCHAR[]) AS hlc) AS m WHERE corrections.tenant_id = ? AND "
                    "corrections.id = m.id AND corrections.hlc = ''", [ids, hlcs, self.tenant_id])
            self._put(cur, "last_seq", last_seq, ("last_outbox_seq", last_outbox),
                      ("hlc", stamp))
        if stamped:  # committed: the order of the tenant's corrections in briefings changed
            self.duck.changes.touch([(self.tenant_id, None)])
        return [Sealed(int(r[0]), str(r[1]), str(r[3]), str(r[4]).encode("utf-8"))
                for r in sent], problems

    def seal_message(self, msg: Message, clock: HybridClock, seal: Sealer) -> Sealed:
        """Seals a message that is not an outbox row (status, ack of a down message)."""
        with self.duck.transaction() as cur:
            st = dict(cur.execute("SELECT key, value FROM sync_state").fetchall())
            seq = int(st.get("last_seq", 0)) + 1
            stamp = clock.now()
            env, data = seal(msg, seq, stamp)
            cur.execute("INSERT INTO sync_sent (seq, message_id, outbox_seq, type, envelope) "
                        "VALUES (?, ?, NULL, ?, ?)",
                        [seq, env.message_id, env.type.value, data.decode("utf-8")])
            self._put(cur, "last_seq", seq, ("hlc", stamp))
        return Sealed(seq, env.message_id, env.type.value, data)

    def unacked(self, limit: int, after_seq: int = 0) -> list[Sealed]:
        """Sealed, not acked, oldest first."""
        return self._sealed("acked_at IS NULL AND seq > ?", [after_seq], limit)

    def in_range(self, from_seq: int, to_seq: int, limit: int) -> list[Sealed]:
        """Retained envelopes with ``from_seq <= seq <= to_seq`` (acked or not)."""
        return self._sealed("seq BETWEEN ? AND ?", [from_seq, to_seq], limit)

    def _sealed(self, where: str, params: list[Any], limit: int) -> list[Sealed]:
        rows = self.duck.query(f"SELECT seq, message_id, type, envelope FROM sync_sent "
                               f"WHERE {where} ORDER BY seq LIMIT ?", [*params, limit])
        return [Sealed(int(seq), str(mid), str(type_), str(envelope).encode("utf-8"))
                for seq, mid, type_, envelope in rows]

    def retained_range(self) -> tuple[int, int] | None:
        row = self.duck.query("SELECT min(seq), max(seq) FROM sync_sent")[0]
        return None if row[0] is None else (int(row[0]), int(row[1]))

    # -- acks ---------------------------------------------------------------------------
    def ack(self, seqs: Sequence[int], message_ids: Sequence[str]) -> int:
        """Marks envelopes acked and drops their outbox rows, in one transaction; returns
        how many were newly acked."""
        now = datetime.now(UTC)
        with self.duck.transaction() as cur:
            # semi-joins on unnested lists (a hash join), not list_contains per row
            rows = cur.execute(
                "SELECT seq, outbox_seq FROM sync_sent WHERE acked_at IS NULL AND "
                "(seq IN (SELECT unnest(?::BIGINT[])) OR "
                "message_id IN (SELECT unnest(?::VARCHAR[])))",
                # never an empty list: DuckDB cannot type one
                [[int(s) for s in seqs] or [-1], [str(m) for m in message_ids] or [""]],
            ).fetchall()
            if not rows:
                return 0
            acked = [int(r[0]) for r in rows]
            outbox = [int(r[1]) for r in rows if r[1] is not None]
            cur.execute("UPDATE sync_sent SET acked_at = ? "
                        "WHERE seq IN (SELECT unnest(?::BIGINT[]))", [now, acked])
            if outbox:
                cur.execute("DELETE FROM outbox WHERE seq IN (SELECT unnest(?::BIGINT[]))",
                            [outbox])
            last = int(dict(cur.execute("SELECT key, value FROM sync_state").fetchall()).get(
                "last_acked_seq", 0))
            self._put(cur, "last_acked_seq", max(last, *acked),
                      ("last_ack_at", now.isoformat()))
        return len(acked)

    def prune(self, retain_acked: int) -> int:
        """Forgets acked envelopes beyond the newest ``retain_acked``."""
        with self.duck.transaction() as cur:
            row = cur.execute("SELECT seq FROM sync_sent WHERE acked_at IS NOT NULL "
                              "ORDER BY seq DESC LIMIT 1 OFFSET ?", [retain_acked]).fetchone()
            if row is None:
                return 0
            n = cur.execute("SELECT count(*) FROM sync_sent WHERE acked_at IS NOT NULL AND "
                            "seq <= ?", [row[0]]).fetchone()
            cur.execute("DELETE FROM sync_sent WHERE acked_at IS NOT NULL AND seq <= ?",
                        [row[0]])
        return int(n[0]) if n else 0

    def oldest_unacked_at(self) -> datetime | None:
        row = self.duck.query("SELECT min(sealed_at) FROM sync_sent WHERE acked_at IS NULL")
        value = row[0][0] if row else None
        return value if isinstance(value, datetime) else None

    # -- down messages ------------------------------------------------------------------
    def applied(self, message_id: str) -> bool:
        return bool(self.duck.query("SELECT 1 FROM sync_applied WHERE message_id = ?",
                                    [message_id]))

    def applied_among(self, message_ids: Sequence[str]) -> set[str]:
        """Which of ``message_ids`` were applied (or set aside) before: one query."""
        if not message_ids:
            return set()
        rows = self.duck.query("SELECT message_id FROM sync_applied WHERE message_id IN "
                               "(SELECT unnest(?::VARCHAR[]))", [list(message_ids)])
        return {str(r[0]) for r in rows}

    def mark_applied_many(self, marks: Sequence[tuple[str, str]]) -> None:
        """Marks (message id, type) pairs applied, in one transaction."""
        if not marks:
            return
        with self.duck.transaction() as cur:
            cur.execute("INSERT OR IGNORE INTO sync_applied (message_id, type) "
                        "SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[])",
                        [[m for m, _ in marks], [t for _, t in marks]])

    def mark_applied(self, message_id: str, type_: str) -> None:
        with self.duck.transaction() as cur:
            cur.execute("INSERT OR IGNORE INTO sync_applied (message_id, type) VALUES (?, ?)",
                        [message_id, type_])

    def down_position(self) -> tuple[int, int]:
        """(cursor, applied): see the module docstring."""
        st = self.state()
        return int(st.get("down_cursor", "0")), int(st.get("down_applied", "0"))

    def advance_down(self, seqs: Sequence[int]) -> None:
        """Moves the down position past ``seqs`` (acked as applied); never back."""
        if not seqs:
            return
        with self.duck.transaction() as cur:
            st = dict(cur.execute("SELECT key, value FROM sync_state").fetchall())
            cursor = max(int(st.get("down_cursor", 0)), *seqs)
            self._put(cur, "down_cursor", cursor,
                      ("down_applied", int(st.get("down_applied", 0)) + len(seqs)))

    def set_aside(self, message_id: str | None, topic: str, reason: str, data: bytes) -> None:
        """Keeps a refused down message out of the way: appended (with why) to
        ``sync-refused.jsonl``, and its id marked so a redelivery is not looked at again."""
        path = self.duck.path.parent / "sync-refused.jsonl"
        line = json.dumps({"at": datetime.now(UTC).isoformat(), "message_id": message_id,
                           "topic": topic, "reason": reason,
                           "data": data[:100_000].decode("utf-8", "replace")})
        with path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        if message_id:
            self.mark_applied(message_id, "refused")

    def unsendable(self) -> list[dict[str, Any]]:
        return self.duck.query_dicts(
            "SELECT outbox_seq, kind, reason, failed_at FROM sync_unsendable ORDER BY outbox_seq")
