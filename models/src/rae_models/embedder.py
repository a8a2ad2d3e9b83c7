"""``OnnxEmbedder``: all-MiniLM-L6-v2 (int8 ONNX) with tokenizers + onnxruntime, no hub.

Sentence embedding = mean of the token states over the attention mask, then L2
normalised (what sentence-transformers does for this model). The packaged
``tokenizer.json`` pads and truncates to a fixed 128 tokens; we switch that to
truncation at ``max_tokens`` and padding to each batch's longest, which is ~5x faster on
short maintenance lines and keeps longer manual text. Texts are batched by length and
long ones in smaller batches, which keeps a node's peak memory low (see ``embed``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from rae_models.locate import model_files, require
from rae_models.manifest import load_manifest
from rae_models.verify import ensure_verified

EMBEDDER = "all-MiniLM-L6-v2"
DIM = 384
#: Largest batch x padded-length^2 per ONNX call (32 texts of 64 tokens): caps the memory
#: of the attention matrices, which dominate the peak for long texts.
ATTENTION_BUDGET = 32 * 64 * 64


def embedder_files(root: Path | None = None, *, verify: bool = False) -> dict[str, Path]:
    """``{"model.onnx": path, "tokenizer.json": path}`` of the packaged embedder."""
    if verify:
        return ensure_verified(EMBEDDER, root)
    paths = model_files(EMBEDDER, root)
    require(paths, EMBEDDER)
    return paths


class OnnxEmbedder:
    """A loaded sentence embedder. Thread-safe for ``embed`` (onnxruntime sessions and
    tokenizers' batch encode both are)."""

    dim = DIM

    def __init__(
        self, *, max_tokens: int = 256, threads: int = 0, root: Path | None = None,
        verify: bool = True,
    ) -> None:
        paths = embedder_files(root, verify=verify)
        spec = load_manifest()[EMBEDDER]
        self.model_id = EMBEDDER + "-onnx-int8"
        #: package version + the first 12 hex of the model's sha256: a different file is a
        #: different version even when a package forgot to bump its number.
        package_version = spec.version.rpartition("==")[2]
        self.version = f"{package_version}+{spec.files['model.onnx'].sha256[:12]}"
        self.max_tokens = max_tokens
        self._tok = Tokenizer.from_file(str(paths["tokenizer.json"]))
        self._tok.enable_truncation(max_tokens)
        self._tok.no_padding()  # padded per batch by ``_run``
        # A second tokenizer without truncation, for counting tokens of whole texts.
        self._counter = Tokenizer.from_file(str(paths["tokenizer.json"]))
        self._counter.no_truncation()
        self._counter.no_padding()
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # No busy-waiting between runs: by default the intra-op threads spin after each
        # run, and on a 2-core node they take the core that the same request's next steps
        # (DuckDB, Lance, the event loop) need. Measured at 20k memories (bench push):
        # push p50 38-58 -> 25-28 ms, p95 48-150 -> 29-32 ms; a lone embedding is ~1 ms
        # slower (2.2 -> 3.3 ms) and bulk throughput is unchanged.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(paths["model.onnx"]), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}

    @property
    def tag(self) -> str:
        """``model_id@version``: stored beside every vector so a model change is seen."""
        return f"{self.model_id}@{self.version}"

    def count_tokens(self, text: str) -> int:
        """Word-piece tokens in ``text`` (no special tokens, no truncation)."""
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def _run(self, ids_list: Sequence[Sequence[int]]) -> np.ndarray:
        """One ONNX call on token ids padded to the longest: ``(n, 384)``, L2-normalised."""
        width = max(len(ids) for ids in ids_list)
        ids = np.zeros((len(ids_list), width), dtype=np.int64)
        mask = np.zeros((len(ids_list), width), dtype=np.int64)
        for i, row in enumerate(ids_list):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        states = self._session.run(None, feeds)[0]  # (batch, seq, 384)
        m = mask[:, :, None].astype(np.float32)
        pooled = (states * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.asarray(pooled / np.clip(norms, 1e-12, None), dtype=np.float32)

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Embeds any number of texts, at most ``batch_size`` per ONNX call, in order.

        Texts are batched by token length (and put back in order afterwards), so each
        batch pads to a similar length. A batch of long texts is also kept under
        :data:`ATTENTION_BUDGET` (batch x length^2): attention memory grows with the
        square of the length, and 32 texts of 256 tokens would take ~250 MiB more
        than 32 of 48.
        """
        n = len(texts)
        out = np.empty((n, DIM), dtype=np.float32)
        if n == 0:
            return out
        encoded = [e.ids for e in self._tok.encode_batch(list(texts))]
        order = sorted(range(n), key=lambda i: len(encoded[i]))
        batch: list[int] = []
        for i in order:
            width = len(encoded[i])  # sorted: the newest member is the longest
            if batch and (len(batch) >= batch_size
                          or (len(batch) + 1) * width * width > ATTENTION_BUDGET):
                out[batch] = self._run([encoded[j] for j in batch])
                batch = []
            batch.append(i)
        out[batch] = self._run([encoded[j] for j in batch])
        return out
