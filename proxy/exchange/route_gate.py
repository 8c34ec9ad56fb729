"""The gate at a request's route: its surface, or why it is refused before any body is read.

Four refusals, each never forwarded: a request that names another method
than its own (400 ``method_override``: a method-override header or a
``_method`` query parameter, by which some servers and frameworks take the
method from the request, so the model server would answer a method the
filters did not judge, such as a GET of a stored answer sent as an unjudged
POST), a path not in canonical form (400
``invalid_path``, in the error shape of the surface it would have been), a
method a surface's path does not accept (405 ``method_not_allowed`` with
``Allow``, in that surface's shape; with ``unjudged_routes: pass_all`` one
without a body, such as OpenAI's list of stored chat completions, is
forwarded unjudged instead), and a route no surface judges (403 ``unjudged_route``): with
``unjudged_routes: block`` every one but a text-free read
(:data:`TEXT_FREE_READS`); with ``pass``, the default, only the routes of
:data:`MODEL_ROUTES`, where real model servers take a prompt (or hand back a
stored answer) in a shape no adapter reads, since forwarding them would let
a prompt reach the model unjudged; ``pass_all`` forwards those too. Routes
forwarded unjudged are counted as route ``other``.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from proxy.config.routes import SURFACE_LABELS, RouteTable, Rule, compile_rule
from proxy.exchange.exchange import Exchange
from proxy.exchange.respond import send_error
from proxy.formats.paths import path_segments
from proxy.surfaces import surface_for
from proxy.surfaces.base import Surface

# What a client may read with unjudged_routes: block: GET or HEAD, no text of a model.
TEXT_FREE_READS: tuple[Rule, ...] = tuple(
    compile_rule(pattern, "other", "read")
    for pattern in (
        "/v1/models", "/models", "/v1/models/{model}",
        "/health", "/healthz", "/ready", "/version", "/metrics",
    )
)  # fmt: skip


# Where known model servers take a prompt or return a stored answer in their own
# shapes: refused unless `routes:` maps them to a surface or unjudged_routes is pass_all.
MODEL_ROUTES: tuple[Rule, ...] = tuple(
    compile_rule(pattern, "other", "none")
    for pattern in (
        "*/invocations",  # vLLM, SageMaker: chat or completions bodies
        "*/completion", "*/infill", "*/embedding", "*/rerank", "*/reranking",  # llama.cpp
        "*/generate", "*/generate_stream",  # TGI
        "*/api/chat", "*/api/generate", "*/api/embed",  # Ollama's own API
        "*/score", "*/classify", "*/pooling",  # vLLM's other models
        "*/conversations", "*/conversations/{conversation_id}/items",  # stored items, both ways
        "*/threads", "*/threads/{thread_id}/messages", "*/threads/runs",  # Assistants
        "*/threads/{thread_id}/runs",
        "*/batches",  # a batch's prompts, from an uploaded file
    )
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    message: str
    outcome: str
    allow: str | None = None  # a 405's Allow header


@dataclass(frozen=True, slots=True)
class Gate:
    """A request's route label, its surface (None: forwarded unjudged), and any refusal."""

    label: str
    surface: Surface | None
    judge_answer: bool
    refusal: Refusal | None = None
    judge_prompt: bool = True  # False: a body is passed on, no prompt (see Route.judge_prompt)


# Gates already decided, by (table, policy, method, target, has a body): most
# requests repeat a few targets, and a Gate is immutable, so it is decided once.
_GateKey = tuple[RouteTable, str, str, str, bool]
_DECIDED: dict[_GateKey, Gate] = {}
_KEPT_GATES = 1024  # past this (many distinct targets: ids, queries), start over


def gate(request: web.BaseRequest, table: RouteTable, unjudged: str) -> Gate:
    """Where ``request`` goes (``unjudged``: the unjudged_routes policy, pass or block)."""
    key = (table, unjudged, request.method, request.raw_path, request.body_exists)
    decided = _DECIDED.get(key)
    if decided is None:
        if len(_DECIDED) >= _KEPT_GATES:
            _DECIDED.clear()
        decided = _DECIDED[key] = _decide(table, unjudged, *key[2:])
    if decided.refusal is None and _names_another_method(request):
        return Gate(decided.label, decided.surface, False, _OVERRIDE_REFUSAL)
    return decided


# Where servers and frameworks read a method that replaces the request line's
# (Express's method-override, Rack, Symfony, Laravel, ASP.NET Core, Google's APIs).
METHOD_OVERRIDE_HEADERS = ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override")
METHOD_OVERRIDE_PARAMETER = "_method"
_OVERRIDE_REFUSAL = Refusal(
    400,
    "method_override",
    "the request names another method than its own (a method-override header or a"
    " _method parameter); taxmeter judges a request by its method: send that method itself",
    "client_error",
)


def _names_another_method(request: web.BaseRequest) -> bool:
    headers = request.headers
    for name in METHOD_OVERRIDE_HEADERS:
        if name in headers:
            return True
    query = request.raw_path.partition("?")[2]
    # Cheap first: the name, percent-encoded or not, has "method" in it.
    if "method" not in query.lower():
        return False
    return any(k == METHOD_OVERRIDE_PARAMETER for k in request.rel_url.query)


def _decide(table: RouteTable, unjudged: str, method: str, target: str, has_body: bool) -> Gate:
    route = table.route(method, target, has_body)
    surface = surface_for(route.label)
    label = route.label if surface is not None else "other"
    if route.problem is not None:
        message = (
            f"the request path is not in canonical form: {route.problem}; taxmeter forwards"
            f" only canonical paths (this one is {route.path})"
        )
        return Gate(label, surface, False, Refusal(400, "invalid_path", message, "client_error"))
    if route.allow is not None:
        if unjudged == "pass_all" and not has_body:
            return Gate("other", None, True)  # no prompt: forwarded unjudged, as asked
        message = (
            f"this route accepts only {route.allow}: taxmeter forwards a request here only"
            " with the method its filters judge"
        )
        refusal = Refusal(405, "method_not_allowed", message, "client_error", route.allow)
        return Gate(label, surface, False, refusal)
    if surface is None and unjudged == "block" and not _text_free(method, route.path):
        message = (
            "no content filter judges this route, and unjudged_routes is block: it is not forwarded"
        )
        return Gate(label, None, False, Refusal(403, "unjudged_route", message, "blocked"))
    if surface is None and unjudged == "pass" and _model_route(route.path):
        message = (
            "this route carries text a model reads in a shape no taxmeter adapter judges, so it"
            " is not forwarded; use the server's OpenAI- or Anthropic-compatible route, map"
            " this path to a surface with routes:, or set unjudged_routes: pass_all"
        )
        return Gate(label, None, False, Refusal(403, "unjudged_route", message, "blocked"))
    return Gate(label, surface, route.judge_answer, judge_prompt=route.judge_prompt)


def _model_route(path: str) -> bool:
    segments = [segment.lower() for segment in path_segments(path)]
    return any(rule.fits(segments) for rule in MODEL_ROUTES)


def _text_free(method: str, path: str) -> bool:
    if method not in ("GET", "HEAD"):
        return False
    segments = path_segments(path)
    # The patterns are lowercase, so segments as sent match them only in that case.
    return any(rule.fits(segments) for rule in TEXT_FREE_READS)


async def refuse(request: web.Request, ex: Exchange, refusal: Refusal) -> web.StreamResponse:
    """Answer a refused request; its body, if any, is never read or forwarded."""
    headers = {"Allow": refusal.allow} if refusal.allow is not None else None
    return await send_error(
        request, ex, refusal.status, refusal.code, refusal.message, refusal.outcome, headers=headers
    )


def describe(table: RouteTable, unjudged: str) -> list[str]:
    """What `serve` says at start-up: one line per judged surface, then the unjudged policy."""
    lines = []
    for label in SURFACE_LABELS:
        if surface_for(label) is None:
            continue
        paths = ", ".join(_shown(rule) for rule in table.patterns(label))
        lines.append(f"judged   {label}: {paths}")
    if unjudged == "block":
        reads = " ".join(rule.pattern for rule in TEXT_FREE_READS)
        lines.append(f"unjudged block (403 unjudged_route; GET and HEAD pass: {reads})")
    elif unjudged == "pass":
        lines.append(
            'unjudged pass (forwarded unjudged, counted as route="other"; known model routes'
            " no adapter judges get 403 unjudged_route)"
        )
    else:
        lines.append('unjudged pass_all (forwarded unjudged, counted as route="other")')
    return lines


def _shown(rule: Rule) -> str:
    if rule.use == "read":
        return f"GET/POST {rule.pattern}"  # each hands the stored answer back
    if rule.use == "count":
        return f"{rule.pattern} (input only)"
    return rule.pattern
