"""The push bus on a real DuckDB file: publishes from many threads reach a live
subscription once each, in cursor order; a resumed subscription gets exactly what it
missed; a slow subscriber re-reads its gap; tenants and machines never mix."""

from __future__ import annotations

import asyncio
import threading

import pytest

from rae_edge import config
from rae_edge.errors import InvalidInputError
from rae_edge.node import EdgeNode
from rae_edge.push import PushBus, PushMessage


async def _take(it: object, n: int, timeout: float = 10.0) -> list[PushMessage]:
    out: list[PushMessage] = []

    async def go() -> None:
        async for msg in it:  # type: ignore[attr-defined]
            out.append(msg)
            if len(out) == n:
                return

    await asyncio.wait_for(go(), timeout)
    return out


def test_threads_publish_live_subscriber_gets_each_once_in_order(node: EdgeNode) -> None:
    bus = node.push

    async def main() -> list[PushMessage]:
        sub = await bus.subscribe("acme", ["M1"])
        it = sub.messages()

        def worker(i: int) -> None:
            for j in range(25):
                bus.publish("acme", "M1", "incident", {"worker": i, "n": j})
                bus.publish("acme", "M2", "incident", {"other": True})  # not watched
                bus.publish("globex", "M1", "incident", {"tenant": "globex"})  # other tenant

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        got = await _take(it, 100)
        for t in threads:
            t.join()
        sub.close()
        return got

    got = asyncio.run(main())
    cursors = [m.cursor for m in got]
    assert cursors == sorted(set(cursors)) and len(cursors) == 100
    assert {(m.tenant_id, m.machine_id) for m in got} == {("acme", "M1")}
    assert sorted((m.payload["worker"], m.payload["n"]) for m in got) == [
        (i, j) for i in range(4) for j in range(25)]
    assert bus.subscribers == 0


def test_resume_from_cursor_replays_missed_then_live_without_duplicates(
        node: EdgeNode) -> None:
    bus = node.push
    first = [bus.publish("acme", "M1", "correction", {"i": i}) for i in range(5)]
    cursor = first[1]

    async def main() -> list[PushMessage]:
        sub = await bus.subscribe("acme", ["M1", "M3"], since_cursor=cursor)
        it = sub.messages()
        backlog = await _take(it, 3)
        # A publish from another thread while the socket is live.
        t = threading.Thread(target=lambda: bus.publish("acme", "M3", "briefing", {"i": 9}))
        t.start()
        live = await _take(it, 1)
        t.join()
        sub.close()
        return backlog + live

    got = asyncio.run(main())
    assert [m.payload["i"] for m in got] == [2, 3, 4, 9]
    assert got[-1].machine_id == "M3" and got[-1].type == "briefing"
    assert got[-1].to_json()["data"] == {"i": 9}


def test_slow_subscriber_rereads_its_gap_from_disk(node: EdgeNode) -> None:
    bus = PushBus(node.duck, queue_size=2)

    async def main() -> list[PushMessage]:
        sub = await bus.subscribe("acme", ["M1"])
        it = sub.messages()
        first = await asyncio.wait_for(asyncio.gather(
            _take(it, 1), asyncio.to_thread(bus.publish, "acme", "M1", "incident", {"i": 0})),
            10)
        # 20 messages while nobody reads: the queue of 2 overflows.
        for i in range(1, 21):
            await asyncio.to_thread(bus.publish, "acme", "M1", "incident", {"i": i})
        rest = await _take(it, 20)
        sub.close()
        return [*first[0], *rest]

    got = asyncio.run(main())
    assert [m.payload["i"] for m in got] == list(range(21))


def test_messages_survive_a_restart_and_retention_trims(tmp_path: object) -> None:
    settings = config.load(None, data_dir=tmp_path / "n", node={"tenant_id": "acme"})  # type: ignore[operator]
    n1 = EdgeNode(settings)
    c = [n1.push.publish("acme", "M1", "incident", {"i": i}) for i in range(3)]
    n1.close()
    n2 = EdgeNode(settings)
    try:
        assert [m.payload["i"] for m in n2.push.since("acme", ["M1"], c[0])] == [1, 2]
        assert n2.push.head("acme") == c[-1] and n2.push.head("globex") == 0
        small = PushBus(n2.duck, retention_rows=1)
        assert small.trim() == 2
        assert [m.cursor for m in n2.push.since("acme", [], 0)] == [c[-1]]
        with pytest.raises(InvalidInputError):
            n2.push.publish("acme", "M1", "Bad Type!", {})
    finally:
        n2.close()


def test_publish_soon_stores_and_delivers_in_the_background(node: EdgeNode) -> None:
    bus = node.push

    async def main() -> list[PushMessage]:
        sub = await bus.subscribe("acme", ["M1"])
        it = sub.messages()
        for i in range(5):
            bus.publish_soon("acme", "M1", "briefing", {"i": i})
        got = await _take(it, 5)
        sub.close()
        return got

    got = asyncio.run(main())
    assert [m.payload["i"] for m in got] == list(range(5))
    assert bus.flush() and len(bus.since("acme", ["M1"], 0)) == 5
    with pytest.raises(InvalidInputError):
        bus.publish_soon("acme", "M1", "no good", {})


def test_cursor_beyond_the_head_resumes_at_the_head(node: EdgeNode) -> None:
    bus = node.push
    bus.publish("acme", "M1", "incident", {"i": 0})

    async def main() -> tuple[bool, list[PushMessage]]:
        sub = await bus.subscribe("acme", ["M1"], since_cursor=10_000)  # restored node
        it = sub.messages()
        await asyncio.to_thread(bus.publish, "acme", "M1", "incident", {"i": 1})
        got = await _take(it, 1)
        sub.close()
        return sub.gap, got

    gap, got = asyncio.run(main())
    assert gap and [m.payload["i"] for m in got] == [1]
