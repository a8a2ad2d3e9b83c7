"""``BatchThread``, the background worker of the down applier and the background indexer,
on a real thread: what gathered while it held comes in batches of at most ``batch``, in
order, after its step before the first batch; ``stop`` ends it after the batch in hand,
and what is queued after that stays queued."""

from __future__ import annotations

import threading
import time

from rae_edge.sync_agent.batches import BatchThread


class Recorder(BatchThread[int]):
    """Records its steps; :meth:`hold` waits for ``gate`` (more gathers meanwhile)."""

    def __init__(self, batch: int) -> None:
        super().__init__("test-batches", batch)
        self.steps: list[str | list[int]] = []
        self.holding = threading.Event()
        self.gate = threading.Event()
        self.done = threading.Condition()

    def put(self, *items: int) -> None:
        for i in items:
            self._queue.put(i)

    def before_first(self) -> None:
        self.steps.append("before")

    def hold(self) -> None:
        self.holding.set()
        assert self.gate.wait(30)

    def handle(self, items: list[int]) -> None:
        with self.done:
            self.steps.append(items)
            self.done.notify_all()

    def wait_handled(self, n: int) -> bool:
        with self.done:
            return self.done.wait_for(lambda: sum(isinstance(s, list) for s in self.steps)
                                      >= n, 30)


def test_what_gathered_while_held_comes_in_batches_of_at_most_batch_in_order() -> None:
    w = Recorder(batch=4)
    w.start()
    try:
        w.put(0)
        assert w.holding.wait(30)  # the thread took 0 and holds: the rest gathers
        w.put(*range(1, 10))
        assert w.waiting == 9
        w.gate.set()
        assert w.wait_handled(3)
        assert w.steps == ["before", [0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
        assert w.waiting == 0
    finally:
        w.stop()


def test_stop_ends_after_the_batch_in_hand_and_leaves_the_rest_queued() -> None:
    w = Recorder(batch=2)
    w.start()
    w.put(1)
    assert w.holding.wait(30)  # 1 in hand
    stopper = threading.Thread(target=w.stop)
    stopper.start()
    deadline = time.monotonic() + 30
    while not w.stopping and time.monotonic() < deadline:
        time.sleep(0.01)
    assert w.stopping
    w.put(2)
    w.gate.set()
    stopper.join(30)
    assert not stopper.is_alive()
    assert not any(t.name == "test-batches" for t in threading.enumerate())
    # the batch in hand ran with what had gathered (the stop's wake-up is no item)
    assert w.steps == ["before", [1, 2]]
    w.put(3)  # after the stop: queued, and no thread takes it
    assert w.waiting >= 1 and w.steps == ["before", [1, 2]]
    w.start()  # started again, it goes on with what is queued
    try:
        assert w.wait_handled(2)
        assert w.steps == ["before", [1, 2], "before", [3]]
    finally:
        w.stop()
