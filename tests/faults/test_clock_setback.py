"""A node's wall clock set back one hour mid-run, end to end: a real ``rae-edge serve``
(plant A) under libfaketime, a real ``rae-edge serve`` at plant B on the true clock,
``rae-central serve``, mosquitto and PostgreSQL (:class:`tests.fixtures.stack.Stack`).

Node A runs with ``LD_PRELOAD=libfaketime.so.1`` reading its offset from a file, which the
test rewrites from ``+0`` to ``-1h`` while the node serves (the monotonic clock is left
alone, as a real NTP step or a wrong RTC leaves it; see ``SLEEP_SHIM`` for the one
libfaketime bug worked around). Corrections are made at A before and
after the setback, and at B in between. Afterwards:

- the setback really happened inside the node (its new corrections' ``valid_from`` is an
  hour earlier than the earlier ones');
- A's seq keeps growing (the messages central stored from A have seqs 1..n, no gap, no
  repeat) and A's hybrid clock never went back (each correction's stamp is larger than
  the previous one's, in the order they were made);
- the corrections made after the setback come after the earlier ones in A's briefing, in
  B's briefing and at central (ordered by the hybrid clock, not by wall time);
- every correction is once in Postgres and once in each briefing: nothing lost or doubled;
- ``rae-edge audit verify`` still passes on A's audit chain (written across the setback);
- A's token still authenticates, and the failed-login limiter still locks out for at most
  its one-minute window (it counts on the monotonic clock, so a setback cannot lengthen it).
  Tokens carry no expiry on the node, so there is none to break.
"""

from __future__ import annotations

import glob
import os
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.fixtures.stack import VENV_BIN, Stack, wait_for

pytestmark = pytest.mark.faults

LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), None)
SETBACK = "-1h"
# libfaketime 0.9.10 with FAKETIME_DONT_FAKE_MONOTONIC answers EINVAL to
# clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME), which Python's time.sleep uses; faking
# the monotonic clock as well is no way out (a jump stalls every timed wait, and no real
# setback moves that clock). So the faked node sleeps on select() with a relative timeout:
# the same sleep, and no code of the node is changed.
SLEEP_SHIM = """import select
import time


def _sleep(seconds):
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    select.select([], [], [], seconds)


time.sleep = _sleep
"""
MACHINE = {"id": "press-1", "name": "Press 1", "qr_code": "QR-PRESS-1", "site": "any"}


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.mark.skipif(LIBFAKETIME is None, reason="libfaketime is not installed "
                    "(Debian package 'faketime')")
def test_clock_set_back_one_hour_on_a_node(stack_factory: Callable[..., Stack],
                                           tmp_path: Path) -> None:
    assert LIBFAKETIME is not None
    offset = tmp_path / "faketime-offset"
    offset.write_text("+0\n")
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SLEEP_SHIM)
    fake_env = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME_TIMESTAMP_FILE": str(offset),
                "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(shim), os.environ.get("PYTHONPATH", "")) if p)}
    stack = stack_factory()
    stack.add_node("a", site="plant-a", start=False, env=fake_env)
    stack.add_node("b", site="plant-b", start=False)
    stack.start_nodes()
    stack.add_machines(["a", "b"], [MACHINE])

    made: list[tuple[str, dict[str, object]]] = []  # (node, correction) in the order made

    def correct(node: str, text: str) -> dict[str, object]:
        c = stack.post_correction(node, "press-1", text)
        made.append((node, c))
        return c

    def state() -> dict[str, object]:
        return {"made": [(n, c["id"]) for n, c in made],
                "central": stack.central_correction_ids(),
                **{n: stack.correction_ids(n, "press-1") for n in ("a", "b")}}

    def settled() -> bool:
        """Every correction in PG and in both briefings."""
        ids = {str(c["id"]) for _, c in made}
        return set(stack.central_correction_ids()) == ids and all(
            set(stack.correction_ids(n, "press-1")) == ids for n in ("a", "b"))

    def wait_settled(timeout: float, what: str) -> None:
        try:
            wait_for(settled, timeout, what)
        except AssertionError as e:
            raise AssertionError(f"{e}: {state()}") from None

    before = [correct("a", f"before the setback {i}: coupling bolt re-torqued") for i in range(3)]
    wait_settled(90, "the first corrections everywhere")

    offset.write_text(SETBACK + "\n")  # the node's clock jumps back an hour
    wait_for(lambda: _ts(str(correct("a", "probe after the setback")["valid_from"]))
             < _ts(str(before[-1]["valid_from"])), 30,
             "node A's clock to be an hour back", every=1.0)
    # Each plant sees the other's correction before making its next one, so "made after"
    # is causal and the hybrid clock must order it so, an hour-slow wall clock or not.
    seen_at = lambda n, c: lambda: c["id"] in stack.correction_ids(n, "press-1")  # noqa: E731
    wait_for(seen_at("b", made[-1][1]), 60, "A's probe at B")
    wait_for(seen_at("a", correct("b", "plant B, true clock: guard switch replaced")), 60,
             "B's correction at A")
    after = [correct("a", f"after the setback {i}: sensor X was loose") for i in range(3)]
    wait_for(seen_at("b", after[-1]), 60, "A's corrections at B")
    correct("b", "plant B again: guard switch cable rerouted")
    wait_settled(120, "every correction everywhere after the setback")

    # The clock really went back inside the node.
    assert _ts(str(after[0]["valid_from"])) < _ts(str(before[0]["valid_from"]))

    order_made = [str(c["id"]) for _, c in made]
    a_made = [str(c["id"]) for n, c in made if n == "a"]
    # A's hybrid clock never went back: the stamps A gave its corrections (as central
    # stored them) grow in the order the corrections were made.
    stamp = dict(stack.sql("SELECT id, hlc FROM corrections WHERE tenant_id = 'acme'"))
    a_stamps = [str(stamp[i]) for i in a_made]
    assert a_stamps == sorted(a_stamps) and len(set(a_stamps)) == len(a_stamps), a_stamps

    # Both briefings and central put every correction in the order it was made (the
    # briefing orders by hybrid clock: B's true-clock ones sit between A's by their stamps).
    for n in ("a", "b"):
        ids = [c["id"] for c in stack.briefing(n, "press-1")["corrections"]]
        assert len(ids) == len(set(ids)) == len(order_made), f"duplicates at {n}: {ids}"
        assert [i for i in ids if i in a_made] == a_made, f"A's order broken at {n}"
        assert ids == order_made, f"briefing order at {n} is not the order made"
    central_rows = stack.sql("SELECT id, hlc FROM corrections WHERE tenant_id = 'acme' "
                             "ORDER BY hlc, id")
    assert [r[0] for r in central_rows] == order_made
    assert sorted(stack.central_correction_ids()) == sorted(order_made)  # once each

    # A's seq only grew: every message central stored from A, seqs 1..n without a gap.
    seqs = [r[0] for r in stack.sql(
        "SELECT seq FROM messages WHERE node_id = 'node-a' ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    hlc_by_seq = [r[0] for r in stack.sql(
        "SELECT hlc FROM messages WHERE node_id = 'node-a' ORDER BY seq")]
    assert hlc_by_seq == sorted(hlc_by_seq), "a later seq carries an earlier stamp"

    # The audit chain, written across the setback, verifies (through the live node).
    a = stack.nodes["a"]
    res = subprocess.run([str(VENV_BIN / "rae-edge"), "audit", "verify", "--data-dir",
                          str(a.data_dir), "--url", a.url], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "RAE_ADMIN_TOKEN": a.token})
    assert res.returncode == 0, res.stdout + res.stderr

    # Tokens: the node's token still works; the failed-login limiter's lockout is its
    # one-minute window, not an hour (it counts on the monotonic clock).
    assert stack.http("a", "GET", "/machines/QR-PRESS-1/briefing").status_code == 200
    bad = {"Authorization": "Bearer rae_not-a-token"}
    codes = [httpx.get(f"{a.url}/api/v1/machines/QR-PRESS-1/briefing", headers=bad,
                       timeout=10).status_code for _ in range(21)]
    assert codes[:20] == [401] * 20 and codes[20] == 429, codes
    r = httpx.get(f"{a.url}/api/v1/machines/QR-PRESS-1/briefing", headers=bad, timeout=10)
    assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 61, r.headers
    print(f"\n{len(made)} corrections, A's seqs 1..{len(seqs)} at central, A's stamps "
          f"{a_stamps[0]} .. {a_stamps[-1]}; "
          f"audit verify: {res.stdout.strip().splitlines()[-1]}")
