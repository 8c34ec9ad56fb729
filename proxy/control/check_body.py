"""What ``POST /admin/check`` asks, read and checked: a text or a request, a stage, a variant.

Two shapes (every other key is refused, naming it)::

    {"text": "...", "stage": "input" | "output",
     "variant": NAME, "route": LABEL, "every_filter": false}
    {"request": {a request body}, "route": SURFACE, "stage": "input",
     "variant": NAME, "every_filter": false}

``variant`` left out is the heaviest-weighted variant (the first of equals,
the report's baseline); ``route`` of a text defaults to ``chat_completions``
and is only what the filters read as the request's route. A request's
``route`` names the surface that reads it: chat_completions, completions,
embeddings, responses or messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.config.routes import ROUTE_LABELS, SURFACE_LABELS
from proxy.config.schema import Config
from proxy.judge.trial import TRIAL_STAGES, TrialStage

_TEXT_KEYS = ("text", "stage", "variant", "route", "every_filter")
_REQUEST_KEYS = ("request", "stage", "variant", "route", "every_filter")
SHAPES = (
    'expected {"text": "...", "stage": "input" | "output"} or '
    '{"request": {...}, "route": "chat_completions" | ..., "stage": "input"}'
)


class CheckError(Exception):
    """A check that cannot be run: ``status`` and ``code`` say what the caller gets."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class CheckAsk:
    """One check, as asked: ``text`` or ``request`` (exactly one of them)."""

    stage: TrialStage
    variant: str
    route: str
    text: str | None = None
    request: Any = None
    every: bool = False


def read_ask(document: Any, config: Config) -> CheckAsk:
    """The check ``document`` asks for under ``config``; CheckError names what is wrong."""
    if not isinstance(document, dict):
        raise CheckError(400, "invalid_body", f"the body is not a JSON object: {SHAPES}")
    if ("text" in document) == ("request" in document):
        raise CheckError(400, "invalid_body", f'give "text" or "request", one of them: {SHAPES}')
    is_text = "text" in document
    known = _TEXT_KEYS if is_text else _REQUEST_KEYS
    for key in document:
        if key not in known:
            raise CheckError(
                400, "invalid_body", f"{key}: unknown key (expected {', '.join(known)})"
            )
    stage = _stage(document, is_text)
    variant = _variant(document.get("variant"), config)
    every = document.get("every_filter", False)
    if not isinstance(every, bool):
        message = f"every_filter: expected true or false, got {every!r}"
        raise CheckError(400, "invalid_body", message)
    if is_text:
        text = document["text"]
        if not isinstance(text, str):
            raise CheckError(400, "invalid_body", f"text: expected a string, got {_kind(text)}")
        route = _route(document.get("route", "chat_completions"), ROUTE_LABELS)
        return CheckAsk(stage, variant, route, text=text, every=every)
    if "route" not in document:
        raise CheckError(400, "invalid_route", f"route: missing; {_one_of(SURFACE_LABELS)}")
    route = _route(document["route"], SURFACE_LABELS)
    return CheckAsk(stage, variant, route, request=document["request"], every=every)


def _stage(document: dict[str, Any], is_text: bool) -> TrialStage:
    if "stage" not in document:
        raise CheckError(400, "invalid_stage", f"stage: missing; {_one_of(TRIAL_STAGES)}")
    stage = document["stage"]
    for known in TRIAL_STAGES:
        if stage == known:
            if known != "input" and not is_text:
                raise CheckError(
                    400,
                    "invalid_stage",
                    "stage: a request is checked at the input stage; an answer's text is "
                    'checked with {"text": "...", "stage": "output"}',
                )
            return known
    extra = " (stream windows are not checked: output judges the whole text)"
    raise CheckError(
        400,
        "invalid_stage",
        f"stage: {_one_of(TRIAL_STAGES)}, got {stage!r}{extra if stage == 'stream' else ''}",
    )


def _variant(name: Any, config: Config) -> str:
    names = [v.name for v in config.variants]
    if name is None:
        # max() keeps the first of equal weights, as the report's baseline does.
        return max(config.variants, key=lambda v: v.weight).name
    if not isinstance(name, str) or name not in names:
        raise CheckError(
            400, "unknown_variant", f"variant: no variant {name!r} (configured: {', '.join(names)})"
        )
    return name


def _route(label: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(label, str) or label not in allowed:
        raise CheckError(400, "invalid_route", f"route: {_one_of(allowed)}, got {label!r}")
    return label


def _one_of(values: tuple[str, ...]) -> str:
    return "expected one of " + ", ".join(values)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
