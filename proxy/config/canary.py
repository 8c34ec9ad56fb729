"""The ``canary`` section: labelled texts the proxy judges on its own, to measure live rates.

``canary: {dataset: FILE, interval_s: 10, stages: [input]}``. The dataset is
JSON lines, one object a line, with a string ``text`` (or ``prompt``, the key
``taxmeter evaluate`` reads, so its datasets work unchanged) and a non-empty
string ``label``: ``benign``, or the class of attack the text is. Other keys
are ignored, blank lines skipped. Without ``dataset`` the prompt set shipped
in the package (``proxy/datasets/prompts.jsonl``) is used.

The labels become the ``label`` of ``taxmeter_canary_checks_total``, so they
are bounded: at most :data:`MAX_LABELS` distinct ones of at most 64
characters. The dataset is the operator's file, read when the config is
loaded (and again on a reload), never anything a client sent. A bad file is
a ConfigError naming ``canary.dataset`` and the file's line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from filters.base import Stage
from proxy.config.checks import (
    ConfigError,
    check_known,
    check_mapping,
    check_positive,
    check_stages,
    check_str,
)
from proxy.config.labelled import DatasetError, read_lines
from proxy.config.sections import Check, given, keys_of

CANARY_STAGES: tuple[Stage, ...] = ("input", "output")
BENIGN = "benign"
MAX_LABELS = 20  # series per filter and variant: labels x actions
MAX_LABEL_CHARS = 64


@dataclass(frozen=True, slots=True)
class CanaryItem:
    text: str
    label: str


@dataclass(frozen=True, slots=True)
class CanaryConfig:
    """What the canary checks, how often, at which stages (see proxy.control.canary)."""

    items: tuple[CanaryItem, ...]
    labels: tuple[str, ...]  # distinct, benign first, then by name
    dataset: str | None = None  # None: the packaged prompt set
    interval_s: float = 10.0
    stages: tuple[Stage, ...] = ("input",)


def parse_canary(raw: Any) -> CanaryConfig | None:
    """The section (None: no canary); reads the dataset, ConfigError on any fault."""
    if raw is None:
        return None
    section = check_mapping("canary", raw)
    check_known("canary", section, CANARY_KEYS)
    values = given("canary.", section, _CHECKS, ("dataset",))
    items = load_items(values.get("dataset"))
    labels = sorted({item.label for item in items}, key=lambda lb: (lb != BENIGN, lb))
    return CanaryConfig(items, tuple(labels), **values)


def _stages(key: str, value: Any) -> tuple[Stage, ...]:
    return check_stages(key, value, CANARY_STAGES)


CANARY_KEYS = keys_of(CanaryConfig, leave_out=("items", "labels"))
_CHECKS: dict[str, Check] = {
    "interval_s": check_positive,
    "stages": _stages,
    "dataset": check_str,
}


def load_items(path: str | None) -> tuple[CanaryItem, ...]:
    """The labelled texts of ``path`` (None: the packaged set); ConfigError names the line."""
    key = "canary.dataset"
    items: list[CanaryItem] = []
    labels: set[str] = set()
    try:
        shown, documents = read_lines(path)
        for where, document in documents:
            item = _item(key, where, document)
            if item.label not in labels:
                if len(labels) == MAX_LABELS:
                    raise ConfigError(
                        key,
                        f"{where}: label {item.label!r} is one more than the "
                        f"{MAX_LABELS} distinct labels a canary set may have",
                    )
                labels.add(item.label)
            items.append(item)
    except DatasetError as exc:
        raise ConfigError(key, str(exc)) from None
    if not items:
        raise ConfigError(key, f"{shown}: the dataset holds no items")
    return tuple(items)


def _item(key: str, where: str, document: Any) -> CanaryItem:
    if not isinstance(document, dict):
        raise ConfigError(key, f"{where}: expected a JSON object")
    text = document.get("text", document.get("prompt"))
    label = document.get("label")
    if not isinstance(text, str):
        raise ConfigError(key, f'{where}: expected a string "text" (or "prompt")')
    if not isinstance(label, str) or not label:
        raise ConfigError(key, f'{where}: expected a non-empty string "label"')
    if len(label) > MAX_LABEL_CHARS or not label.isprintable():
        raise ConfigError(
            key, f"{where}: a label is printable and at most {MAX_LABEL_CHARS} characters"
        )
    return CanaryItem(text, label)
