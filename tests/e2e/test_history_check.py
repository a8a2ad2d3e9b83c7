"""The history checker (:mod:`tests.e2e.history_check`) finds what it is there to find:
a correction missing at one place, one stored twice, a retry stored under a second id, a
stamp that differs, two corrections in another order, a plant's stamps going back, a
correction pushed twice; and passes a history that holds. No processes: rows as the
places would hold them."""

from __future__ import annotations

from tests.e2e.history_check import Row, problems, retry_copies
from tests.e2e.history_faults import Fault
from tests.e2e.history_load import Ack


def _ack(plant: str, n: int, at: float) -> Ack:
    return Ack(plant, f"hist-{plant}-{n:05d}", f"cor_{plant}{n}", at, at + 0.1, 1)


ACKS = [_ack("a", 1, 1.0), _ack("b", 1, 2.0), _ack("a", 2, 3.0)]


def _row(a: Ack, hlc: str) -> Row:
    return Row(a.id, hlc, f"node-{a.plant}", a.key, a.acked_at)


def _good() -> dict[str, list[Row]]:
    rows = [_row(ACKS[0], "1000000000001-000000"), _row(ACKS[1], "1000000000002-000000"),
            _row(ACKS[2], "1000000000003-000000")]
    return {p: list(rows) for p in ("central", "a", "b")}


def _pushed() -> dict[str, list[str]]:
    return {p: [a.id for a in ACKS] for p in ("a", "b")}


def test_a_history_that_holds_has_no_problems() -> None:
    assert problems(ACKS, [], _good(), _pushed()) == []


def test_each_break_is_named() -> None:
    places = _good()
    places["a"] = places["a"][:2]  # the last one missing at a
    places["b"] = [*places["b"], places["b"][0]]  # the first one twice at b
    out = problems(ACKS, [], places, _pushed())
    assert any(line.startswith("a: 1 acknowledged corrections missing: cor_a2") for line in out)
    assert any(line.startswith("b: 1 acknowledged corrections more than once: cor_a1 x2")
               for line in out)


def test_a_retry_stored_twice_a_changed_stamp_and_another_order_are_named() -> None:
    places = _good()
    retry = Row("cor_other", "1000000000004-000000", "node-a", ACKS[0].key, 5.0)
    places["central"] = [*places["central"], retry]
    places["b"] = [places["b"][1], Row(
        ACKS[0].id, "1000000000002-000001", "node-a", ACKS[0].key, 1.1), places["b"][2]]
    out = problems(ACKS, [], places, _pushed())
    assert any("a key stored more than once" in line and ACKS[0].key in line for line in out)
    assert any(line.startswith(f"{ACKS[0].id}: different stamps") for line in out)
    assert any(line.startswith("order differs between central and b") for line in out)


def test_stamps_going_back_at_one_plant_and_a_double_push_are_named() -> None:
    places = _good()
    for p in places:  # a's second correction stamped before its first
        places[p] = [_row(ACKS[2], "1000000000000-000005"), *places[p][:2]]
    pushed = _pushed()
    pushed["b"].append(ACKS[1].id)
    out = problems(ACKS, [], places, pushed)
    assert any(line.startswith("plant a: stamps not growing") for line in out)
    assert any(line.startswith("b: 1 acknowledged corrections not pushed to its tablets "
                               "exactly once: cor_b1 x2") for line in out)


def test_a_second_copy_from_a_retry_across_a_node_kill_is_told_apart() -> None:
    """The known limit (write and kept answer are two commits) is named as such only
    when that plant was killed while the key's first attempt ran."""
    retried = Ack("a", "hist-a-00009", "cor_a9", 10.0, 40.0, 5)
    acks = [*ACKS, retried]
    places = _good()
    extra = [_row(retried, "1000000000009-000000"),
             Row("cor_lost_answer", "1000000000008-000000", "node-a", retried.key, 12.0)]
    for p in places:
        places[p] = sorted([*places[p], *extra], key=lambda r: r.hlc)
    pushed = {p: [*ids, retried.id] for p, ids in _pushed().items()}
    kill = Fault("node-kill", "a", 1.0, 2.0, start=11.0, end=13.0)
    copies = retry_copies(acks, places["central"], [kill])
    assert copies == {retried.key: "cor_lost_answer"}
    assert problems(acks, [], places, pushed, frozenset(copies)) == []
    # without a kill of that plant in the attempt's time it is a plain duplicate
    assert retry_copies(acks, places["central"], [Fault("node-kill", "b", 1, 2, 11, 13)]) == {}
    out = problems(acks, [], places, pushed)
    assert any("a key stored more than once" in line and retried.key in line for line in out)
