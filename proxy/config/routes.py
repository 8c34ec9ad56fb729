"""Routes: which API surface a request target is, as a bounded label, in its one spelling.

A path is matched only in its canonical form. Any other spelling (empty or
dot segments, percent-encoded unreserved characters, an encoded ``/`` or
``\\``, a backslash, ``;`` parameters, lowercase hex in an escape, a letter
case variant of a route) is what an upstream that normalises paths could
read as a judged route the proxy did not see, so :meth:`RouteTable.route`
reports it as a problem (400 ``invalid_path``, never forwarded), whatever
the path. Canonical means equal to its own normalisation
(:func:`proxy.formats.paths.normalise_path`).

A canonical path is matched, first match wins, against:

1. the ``routes:`` of the config (whole paths with ``{name}`` segments);
2. the built-in table: each surface's path with and without ``/v1`` and
   under the prefixes real servers use (Azure ``/openai/deployments/{d}``
   and ``/openai/v1``, ``/engines/{e}``, LiteLLM's ``/anthropic``);
3. its last segments, whatever comes before them (``*/chat/completions``),
   the longest rule first, so that a prefix no table knows is judged too.
   The OpenAI resources that also end in ``messages`` (Assistants threads,
   a stored chat completion's messages) are named so they stay unjudged.

The rule then says, from the method, what is judged: a create path (the
prompt and the answer) and a token count (its prompt) on a POST, the one
method they accept; any other method there is refused (405, ``Allow: POST``,
:attr:`Route.allow`), so a body sent with another method never reaches the
model unjudged, except a CORS preflight (OPTIONS without a body), passed on
unjudged; a stored answer (``GET */responses/{id}``) its answer, on a GET
or a POST (an update's or a cancel's answer is the stored answer); a HEAD
or a DELETE there passes unjudged (no answer, a receipt), and any other
method is refused too (``Allow: GET, HEAD, POST, DELETE``).
The label is one of :data:`ROUTE_LABELS`, never a value taken from the
request. See docs/surfaces.md, "Routes".
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from proxy.config.checks import ConfigError, check_kind, check_mapping
from proxy.formats.paths import (
    PATH_CHARS,
    normalise_path,
    origin_form,
    path_problem,
    path_segments,
    split_query,
)

ROUTE_LABELS = ("chat_completions", "completions", "embeddings", "responses", "messages", "other")
SURFACE_LABELS = ROUTE_LABELS[:-1]

# What a rule's path is to the surface: the request and answer of a call
# (create), a stored answer (read), a prompt whose answer is no text of the
# surface's, such as a token count (count), or no call of it at all (none).
Use = Literal["create", "read", "count", "none"]

# What a create or count path accepts: the one method its API defines there.
ACCEPTED = "POST"
# The methods whose answer on a stored answer's path is that answer (DELETE's is
# a deletion's receipt, HEAD's and a preflight's have none).
_HANDS_BACK = frozenset({"GET", "POST"})
# What each kind of path accepts, in its Allow header; any other method is refused
# (a preflight without a body aside), so no answer leaves such a path unjudged.
_ACCEPTS: dict[Use, tuple[str, ...]] = {
    "create": (ACCEPTED,),
    "count": (ACCEPTED,),
    "read": ("GET", "HEAD", "POST", "DELETE"),
}

_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "_")
_KEPT_PATHS = 4096  # the matcher's results kept, per route table


# -- rules ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """One path pattern and what it is; ``*/`` patterns match the last segments."""

    pattern: str  # as written, e.g. "/openai/deployments/{d}/chat/completions"
    label: str  # a surface label, or "other" for paths that are named to stay unjudged
    use: Use
    literals: tuple[str | None, ...]  # a segment as written; None: a {name} placeholder
    any_prefix: bool
    folded: tuple[str | None, ...]  # the literals in lowercase, as paths are matched

    @property
    def specificity(self) -> tuple[int, tuple[bool, ...]]:
        """Sorts the rule before those it must win over: longer, then literal first."""
        return (-len(self.literals), tuple(part is None for part in self.literals))

    def fits(self, lowered: list[str]) -> bool:
        count = len(self.literals)
        if len(lowered) < count or (not self.any_prefix and len(lowered) != count):
            return False
        tail = lowered[len(lowered) - count :]
        return all(part is None or part == seg for part, seg in zip(self.folded, tail, strict=True))

    def spelled(self, segments: list[str]) -> list[str]:
        """``segments`` (which fit) with the rule's literal segments as the rule writes them."""
        start = len(segments) - len(self.literals)
        return segments[:start] + [
            seg if part is None else part
            for part, seg in zip(self.literals, segments[start:], strict=True)
        ]


def compile_rule(pattern: str, label: str, use: Use = "create") -> Rule:
    """A rule from a pattern (``/a/{name}/b``, or ``*/b`` for any prefix)."""
    any_prefix = pattern.startswith("*/")
    body = pattern[1:] if any_prefix else pattern
    literals = tuple(
        None if seg.startswith("{") else seg for seg in body.removeprefix("/").split("/")
    )
    folded = tuple(None if part is None else part.lower() for part in literals)
    return Rule(pattern, label, use, literals, any_prefix, folded)


def _surface_paths() -> list[Rule]:
    rules: list[Rule] = []
    openai = ("chat/completions", "completions", "embeddings")
    for suffix in (*openai, "responses", "messages"):
        label = suffix.replace("/", "_")
        rules += [compile_rule(f"/v1/{suffix}", label), compile_rule(f"/{suffix}", label)]
        if suffix != "messages":
            rules.append(compile_rule(f"/openai/v1/{suffix}", label))
        if suffix in openai:
            rules += [
                compile_rule(f"/openai/deployments/{{deployment}}/{suffix}", label),
                compile_rule(f"/engines/{{engine}}/{suffix}", label),
                compile_rule(f"/v1/engines/{{engine}}/{suffix}", label),
            ]
    rules += [
        compile_rule("/openai/responses", "responses"),  # Azure's preview path
        compile_rule("/anthropic/v1/messages", "messages"),  # LiteLLM's Anthropic pass-through
    ]
    return rules


# The built-in whole paths (step 2).
BUILT_IN: tuple[Rule, ...] = tuple(_surface_paths())

# The last segments of a surface's paths (step 3), whatever the prefix.
SUFFIXES: tuple[Rule, ...] = (
    compile_rule("*/chat/completions", "chat_completions"),
    compile_rule("*/completions", "completions"),
    compile_rule("*/embeddings", "embeddings"),
    compile_rule("*/responses", "responses"),
    compile_rule("*/messages", "messages"),
    # Stored answers, handed back: the answer is judged as output. A GET reads
    # one; a POST there answers it too (OpenAI's update of a stored completion's
    # metadata, the cancel of a background response).
    compile_rule("*/chat/completions/{completion_id}", "chat_completions", "read"),
    compile_rule("*/responses/{response_id}", "responses", "read"),
    compile_rule("*/responses/{response_id}/cancel", "responses", "read"),
    # The prompt is judged (a count is of what the model would read, after
    # redaction); the answer is a number or a compaction, passed through.
    compile_rule("*/messages/count_tokens", "messages", "count"),
    compile_rule("*/responses/input_tokens", "responses", "count"),
    compile_rule("*/responses/compact", "responses", "count"),
    # OpenAI resources that end in "messages" too, of other shapes.
    compile_rule("*/threads/{thread_id}/messages", "other", "none"),
    compile_rule("*/chat/completions/{completion_id}/messages", "other", "none"),
)


# -- matching -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """What a request's target is to the proxy."""

    label: str  # one of ROUTE_LABELS: "other" when nothing is judged
    judge_answer: bool = True  # False: the answer is passed through (a token count)
    # False: a body is passed on as sent, no prompt (an update of a stored answer's metadata)
    judge_prompt: bool = True
    problem: str | None = None  # why the path is not canonical: 400 invalid_path
    path: str = "/"  # the path in its canonical spelling (the query apart)
    # The methods the path accepts, when the request's is not one of them (405);
    # its label is then the surface it would have been, for the error's shape.
    allow: str | None = None


class RouteTable:
    """The routes of a config: its ``routes:`` first, then the built-in ones. Built once."""

    def __init__(self, extra: Iterable[Rule] = ()) -> None:
        self.extra = tuple(extra)
        # The config's first, each most specific first, and found by their last segment.
        ranked = [(0, rule) for rule in self.extra] + [(1, rule) for rule in BUILT_IN]
        self._whole = _by_last(ranked, lambda rule: len(rule.literals))
        self._suffixes = _by_last([(0, rule) for rule in SUFFIXES], lambda rule: 0)
        # Paths seen recently and how they are spelled: most requests repeat a
        # few paths, so the matcher's work is done once per path, not per request.
        self._spelled: dict[str, tuple[str, Rule | None]] = {}

    def find(self, segments: list[str]) -> Rule | None:
        """The rule a path's segments match, letter case aside; None: no rule."""
        lowered = [seg.lower() for seg in segments]
        last = lowered[-1] if lowered else ""
        for index, size in ((self._whole, len(lowered)), (self._suffixes, 0)):
            rules = index.get((size, last)) or index.get((size, None)) or []
            for rule in rules:
                if rule.fits(lowered):
                    return rule
        return None

    def spell(self, path: str) -> tuple[str, Rule | None]:
        """The canonical spelling of ``path`` (normalised, and a route's literal segments
        as the route writes them), and the rule it matches."""
        known = self._spelled.get(path)
        if known is None:
            if len(self._spelled) >= _KEPT_PATHS:
                self._spelled.clear()  # many distinct paths (ids): start over
            known = self._spelled[path] = self._spell(path)
        return known

    def _spell(self, path: str) -> tuple[str, Rule | None]:
        normal = normalise_path(path)
        segments = path_segments(normal)
        rule = self.find(segments)
        if rule is None:
            return normal, None
        spelled = "/" + "/".join(rule.spelled(segments))
        return spelled + "/" if normal.endswith("/") else spelled, rule

    def route(self, method: str, raw_target: str, has_body: bool) -> Route:
        """The route of a request: its label, what is judged, or why its path is refused."""
        target = origin_form(raw_target.partition("#")[0])
        if target is None:
            return Route("other", problem="the request target is not a path")
        path = split_query(target)
        canonical, rule = self.spell(path)
        judged = rule is not None and _judged(rule.use, method)
        allow = _refused(rule.use, method, has_body) if rule is not None else None
        label = rule.label if rule is not None and (judged or allow) else "other"
        if path != canonical or "#" in raw_target:
            problem = path_problem(path) or (
                "a letter-case variant of a route"
                if path != canonical
                else "a fragment ('#') in the request target"
            )
            return Route(label, problem=problem, path=canonical)  # the route it would be
        updates = rule is not None and rule.use == "read" and method == "POST"
        return Route(
            label,
            rule is None or rule.use != "count",
            path=path,
            allow=allow,
            judge_prompt=not updates,
        )

    def patterns(self, label: str) -> list[Rule]:
        """The rules that judge ``label``: the config's, then the last-segment ones."""
        return [r for r in (*self.extra, *SUFFIXES) if r.label == label]


_Index = dict[tuple[int, str | None], list[Rule]]


def _by_last(ranked: list[tuple[int, Rule]], size: Callable[[Rule], int]) -> _Index:
    """Rules by (size, last literal segment), each list in the order they are tried;
    the rules that end in a placeholder are in every list of their size, and under None."""
    index: dict[tuple[int, str | None], list[tuple[int, Rule]]] = {}
    for rank, rule in ranked:
        index.setdefault((size(rule), rule.folded[-1]), []).append((rank, rule))
    for (group, last), rules in index.items():
        if last is not None:
            rules += index.get((group, None), [])
    order = {
        key: sorted(rules, key=lambda r: (r[0], r[1].specificity)) for key, rules in index.items()
    }
    return {key: [rule for _, rule in rules] for key, rules in order.items()}


def _judged(use: Use, method: str) -> bool:
    if use == "read":
        return method in _HANDS_BACK
    if use == "none":
        return False
    return method == ACCEPTED


def _refused(use: Use, method: str, has_body: bool) -> str | None:
    """The Allow header of a path that does not accept ``method`` (a preflight aside)."""
    accepted = _ACCEPTS.get(use)
    if accepted is None or method in accepted or (method == "OPTIONS" and not has_body):
        return None
    return ", ".join(accepted)


# -- the routes: key --------------------------------------------------------------


def parse_routes(raw: Any) -> RouteTable:
    """The ``routes:`` map (a path pattern to a surface label) as a table; ConfigError
    names the key of a bad entry."""
    if raw is None:
        return RouteTable()
    section: Mapping[str, Any] = check_mapping("routes", raw)
    rules: list[Rule] = []
    seen: dict[tuple[str | None, ...], str] = {}
    for pattern, label in section.items():
        key = f"routes.{pattern}"
        problem = _pattern_problem(pattern)
        if problem is not None:
            raise ConfigError(key, problem)
        if label not in SURFACE_LABELS:
            raise ConfigError(
                key, f"expected one of {', '.join(SURFACE_LABELS)}, got {check_kind(label)}"
            )
        rule = compile_rule(pattern, label)
        shape = tuple(None if part is None else part.lower() for part in rule.literals)
        if shape in seen:
            raise ConfigError(key, f"the same route as {seen[shape]!r}")
        seen[shape] = pattern
        rules.append(rule)
    return RouteTable(rules)


def _pattern_problem(pattern: str) -> str | None:
    if not pattern.startswith("/") or pattern == "/":
        return "expected a path such as /api/chat (starting with '/', one segment or more)"
    for segment in pattern[1:].split("/"):
        if not segment:
            return "an empty segment ('//' or a trailing '/')"
        if segment.startswith("{") or segment.endswith("}") or "{" in segment or "}" in segment:
            name = segment[1:-1]
            if not (segment.startswith("{") and segment.endswith("}")) or not name:
                return f"a {{name}} placeholder must be a whole segment, got {segment!r}"
            if not set(name) <= _NAME_CHARS or name[0].isdigit():
                return f"a placeholder name is letters, digits and '_', got {segment!r}"
            continue
        if segment in (".", ".."):
            return f"a dot segment ({segment!r})"
        bad = sorted(set(segment) - (PATH_CHARS - {"/"}))
        if bad:
            return f"characters a route cannot hold ({''.join(bad)!r}): write them unencoded"
    return None
