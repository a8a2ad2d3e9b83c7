"""Checks of the fields that order a message, made by every receiver (central on what
comes up, a node on what comes down) after the signature verifies.

A hybrid-clock stamp is taken into the receiver's clock (:meth:`HybridClock.update`) and
orders corrections at every plant: one stamped far in the future would win that order
forever and drag every clock it touches along. :func:`check_ordering` refuses an envelope
whose own stamp, or whose correction's stamp, is more than ``max_ahead_s`` ahead of the
receiver's wall clock (:class:`~rae_sync.errors.ClockSkew`, dead-lettered with that
reason). The formats (13+6 digit stamps, ids, seq within a bigint) are checked earlier,
by the envelope and message models (:class:`~rae_sync.errors.Malformed`).
"""

from __future__ import annotations

import time

from rae_sync.envelope import Envelope
from rae_sync.errors import ClockSkew
from rae_sync.hlc import Hlc
from rae_sync.messages import CorrectionMsg, Message

DEFAULT_MAX_AHEAD_S = 300.0  # 5 minutes: NTP-less plants drift, but not by this much


def check_stamp(stamp: str, what: str, *, max_ahead_s: float,
                now_ms: int | None = None) -> Hlc:
    """The parsed stamp; :class:`ClockSkew` when it is more than ``max_ahead_s`` ahead."""
    hlc = Hlc.parse(stamp)
    wall = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    ahead_ms = hlc.ms - wall
    if ahead_ms > max_ahead_s * 1000:
        raise ClockSkew(f"{what} {stamp} is {ahead_ms / 1000:.0f}s ahead of this clock "
                        f"(at most {max_ahead_s:.0f}s allowed)")
    return hlc


def check_ordering(env: Envelope, msg: Message, *, max_ahead_s: float = DEFAULT_MAX_AHEAD_S,
                   now_ms: int | None = None) -> None:
    """Refuses (``ClockSkew``) an envelope whose clock stamps lie too far ahead."""
    sender = "/".join(env.node)
    check_stamp(env.hlc, f"the clock stamp of {env.message_id} from {sender}",
                max_ahead_s=max_ahead_s, now_ms=now_ms)
    if isinstance(msg, CorrectionMsg) and msg.correction.hlc:
        check_stamp(msg.correction.hlc, f"the clock stamp of correction {msg.correction.id}",
                    max_ahead_s=max_ahead_s, now_ms=now_ms)
