"""The nemesis of the history test (:mod:`tests.e2e.test_history`): a fault schedule drawn
from ``random.Random(seed)`` and the faults themselves, on real processes.

Kinds (each a :class:`Fault` with its target and start/end times, ``time.time()``):

- ``broker-kill`` (SIGKILL, down a few seconds, started again; scheduled inside the
  ``node-offline`` window so the broker dies while a node is away), ``broker-stop``
  (SIGSTOP ... SIGCONT);
- ``worker-kill`` (SIGKILL of one ``rae-central serve`` ingest worker: serve starts a new
  one), ``worker-stop`` (SIGSTOP ... SIGCONT of one worker);
- ``pg-kill`` (SIGKILL of the postmaster, started again), ``pg-stop`` (SIGSTOP ... SIGCONT
  of the postmaster and every backend);
- ``node-kill`` (SIGKILL of a node's process group, started again), ``node-stop``
  (SIGSTOP ... SIGCONT of its group), ``node-offline`` (one node stopped for minutes);
  each strikes just after another plant had a correction acknowledged (so one is on its
  way to the struck node), and kill and stop strike the plant that is neither offline nor
  skewed (its own clock dates what it applied: the evidence that the fault landed);
- ``clock-skew``: one node runs under libfaketime; its wall clock is put ahead by one to
  three minutes (inside the 5-minute window receivers accept, so nothing is refused) and
  set back to true time at the window's end.

The short faults run one after another on their own slots; ``node-offline`` and
``clock-skew`` are windows beside them on two different nodes.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rae_sync.supervisor import children
from tests.fixtures.postgres import PgServer
from tests.fixtures.secure_stack import SecureBroker
from tests.fixtures.stack import Stack

SHORT_KINDS = ("broker-stop", "worker-kill", "worker-stop", "pg-kill", "pg-stop",
               "node-kill", "node-stop")
ALL_KINDS = (*SHORT_KINDS, "broker-kill", "node-offline", "clock-skew")
# what each fault hits: every part must be hit at least once while corrections are in
# flight (a 3 s stop can fall in a lull between two writes even right after an ack)
PART_OF = {"broker-kill": "broker", "broker-stop": "broker", "worker-kill": "central worker",
           "worker-stop": "central worker", "pg-kill": "PostgreSQL", "pg-stop": "PostgreSQL",
           "node-kill": "node", "node-stop": "node", "node-offline": "node offline",
           "clock-skew": "clock skew"}


@dataclass
class Fault:
    """One fault as it happened: ``start``/``end`` are ``time.time()`` (``end`` when it
    was healed); ``note`` says what was done."""

    kind: str
    target: str
    at: float  # planned offset from the run's start, seconds
    length: float  # planned seconds
    start: float = 0.0
    end: float = 0.0
    note: str = ""

    def __str__(self) -> str:
        return (f"{self.kind}({self.target}) at +{self.at:.0f}s for {self.length:.0f}s"
                + (f" [{self.note}]" if self.note else ""))


def schedule(rng: random.Random, duration: float, plants: list[str], skewed: str
             ) -> list[Fault]:
    """The run's faults, drawn from ``rng``: the seven short kinds in a random order on
    equal slots, a broker kill among them, a node offline around that kill for about two
    thirds of the run (two minutes of a 3-minute run), and the clock skew of ``skewed``
    (not the offline node)."""
    kinds = list(SHORT_KINDS)
    rng.shuffle(kinds)
    kinds.insert(rng.randrange(2, len(kinds) - 1), "broker-kill")  # not first nor last
    first, last = 0.08 * duration, 0.85 * duration
    slot = (last - first) / len(kinds)
    others = [p for p in plants if p != skewed]
    offline_node = rng.choice(others)
    faults: list[Fault] = []
    for i, kind in enumerate(kinds):
        length = rng.uniform(2.0, min(8.0, slot * 0.4))
        at = first + i * slot + rng.uniform(0, slot * 0.5)
        target = {"broker-stop": "broker", "broker-kill": "broker", "pg-kill": "postgres",
                  "pg-stop": "postgres", "worker-kill": "worker", "worker-stop": "worker"
                  }.get(kind) or rng.choice([p for p in plants if p not in (offline_node, skewed)])
        faults.append(Fault(kind, target, at, length))
    [bk] = [f for f in faults if f.kind == "broker-kill"]
    off_len = rng.uniform(0.62, 0.7) * duration  # two minutes of a 3-minute run
    off_at = max(0.05 * duration, min(bk.at - rng.uniform(8.0, 20.0),
                                      0.95 * duration - off_len))
    off_at = min(off_at, bk.at - 5.0)  # the broker dies while the node is away
    off_len = max(off_len, bk.at + bk.length + 5.0 - off_at)
    faults.append(Fault("node-offline", offline_node, off_at, off_len))
    skew_at = rng.uniform(0.05, 0.2) * duration
    faults.append(Fault("clock-skew", skewed, skew_at, rng.uniform(0.35, 0.5) * duration,
                        note=f"+{rng.randint(60, 180)}s"))
    return sorted(faults, key=lambda f: f.at)


def _pg_pids(pg: PgServer) -> list[int]:
    pid_file = pg.data / "postmaster.pid"
    if not pid_file.exists():
        return []
    pid = int(pid_file.read_text().splitlines()[0])
    return [pid, *children(pid)]


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _start_pg(pg: PgServer, timeout: float = 30.0) -> None:
    """Starts PostgreSQL after a SIGKILL of its postmaster: a backend still finishing its
    query holds the shared memory a moment, and the postmaster refuses until it is gone."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pg.start()
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@dataclass
class Nemesis:
    """Applies a schedule to the stack; :meth:`run` returns when every fault is healed."""

    stack: Stack
    broker: SecureBroker
    skew_file: Path
    faults: list[Fault]
    # time.time() of a plant's last acknowledged correction: a node fault begins just
    # after one, while that correction is still on its way out of the node
    last_ack: Callable[[str], float] = lambda plant: 0.0
    t0: float = 0.0
    log: list[str] = field(default_factory=list)
    _restarts: list[threading.Thread] = field(default_factory=list)
    _stopped: dict[str, list[int]] = field(default_factory=dict)

    def _say(self, what: str) -> None:
        self.log.append(f"+{time.time() - self.t0:6.1f}s {what}")

    def _restart_node(self, name: str) -> None:
        """Starts a node again in the background (its start-up loads models)."""
        t = threading.Thread(target=self.stack.nodes[name].start, name=f"restart-{name}",
                             daemon=True)
        t.start()
        self._restarts.append(t)

    # -- one fault's beginning and end ------------------------------------------------------
    def _just_acked(self, plants: list[str], within: float = 0.005, wait: float = 5.0) -> None:
        """Waits (a while at most) until one of ``plants`` has just had a correction
        acknowledged: it is then on its way to the other plants."""
        deadline = time.monotonic() + wait
        while (min(time.time() - self.last_ack(p) for p in plants) > within
               and time.monotonic() < deadline):
            time.sleep(0.001)

    def _begin(self, f: Fault) -> None:
        node = self.stack.nodes.get(f.target)
        if node is not None and f.kind != "clock-skew":
            self._just_acked([p for p in self.stack.nodes if p != f.target])
        elif node is None:  # broker, worker, PostgreSQL: hit while a fresh ack goes up
            self._just_acked(list(self.stack.nodes))
        deadline = time.monotonic() + 15  # a worker killed before is being respawned
        while (f.kind.startswith("worker-") and time.monotonic() < deadline
               and len(self.stack.central.worker_pids()) < self.stack.central.workers):
            time.sleep(0.1)
        f.start = time.time()  # before the signal: what is acked after it is not "before"
        if f.kind == "broker-kill":
            self.broker.kill()
        elif f.kind == "broker-stop":
            self.broker.signal(signal.SIGSTOP)
        elif f.kind in ("worker-kill", "worker-stop"):
            pid = random.Random(f.at).choice(self.stack.central.worker_pids())
            f.note = f"worker pid {pid}"
            self._stopped[f.kind] = [pid]
            os.kill(pid, signal.SIGKILL if f.kind == "worker-kill" else signal.SIGSTOP)
        elif f.kind == "pg-kill":
            self.stack.pg.kill()
        elif f.kind == "pg-stop":
            pids = _pg_pids(self.stack.pg)
            f.note = f"{len(pids)} processes"
            self._stopped[f.kind] = pids
            _signal_all(pids, signal.SIGSTOP)
        elif f.kind == "node-kill" and node is not None:
            node.kill9()
        elif f.kind == "node-stop" and node is not None and node.process.part is not None:
            os.killpg(node.process.part.pid, signal.SIGSTOP)
        elif f.kind == "node-offline" and node is not None:
            node.stop()
        elif f.kind == "clock-skew":
            self.skew_file.write_text(f.note.rstrip("s") + "\n")  # seconds
        self._say(f"begin {f}")

    def _end(self, f: Fault) -> None:
        node = self.stack.nodes.get(f.target)
        if f.kind == "broker-kill":
            self.broker.start()
        elif f.kind == "broker-stop":
            self.broker.signal(signal.SIGCONT)
        elif f.kind == "worker-stop":
            _signal_all(self._stopped.pop(f.kind, []), signal.SIGCONT)
        elif f.kind == "pg-kill":
            _start_pg(self.stack.pg)
        elif f.kind == "pg-stop":
            _signal_all(self._stopped.pop(f.kind, []), signal.SIGCONT)
        elif f.kind in ("node-kill", "node-offline"):
            self._restart_node(f.target)
        elif f.kind == "node-stop" and node is not None and node.process.part is not None:
            os.killpg(node.process.part.pid, signal.SIGCONT)
        elif f.kind == "clock-skew":
            self.skew_file.write_text("+0\n")
        f.end = time.time()
        self._say(f"end {f.kind}({f.target})")

    def run(self, t0: float, stop: Callable[[], bool] = lambda: False) -> None:
        """Begins and ends each fault at its time (from ``t0``), then heals what is left."""
        self.t0 = t0
        events = sorted([(f.at, 0, i) for i, f in enumerate(self.faults)]
                        + [(f.at + f.length, 1, i) for i, f in enumerate(self.faults)])
        try:
            for at, is_end, i in events:
                while time.time() < t0 + at and not stop():
                    time.sleep(0.05)
                (self._end if is_end else self._begin)(self.faults[i])
        finally:
            self.heal()

    def heal(self) -> None:
        """Everything running again: the broker, PostgreSQL, stopped processes, every
        node (started ones waited for), the true clock."""
        for pids in self._stopped.values():
            _signal_all(pids, signal.SIGCONT)
        self._stopped.clear()
        self.broker.signal(signal.SIGCONT)
        for n in self.stack.nodes.values():
            if n.running and n.process.part is not None:
                os.killpg(n.process.part.pid, signal.SIGCONT)
        self.skew_file.write_text("+0\n")
        if not self.broker.running:
            self.broker.start()
        if not self.stack.pg.is_running():
            _start_pg(self.stack.pg)
        for t in self._restarts:
            t.join(180)
        for n in self.stack.nodes.values():
            n.start()
