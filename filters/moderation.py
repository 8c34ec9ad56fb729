"""Moderation: asks an external moderation service whether the text is safe.

Two styles of service (``style``):

* ``openai``: a moderation endpoint in OpenAI's shape. POSTs ``{"model",
  "input"}`` and reads ``results[0]``: ``flagged``, ``categories`` and, with
  a ``threshold``, ``category_scores``.
* ``judge``: a chat model used as a judge, Llama Guard style. POSTs the text
  inside a prompt ``template`` to a chat completions endpoint and reads the
  reply: ``safe``, or ``unsafe`` and a line of hazard codes (``S1,S10``).

Only the text judged is sent, never the rest of the request body. Each
instance keeps one keep-alive connection pool, opened on first use (filters
are built before the event loop runs) and closed by :meth:`Moderation.aclose`.

What a check raises, all contained by the chain runner (action ``error``,
then ``on_error``)::

    Exception
    ├── ModerationError            HTTP status >= 400, a body that is not JSON
    │                              or not the expected shape, a judge reply that
    │                              is neither safe nor unsafe, a call after aclose
    ├── aiohttp.ClientError        refused, reset, DNS failure, ...
    └── TimeoutError               connect_timeout_s / read_timeout_s expired

The runner's ``timeout_ms`` bounds the whole call; the socket timeouts only
keep a dead service from holding a pooled connection beyond it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import aiohttp
import orjson
from yarl import URL

from filters.base import FilterContext, Stage, Verdict
from filters.params import non_empty, number, one_of

STYLES = ("openai", "judge")
_DEFAULT_PATH = {"openai": "/v1/moderations", "judge": "/v1/chat/completions"}
_DEFAULT_MODEL = {"openai": "omni-moderation-latest", "judge": "llama-guard"}
# Room for "unsafe" and several codes, and no more: a judge that rambles
# instead of following the format should not cost a whole completion.
_JUDGE_SAMPLING = {"max_tokens": 32, "temperature": 0}
_QUOTE_CHARS = 80  # of a judge reply or a service's error quoted in an error message
# What a hazard code looks like (Llama Guard's S1..S14, O1..O6). The judge is a
# model reading the prompt: anything else on its codes line may be the prompt's
# own words, and a reason goes to traces even with telemetry.trace_content off.
_HAZARD_CODE = re.compile(r"[A-Za-z]{1,3}[0-9]{1,3}")

# Llama Guard 3's hazard taxonomy (MLCommons), as its model card lists it.
HAZARDS = {
    "S1": "Violent Crimes", "S2": "Non-Violent Crimes", "S3": "Sex-Related Crimes",
    "S4": "Child Sexual Exploitation", "S5": "Defamation", "S6": "Specialized Advice",
    "S7": "Privacy", "S8": "Intellectual Property", "S9": "Indiscriminate Weapons",
    "S10": "Hate", "S11": "Suicide & Self-Harm", "S12": "Sexual Content", "S13": "Elections",
    "S14": "Code Interpreter Abuse",
}  # fmt: skip

# Llama Guard 3's task prompt. {role} is "User" on the input stage and "Agent"
# (the assistant) on the output and stream stages; {text} is the text judged.
DEFAULT_TEMPLATE = (
    "Task: Check if there is unsafe content in '{role}' messages in conversations "
    "according our safety policy with the below categories.\n\n"
    "<BEGIN UNSAFE CONTENT CATEGORIES>\n"
    + "".join(f"{code}: {name}.\n" for code, name in HAZARDS.items())
    + "<END UNSAFE CONTENT CATEGORIES>\n\n"
    "<BEGIN CONVERSATION>\n\n{role}: {text}\n\n<END CONVERSATION>\n\n"
    "Provide your safety assessment for ONLY THE LAST {role} message in the above "
    "conversation:\n"
    " - First line must read 'safe' or 'unsafe'.\n"
    " - If unsafe, a second line must include a comma-separated list of violated categories."
)


class ModerationError(Exception):
    """The moderation service answered, but not with a usable verdict."""


def _number(name: str, value: object, expected: str, high: float = math.inf) -> float:
    value = number(name, value)
    if not (math.isfinite(value) and 0 < value <= high):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return float(value)


def _endpoint(url: object, style: str) -> URL:
    text = non_empty("url", url)
    try:
        parsed = URL(text)
    except ValueError as exc:
        raise ValueError(f"url: {exc}") from None
    if parsed.user is not None or parsed.password is not None:
        # Not quoted: it holds a secret, and URLs end up in error messages.
        raise ValueError("url: must not contain credentials; name a variable in api_key_env")
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"url: expected an http:// or https:// URL, got {text!r}")
    if parsed.path in ("", "/"):
        parsed = parsed.with_path(_DEFAULT_PATH[style], keep_query=True)
    return parsed


def _categories(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"categories: expected a list of strings, got {value!r}")
    if not value or not all(v.strip() for v in value):
        raise ValueError("categories: expected at least one non-empty name")
    return tuple(value)


def _auth_headers(api_key_env: object) -> dict[str, str]:
    if api_key_env is None:
        return {}
    name = non_empty("api_key_env", api_key_env)
    token = os.environ.get(name, "").strip()
    if not token:
        # At start-up, not per call: with on_error open, a missing key would
        # otherwise turn every check into an error and let everything through.
        raise ValueError(f"api_key_env: the environment variable {name} is not set or empty")
    return {"Authorization": f"Bearer {token}"}


def _field(obj: object, key: str, kind: type[Any]) -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or (kind is list and not value):
        raise ModerationError(f"the response has no usable {key!r}")
    return value


class Moderation:
    """Blocks text that an external moderation service flags.

    ``style: openai`` blocks when ``results[0].flagged`` is true; with
    ``categories``, only when one of those categories is flagged; with a
    ``threshold``, when the score of a category (of ``categories``, or any)
    is at least the threshold, whatever the service's own flags say. The
    reason names the categories: ``moderation: violence, harassment``.

    ``style: judge`` blocks when the reply's first line is ``unsafe``; with
    ``categories`` (hazard codes), only when one of them is listed or when
    the reply lists no code at all. The reason names the codes, and with the
    default template their names: ``moderation: unsafe S1 (Violent Crimes)``.
    """

    stages: tuple[Stage, ...] = ("input", "output", "stream")
    # One call to the service per token would cost more than the answer: on a
    # stream it judges each sentence, unless the config says otherwise.
    stream_defaults: ClassVar[Mapping[str, object]] = MappingProxyType({"at_sentence_end": True})

    def __init__(
        self,
        *,
        url: str,
        style: str = "openai",
        model: str | None = None,
        api_key_env: str | None = None,
        categories: list[str] | None = None,
        threshold: float | None = None,
        template: str | None = None,
        connect_timeout_s: float = 2,
        read_timeout_s: float = 10,
    ) -> None:
        self._style = one_of("style", style, STYLES)
        self._url = _endpoint(url, style)
        self._model = _DEFAULT_MODEL[style] if model is None else non_empty("model", model)
        self._categories = _categories(categories)
        self._threshold = (
            None if threshold is None else _number("threshold", threshold, "a score in (0, 1]", 1)
        )
        if self._threshold is not None and style != "openai":
            raise ValueError("threshold: only style openai reports scores")
        if template is not None:
            if style != "judge":
                raise ValueError("template: only used with style judge")
            if "{text}" not in non_empty("template", template):
                raise ValueError("template: must contain the {text} placeholder")
        self._template = DEFAULT_TEMPLATE if template is None else template
        # A custom template may define its own codes, so only ours get names.
        self._hazard_names = HAZARDS if template is None else {}
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=_number("connect_timeout_s", connect_timeout_s, "seconds > 0"),
            sock_read=_number("read_timeout_s", read_timeout_s, "seconds > 0"),
        )
        self._headers = {"Content-Type": "application/json", **_auth_headers(api_key_env)}
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    async def check(self, ctx: FilterContext) -> Verdict:
        if self._style == "openai":
            return self._openai_verdict(await self._post({"model": self._model, "input": ctx.text}))
        role = "User" if ctx.stage == "input" else "Agent"
        # {role} first, so that a "{role}" inside the user's text stays as written.
        prompt = self._template.replace("{role}", role).replace("{text}", ctx.text)
        messages = [{"role": "user", "content": prompt}]
        payload = await self._post({"model": self._model, "messages": messages, **_JUDGE_SAMPLING})
        message = _field(_field(payload, "choices", list)[0], "message", dict)
        return self._judge_verdict(_field(message, "content", str))

    async def aclose(self) -> None:
        """Close the connection pool; a check after this raises ModerationError."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            if self._closed:
                raise ModerationError("the filter was closed")
            # Created here, inside the running loop the session belongs to.
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers=self._headers,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def _post(self, body: dict[str, Any]) -> Any:
        async with self._client().post(self._url, data=orjson.dumps(body)) as response:
            raw = await response.read()
            status = response.status
        # Without the query string, which may carry a key (Azure's api-key=).
        where = self._url.with_query(None)
        if status >= 400:
            raise ModerationError(f"HTTP {status} from {where}{_service_message(raw)}")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ModerationError(f"HTTP {status} from {where}: the body is not JSON") from None

    def _openai_verdict(self, payload: object) -> Verdict:
        result = _field(payload, "results", list)[0]
        if self._threshold is not None:
            scores = _field(result, "category_scores", dict)
            threshold = self._threshold
            hits = [
                name
                for name in self._watched(scores)
                if isinstance(scores[name], int | float) and scores[name] >= threshold
            ]
        elif self._categories is not None:
            flags = _field(result, "categories", dict)
            hits = [name for name in self._watched(flags) if flags[name] is True]
        else:
            if not _field(result, "flagged", bool):
                return Verdict.allow()
            flags = result.get("categories")
            hits = [n for n, on in flags.items() if on is True] if isinstance(flags, dict) else []
            if not hits:
                return Verdict.block("moderation: flagged")
        return Verdict.block(f"moderation: {', '.join(hits)}") if hits else Verdict.allow()

    def _watched(self, reported: dict[str, Any]) -> list[str]:
        if self._categories is None:
            return list(reported)
        missing = [name for name in self._categories if name not in reported]
        if missing:
            # A misspelt category would otherwise never match: fail loudly instead.
            raise ModerationError(
                f"the service reports no category {', '.join(missing)} "
                f"(it reports {', '.join(reported)})"
            )
        return list(self._categories)

    def _judge_verdict(self, reply: str) -> Verdict:
        lines = [line.strip() for line in reply.strip().splitlines()]
        verdict = lines[0].lower() if lines else ""
        if verdict == "safe":
            return Verdict.allow()
        if verdict != "unsafe":
            raise ModerationError(
                f"the judge answered neither safe nor unsafe: {verdict[:_QUOTE_CHARS]!r}"
            )
        listed = lines[1].split(",") if len(lines) > 1 else []
        codes = [c.strip() for c in listed if _HAZARD_CODE.fullmatch(c.strip())]
        if not codes:
            return Verdict.block("moderation: unsafe")
        if self._categories is not None:
            codes = [code for code in codes if code in self._categories]
            if not codes:
                return Verdict.allow()
        names = self._hazard_names
        codes = [f"{code} ({names[code]})" if code in names else code for code in codes]
        return Verdict.block(f"moderation: unsafe {', '.join(codes)}")


def _service_message(raw: bytes) -> str:
    # OpenAI-style services explain an error in error.message; quote a little of it.
    try:
        message = orjson.loads(raw)["error"]["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return ""
    return f": {message[:_QUOTE_CHARS]}" if isinstance(message, str) else ""
