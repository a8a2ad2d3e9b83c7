"""The clients of the history test (:mod:`tests.e2e.test_history`): one writer per plant
posting corrections continuously, each with its own ``Idempotency-Key``, recording every
attempt and every acknowledgement (an HTTP 2xx answer) with the time it arrived.

A post that fails (the node killed, stopped or offline: a refused connection, a timeout, a
5xx or ``409 idempotency_in_flight``) is sent again with the *same* key until it is
answered or the writer is told to give up; a key never answered is recorded as
unacknowledged. The correction's text carries its key, so a second copy stored for one
key (a retry that duplicated) can be told from a new correction.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import httpx

# Statuses after which the same request may be sent again with its key.
RETRY_STATUSES = frozenset({409, 500, 502, 503, 504})
PARTS = ["sensor X", "belt", "coupling bolt", "guard switch", "pilot valve", "feeder",
         "encoder cable", "pump seal", "spindle bearing", "limit switch"]
FINDINGS = ["was loose", "was worn out", "had a corroded connector", "needed re-torquing",
            "was misaligned by 2 mm", "was contaminated with oil", "was fine; the PLC input "
            "was the fault", "was replaced with the spare from the crib"]


@dataclass(frozen=True)
class Ack:
    """One acknowledged correction: its id as the node answered it."""

    plant: str
    key: str
    id: str
    sent_at: float  # time.time() of the first attempt
    acked_at: float  # time.time() the 2xx answer arrived
    attempts: int


@dataclass
class WriterLog:
    """What one writer did: acks in the order they came, keys never answered, and
    answers that were neither a success nor retryable (each a failure of the test)."""

    plant: str
    acks: list[Ack] = field(default_factory=list)
    unacked: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    errors: int = 0  # failed attempts that were retried


class Writer:
    """Posts corrections to one plant in a thread until :meth:`stop`; a key in flight at
    the stop is retried until :meth:`give_up` (or answered)."""

    def __init__(self, plant: str, url: str, token: str, targets: dict[str, list[str]],
                 seed: str, pause: tuple[float, float] = (0.2, 0.8),
                 timeout: float = 8.0) -> None:
        self.plant = plant
        self.log = WriterLog(plant)
        self._rng = random.Random(f"{seed}/{plant}")
        self._machines = sorted(targets)
        self._targets = targets  # per machine, the memories a correction may amend
        self._pause = pause
        self._client = httpx.Client(base_url=url, timeout=timeout,
                                    headers={"Authorization": f"Bearer {token}"})
        self._stop = threading.Event()
        self._give_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"writer-{plant}", daemon=True)

    def start(self) -> Writer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """No new corrections after this; the one in flight is still retried."""
        self._stop.set()

    def give_up(self, timeout: float = 30.0) -> None:
        """Stops retrying (a key still unanswered is recorded unacknowledged); joins."""
        self._give_up.set()
        self._thread.join(timeout)
        self._client.close()

    def last_ack_at(self) -> float:
        """``time.time()`` of the latest acknowledgement (0 before the first)."""
        return self.log.acks[-1].acked_at if self.log.acks else 0.0

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _body(self, key: str) -> dict[str, str]:
        machine = self._rng.choice(self._machines)
        body = {"machine_id": machine,
                "text": f"[{key}] {self._rng.choice(PARTS)} {self._rng.choice(FINDINGS)}"}
        if self._targets[machine] and self._rng.random() < 0.5:
            body["target_id"] = self._rng.choice(self._targets[machine])
        return body

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            key = f"hist-{self.plant}-{n:05d}"
            self._post(key, self._body(key))
            time.sleep(self._rng.uniform(*self._pause))

    def _post(self, key: str, body: dict[str, str]) -> None:
        first = time.time()
        attempts = 0
        while not self._give_up.is_set():
            attempts += 1
            try:
                r = self._client.post("/api/v1/corrections", json=body,
                                      headers={"Idempotency-Key": key})
            except httpx.HTTPError:
                r = None
            if r is not None and 200 <= r.status_code < 300:
                self.log.acks.append(Ack(self.plant, key, _stored_id(r.json()), first,
                                         time.time(), attempts))
                return
            if r is not None and r.status_code not in RETRY_STATUSES:
                self.log.refused.append(f"{key}: {r.status_code} {r.text[:300]}")
                return
            self.log.errors += 1
            self._give_up.wait(0.5)
        self.log.unacked.append(key)


def _stored_id(answer: dict[str, object]) -> str:
    """The correction's id from a 2xx answer: the correction itself, or (a node killed
    after the write but before keeping its answer) the ``answer_lost`` replay naming what
    the first attempt stored."""
    if "id" in answer:
        return str(answer["id"])
    stored = answer.get("stored")
    assert answer.get("answer_lost") and isinstance(stored, list), answer
    return next(str(i) for s in stored if s["fact"] == "correction" for i in s["ids"])
