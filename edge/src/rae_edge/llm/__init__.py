"""Grounded, cited answers from any OpenAI-compatible LLM (llama.cpp server, Ollama, vLLM,
LiteLLM, a cloud provider), built on the node's context packs.

Modules:
- ``client``: the ``openai`` SDK pointed at ``llm.base_url``: key from the environment or
  a secret file, timeouts and retries, faults as :class:`LlmUnavailableError` (503) and
  :class:`LlmTimeoutError` (504), a health probe;
- ``prompt``: the messages sent (instructions + the pack, each memory under its id) and the
  JSON schema that limits citations to the pack's ids;
- ``citations``: inline ``[id]`` citations read back, checked against the pack (unknown
  ids stripped and reported), incremental text of a streamed structured answer;
- ``scrub``: personal data (names, e-mails, phones, badge numbers) replaced by placeholders
  before a remote endpoint and restored in its answer;
- ``ask``: the ``/ask`` flow: pack, prompt, scrub, call, restore, check, audit facts.
"""
