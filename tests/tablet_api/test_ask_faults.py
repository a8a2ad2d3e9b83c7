"""``/ask`` when the LLM is not there: not configured, down (nothing listens), slow (a
socket that takes the connection and never answers). Each is a clear 503/504 with the
reason; search, briefing and context keep answering; ``/health`` says what is wrong."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rae_edge.sample_plant.loader import load_sample_plant
from tests.tablet_api.api_client import Api, api_for

QUESTION = {"question": "What fixed E404 on the hydraulic press?"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A listening socket that never accepts: connections complete, no byte comes back."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        sock.close()


def llm(base_url: str, **more: Any) -> dict[str, Any]:
    return {"llm": {"enabled": True, "base_url": base_url, "model": "any", "retries": 0,
                    **more}}


def the_rest_still_answers(a: Api) -> None:
    assert a.get("/search", who="acme_technician", q="E404").status_code == 200
    assert a.get("/machines/press-1/briefing", who="acme_technician").status_code == 200
    assert a.get("/context", who="acme_technician", q="E404").status_code == 200


def health_llm(a: Api) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        state = a.client.get("/api/v1/health").json()["llm"]
        if state["state"] != "checking" or time.monotonic() > deadline:
            return state  # type: ignore[no-any-return]
        time.sleep(0.2)


def test_no_llm_configured_is_503_and_health_says_off(tmp_path: Path) -> None:
    with api_for(tmp_path / "n") as a:
        load_sample_plant(a.node)
        r = a.post("/ask", QUESTION, who="acme_technician")
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "llm_not_configured"
        assert "llm.base_url" in r.json()["error"]["message"]
        r = a.post("/ask", {**QUESTION, "stream": True}, who="acme_technician")
        assert r.status_code == 503 and r.json()["error"]["code"] == "llm_not_configured"
        assert health_llm(a) == {"state": "off"}
        the_rest_still_answers(a)


def test_llm_down_is_503_with_the_reason(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with api_for(tmp_path / "n", **llm(url)) as a:
        load_sample_plant(a.node)
        for body in (QUESTION, {**QUESTION, "stream": True}):
            r = a.post("/ask", body, who="acme_technician")
            assert r.status_code == 503, r.text
            err = r.json()["error"]
            assert err["code"] == "llm_unavailable" and url in err["message"]
        state = health_llm(a)
        assert state["state"] == "down" and url in state["reason"]
        the_rest_still_answers(a)


def test_llm_too_slow_is_504(tmp_path: Path, black_hole: str) -> None:
    with api_for(tmp_path / "n", **llm(black_hole, timeout_s=1.0)) as a:
        load_sample_plant(a.node)
        for body in (QUESTION, {**QUESTION, "stream": True}):
            started = time.monotonic()
            r = a.post("/ask", body, who="acme_technician")
            assert r.status_code == 504, r.text
            assert r.json()["error"]["code"] == "llm_timeout"
            assert time.monotonic() - started < 20
        the_rest_still_answers(a)


def test_bad_questions_and_roles(tmp_path: Path) -> None:
    with api_for(tmp_path / "n", **llm(f"http://127.0.0.1:{free_port()}/v1")) as a:
        for body, field in [({}, "question"), ({"question": ""}, "question"),
                            ({"question": "x", "budget_tokens": 5}, "budget_tokens"),
                            ({"question": "x", "colour": "red"}, "colour")]:
            r = a.post("/ask", body, who="acme_technician")
            assert r.status_code == 400, (body, r.text)
            assert field in r.text
        r = a.client.post("/api/v1/ask", json=QUESTION)
        assert r.status_code == 401


def test_a_request_that_timed_out_is_never_sent_again(tmp_path: Path) -> None:
    """A slow LLM (busy with the prompt) gets each question once: resending it after a
    timeout would make it compute the same answer twice. ``retries`` is for connections
    that fail before the request reaches it."""
    seen: list[str] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:  # reads each request line, never answers
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)
            conn.settimeout(2.0)
            with contextlib.suppress(OSError):
                first = conn.recv(65536).split(b"\r\n", 1)[0].decode("latin-1")
                seen.append(first)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/v1"
    try:
        with api_for(tmp_path / "n", **llm(url, timeout_s=1.0, retries=2)) as a:
            load_sample_plant(a.node)
            for body in (QUESTION, {**QUESTION, "stream": True}):
                r = a.post("/ask", body, who="acme_technician")
                assert r.status_code == 504, r.text
        asks = [line for line in seen if line.startswith("POST ") and "chat/completions" in line]
        assert len(asks) == 2, seen  # one per question, none resent
    finally:
        stop.set()
        t.join(timeout=5)
        for c in held:
            c.close()
        server.close()


def test_a_refused_connection_is_tried_again(tmp_path: Path) -> None:
    """``retries`` resends a request that never reached the LLM: with nothing listening
    the node tries 1 + retries times, then answers 503 with the reason."""
    port = free_port()
    with api_for(tmp_path / "n", **llm(f"http://127.0.0.1:{port}/v1", retries=2)) as a:
        load_sample_plant(a.node)
        started = time.monotonic()
        r = a.post("/ask", QUESTION, who="acme_technician")
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "llm_unavailable"
        assert time.monotonic() - started >= 0.25 + 0.5  # the two back-offs between tries
