"""The LLM endpoint through the ``openai`` SDK (``base_url`` = any OpenAI-compatible server).

The SDK retries connection errors itself (``llm.retries``); what is still wrong after that
becomes :class:`LlmUnavailableError` (refused, down, an error status) or
:class:`LlmTimeoutError` (no complete answer within ``llm.timeout_s``), each with the reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import openai

from rae_edge.config import LlmSettings


class LlmError(Exception):
    """The LLM could not answer; ``status`` is what the API answers (503 or 504)."""

    status = 503
    code = "llm_unavailable"


class LlmUnavailableError(LlmError):
    pass


class LlmTimeoutError(LlmError):
    status = 504
    code = "llm_timeout"


class LlmNotConfiguredError(LlmError):
    code = "llm_not_configured"


@dataclass
class Completion:
    text: str
    model: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class StreamState:
    """Filled while a stream runs: the model's name and token counts when it ends."""

    model: str = ""
    chunks: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    first_token_s: float | None = None
    started: float = field(default_factory=time.monotonic)


def api_key(settings: LlmSettings, env: Mapping[str, str] = os.environ) -> str:
    """The key from ``api_key_file`` or ``api_key_env``; local servers need none."""
    if settings.api_key_file is not None:
        try:
            return settings.api_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise LlmNotConfiguredError(f"llm.api_key_file cannot be read: {exc}") from exc
    if settings.api_key_env:
        key = env.get(settings.api_key_env, "")
        if not key:
            raise LlmNotConfiguredError(f"llm.api_key_env names {settings.api_key_env!r}, "
                                        "which is not set")
        return key
    return "not-needed"  # the SDK insists on a value; llama.cpp/Ollama/vLLM ignore it


def _fault(exc: Exception, base_url: str) -> LlmError:
    if isinstance(exc, openai.APITimeoutError):
        return LlmTimeoutError(f"the LLM at {base_url} did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return LlmUnavailableError(f"the LLM at {base_url} cannot be reached: {exc}")
    if isinstance(exc, openai.APIStatusError):
        return LlmUnavailableError(f"the LLM at {base_url} answered {exc.status_code}: "
                                   f"{str(exc.message)[:300]}")
    return LlmUnavailableError(f"the LLM at {base_url} failed: {exc}")


class LlmClient:
    """One configured endpoint; thread-safe (the SDK client is)."""

    def __init__(self, settings: LlmSettings, env: Mapping[str, str] = os.environ) -> None:
        if not settings.enabled or not settings.base_url or not settings.model:
            raise LlmNotConfiguredError(
                "no LLM is configured on this node: set llm.enabled, llm.base_url and "
                "llm.model (README: 'Asking questions')")
        self.settings = settings
        self.base_url = settings.base_url
        # The SDK would also retry a request that timed out while the server was still
        # working on it (a slow prompt on a busy CPU): the server then computes the same
        # answer twice and the first token comes later still. Retries here are only for
        # requests that never reached it (:meth:`_create`).
        self._client = openai.OpenAI(
            base_url=settings.base_url, api_key=api_key(settings, env),
            timeout=openai.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            max_retries=0)

    def _params(self, messages: list[dict[str, str]],
                schema: dict[str, Any] | None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.settings.model, "messages": messages,
            "max_tokens": self.settings.max_answer_tokens,
            "temperature": self.settings.temperature}
        if schema is not None and self.settings.structured_output == "json_object":
            params["response_format"] = {"type": "json_object", "schema": schema}
        elif schema is not None:
            params["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "cited_answer", "strict": True, "schema": schema}}
        return params

    def _create(self, **params: Any) -> Any:
        """One chat completion request, sent again (``retries`` times) only when the
        connection failed before the server had it; a timeout is never resent."""
        for attempt in range(self.settings.retries + 1):
            try:
                return self._client.chat.completions.create(**params)
            except openai.APITimeoutError:
                raise
            except openai.APIConnectionError:
                if attempt >= self.settings.retries:
                    raise
                time.sleep(min(2.0, 0.25 * 2 ** attempt))
        raise AssertionError("unreachable")

    def complete(self, messages: list[dict[str, str]],
                 schema: dict[str, Any] | None = None) -> Completion:
        try:
            r = self._create(**self._params(messages, schema))
        except openai.OpenAIError as exc:
            raise _fault(exc, self.base_url) from exc
        if not r.choices:
            raise LlmUnavailableError(f"the LLM at {self.base_url} answered no choice")
        usage = r.usage
        return Completion(text=r.choices[0].message.content or "", model=r.model or "",
                          prompt_tokens=usage.prompt_tokens if usage else None,
                          completion_tokens=usage.completion_tokens if usage else None)

    def stream(self, messages: list[dict[str, str]], schema: dict[str, Any] | None,
               state: StreamState) -> Iterator[str]:
        """The answer's text pieces as the endpoint sends them; ``state`` gets the rest.
        Stops with :class:`LlmTimeoutError` once ``timeout_s`` has passed in total."""
        deadline = time.monotonic() + self.settings.timeout_s
        try:
            chunks = self._create(**self._params(messages, schema), stream=True,
                                  stream_options={"include_usage": True})
            for chunk in chunks:
                state.model = chunk.model or state.model
                if chunk.usage is not None:
                    state.prompt_tokens = chunk.usage.prompt_tokens
                    state.completion_tokens = chunk.usage.completion_tokens
                piece = chunk.choices[0].delta.content if chunk.choices else None
                if piece:
                    if state.first_token_s is None:
                        state.first_token_s = time.monotonic() - state.started
                    state.chunks += 1
                    yield piece
                if time.monotonic() > deadline:
                    chunks.close()
                    raise LlmTimeoutError(f"the LLM at {self.base_url} did not finish its "
                                          f"answer within {self.settings.timeout_s:g} s")
        except openai.OpenAIError as exc:
            raise _fault(exc, self.base_url) from exc

    def probe(self, timeout_s: float = 3.0) -> dict[str, Any]:
        """``{"state": "ok"|"down", ...}`` from the endpoint's model list (cheap, no tokens)."""
        started = time.monotonic()
        try:
            models = self._client.with_options(timeout=timeout_s, max_retries=0).models.list()
            names = [m.id for m in models.data]
        except openai.OpenAIError as exc:
            return {"state": "down", "reason": str(_fault(exc, self.base_url))}
        return {"state": "ok", "model": self.settings.model,
                "model_listed": self.settings.model in names or not names,
                "latency_ms": round((time.monotonic() - started) * 1000, 1)}
