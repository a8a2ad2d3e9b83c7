"""A real OpenAI-compatible LLM server for the ``/ask`` tests and bench.

By default llama.cpp's server (``llama-cpp-python[server]`` in ``.llm-server/``, made by
``scripts/llm-server``) with the Gemma 3 270M GGUF from PyPI, started on a free loopback
port. ``RAE_TEST_LLM_URL`` (an OpenAI-compatible base URL such as
``http://127.0.0.1:11434/v1`` for Ollama or ``http://host:8000/v1`` for vLLM) and
``RAE_TEST_LLM_MODEL`` run the same tests against that server instead.

The 270M base model writes poor prose: it stands in for a real model at the wire level
(schema-constrained JSON, streaming, token counts), so the tests assert structure, never
wording.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = ROOT / ".llm-server" / "bin" / "python"
MODEL_FILE = ROOT / ".llm-server" / "gemma-3-270m-q4_k_m.gguf"
MODEL_ALIAS = "gemma3-270m"


@dataclass
class LlmServer:
    base_url: str  # ends in /v1
    model: str


def structured_mode() -> str:
    """How to send the answer's schema: llama-cpp-python's server takes ``json_object``
    with a schema; Ollama, vLLM and OpenAI take ``json_schema`` (override:
    ``RAE_TEST_LLM_STRUCTURED``)."""
    default = "json_schema" if os.environ.get("RAE_TEST_LLM_URL") else "json_object"
    return os.environ.get("RAE_TEST_LLM_STRUCTURED", default)


def unavailable_reason() -> str | None:
    """Why no test LLM can be had here (None: one can)."""
    if os.environ.get("RAE_TEST_LLM_URL"):
        return None
    if not VENV_PYTHON.exists() or not MODEL_FILE.exists():
        return ("the llama.cpp test server is not built: run scripts/llm-server (scripts/test "
                "does), or set RAE_TEST_LLM_URL to an OpenAI-compatible server")
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def llm_server(log_path: Path, threads: int = 2) -> Iterator[LlmServer]:
    url = os.environ.get("RAE_TEST_LLM_URL")
    if url:
        yield LlmServer(url.rstrip("/"), os.environ.get("RAE_TEST_LLM_MODEL", MODEL_ALIAS))
        return
    port = _free_port()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(VENV_PYTHON), "-m", "llama_cpp.server", "--model", str(MODEL_FILE),
             "--model_alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(port),
             "--n_ctx", "4096", "--n_threads", str(threads), "--n_threads_batch",
             str(threads), "--verbose", "false"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(base + "/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"llama.cpp server did not start:\n{log_path.read_text()}")
            time.sleep(0.3)
        yield LlmServer(base, MODEL_ALIAS)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
