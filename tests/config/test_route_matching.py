"""The route matcher alone: every spelling of a path, what it is, and the one canonical form.

Socket-level behaviour (refusals, judging on each alias) is in test_routes.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.config.routes import ROUTE_LABELS, RouteTable, parse_routes
from proxy.config.schema import ConfigError, parse_config
from proxy.formats.paths import normalise_path, origin_form, path_problem

TABLE = RouteTable()

# (method, target, has a body) -> (label, answer judged)
JUDGED = {
    ("POST", "/v1/chat/completions", True): ("chat_completions", True),
    ("POST", "/chat/completions", True): ("chat_completions", True),
    ("POST", "/v1/chat/completions/", True): ("chat_completions", True),
    ("POST", "/v1/chat/completions?stream=true", True): ("chat_completions", True),
    ("POST", "/openai/deployments/gpt-4o/chat/completions?api-version=1", True): (
        "chat_completions",
        True,
    ),
    ("POST", "/openai/v1/chat/completions", True): ("chat_completions", True),
    ("POST", "/engines/davinci/chat/completions", True): ("chat_completions", True),
    ("POST", "/v1/engines/davinci/chat/completions", True): ("chat_completions", True),
    ("POST", "/gateway/team-a/v1/chat/completions", True): ("chat_completions", True),
    ("POST", "/V2/chat/completions", True): ("chat_completions", True),  # a free prefix
    ("POST", "/openai/deployments/a/b/chat/completions", True): ("chat_completions", True),
    ("POST", "http://elsewhere:81/v1/chat/completions", True): ("chat_completions", True),
    ("POST", "/v1/chat/completions", False): ("chat_completions", True),
    ("POST", "/v1/completions", True): ("completions", True),
    ("POST", "/completions", True): ("completions", True),
    ("POST", "/v1/fim/completions", True): ("completions", True),
    # A deployment or engine named "chat": the completions of that one.
    ("POST", "/openai/deployments/chat/completions", True): ("completions", True),
    ("POST", "/engines/chat/completions", True): ("completions", True),
    ("POST", "/v1/engines/chat/completions", True): ("completions", True),
    ("POST", "/v1/embeddings", True): ("embeddings", True),
    ("POST", "/embeddings", True): ("embeddings", True),
    ("POST", "/openai/deployments/ada/embeddings", True): ("embeddings", True),
    ("POST", "/v1/responses", True): ("responses", True),
    ("POST", "/responses", True): ("responses", True),
    ("POST", "/openai/v1/responses", True): ("responses", True),
    ("POST", "/openai/responses?api-version=preview", True): ("responses", True),
    ("POST", "/v1/messages", True): ("messages", True),
    ("POST", "/anthropic/v1/messages", True): ("messages", True),
    ("POST", "/messages", True): ("messages", True),
    # Stored answers: the answer is judged.
    ("GET", "/v1/chat/completions/chatcmpl-AbC", False): ("chat_completions", True),
    ("GET", "/v1/responses/resp_AbC?stream=true", False): ("responses", True),
    ("GET", "/openai/v1/responses/resp_1", False): ("responses", True),
    # What these answer is the stored answer itself: an update of its metadata, a cancel.
    ("POST", "/v1/chat/completions/c1", True): ("chat_completions", True),
    ("POST", "/v1/responses/resp_1/cancel", False): ("responses", True),
    # Counts: the prompt is judged, the answer passed through.
    ("POST", "/v1/messages/count_tokens", True): ("messages", False),
    ("POST", "/anthropic/v1/messages/count_tokens", True): ("messages", False),
    ("POST", "/v1/responses/input_tokens", True): ("responses", False),
    ("POST", "/v1/responses/compact", True): ("responses", False),
}

# A surface's create or count path accepts POST only: any other method is
# refused (405), with a body or without (OpenAI's list of stored completions).
METHOD_REFUSED = [
    ("PUT", "/v1/chat/completions", True, "chat_completions"),
    ("GET", "/v1/chat/completions", True, "chat_completions"),  # a body: a prompt
    ("GET", "/v1/chat/completions", False, "chat_completions"),
    ("HEAD", "/v1/chat/completions", False, "chat_completions"),
    ("DELETE", "/v1/chat/completions", False, "chat_completions"),
    ("PATCH", "/openai/deployments/d/chat/completions", True, "chat_completions"),
    ("OPTIONS", "/v1/chat/completions", True, "chat_completions"),  # a body: no preflight
    ("GET", "/v1/completions", False, "completions"),
    ("GET", "/v1/embeddings", False, "embeddings"),
    ("GET", "/v1/responses", False, "responses"),
    ("GET", "/v1/messages", False, "messages"),
    ("GET", "/v1/messages/count_tokens", False, "messages"),
    ("PUT", "/v1/responses/input_tokens", True, "responses"),
    ("GET", "/gateway/v1/chat/completions", False, "chat_completions"),
]

UNJUDGED = [
    ("OPTIONS", "/v1/chat/completions", False),  # a CORS preflight
    ("DELETE", "/v1/chat/completions/c1", False),
    ("GET", "/v1/chat/completions/c1/messages", False),
    ("POST", "/v1/threads/thread_1/messages", True),  # the Assistants API
    ("GET", "/v1/threads/thread_1/messages", False),
    ("DELETE", "/v1/responses/resp_1", False),
    ("GET", "/v1/responses/resp_1/input_items", False),
    ("POST", "/v1/messages/batches", True),
    ("GET", "/v1/models", False),
    ("POST", "/v1/chat", True),
    ("POST", "/v1/chat/completionsx", True),
    ("POST", "/v1/chat/completions.json", True),
    ("POST", "/v1/chat/completions%20", True),
    ("GET", "/", False),
    ("POST", "http://elsewhere", True),
]

# target -> (what is wrong, in words, the label it would have been)
REFUSED = {
    "//v1/chat/completions": ("empty segment", "chat_completions"),
    "/v1//chat/completions": ("empty segment", "chat_completions"),
    "/v1/chat/completions//": ("empty segment", "chat_completions"),
    "/v1/./chat/completions": ("dot segment", "chat_completions"),
    "/v1/../v1/chat/completions": ("dot segment", "chat_completions"),
    "/v1/chat/completions/.": ("dot segment", "chat_completions"),
    "/v1/%2e/chat/completions": ("dot segment", "chat_completions"),
    "/v1/%2E%2E/v1/chat/completions": ("dot segment", "chat_completions"),
    "/V1/chat/completions": ("letter-case variant", "chat_completions"),
    "/v1/Chat/Completions": ("letter-case variant", "chat_completions"),
    "/gateway/CHAT/completions": ("letter-case variant", "chat_completions"),
    "/OPENAI/deployments/d/embeddings": ("letter-case variant", "embeddings"),
    "/v1/Threads/t/messages": ("letter-case variant", "other"),
    "/v1/chat/completions;x": ("parameter", "chat_completions"),
    "/v1;x/chat/completions": ("parameter", "chat_completions"),
    "/v1/chat/completions;": ("parameter", "chat_completions"),
    "/v1/chat/%63ompletions": ("unreserved", "chat_completions"),
    "/v1/chat/compl%65tions": ("unreserved", "chat_completions"),
    "/v1/chat%2Fcompletions": ("encoded '/'", "chat_completions"),
    "/v1/chat%2fcompletions": ("encoded '/'", "chat_completions"),
    "/v1/chat%5Ccompletions": ("encoded '\\'", "chat_completions"),
    "/v1\\chat\\completions": ("backslash", "chat_completions"),
    "/v1/chat/completions#x": ("fragment", "chat_completions"),
    "http://elsewhere//v1/chat/completions": ("empty segment", "chat_completions"),
    "http://elsewhere/v1/./embeddings": ("dot segment", "embeddings"),
    # Any path, not only the judged ones.
    "/v1/models//x": ("empty segment", "other"),
    "/v1/files/%7Euser": ("unreserved", "other"),
    "/v1/files/a%3ab": ("lowercase hex", "other"),
    "/v1/files/100%": ("'%' not followed", "other"),
    "/v1/files/{id}": ("not allowed", "other"),
    "/v1/files/\u00e9": ("not allowed", "other"),
    "*": ("not a path", "other"),
    "elsewhere:443": ("not a path", "other"),
    "ftp://elsewhere/v1/chat/completions": ("not a path", "other"),
}


@pytest.mark.parametrize(("method", "target", "has_body"), list(JUDGED))
def test_judged_routes(method: str, target: str, has_body: bool) -> None:
    route = TABLE.route(method, target, has_body)
    assert route.problem is None
    assert (route.label, route.judge_answer) == JUDGED[method, target, has_body]


def test_only_an_update_of_a_stored_answer_passes_its_body_on_unjudged() -> None:
    # Its body is the stored answer's metadata, no prompt; a GET's body stays judged.
    assert not TABLE.route("POST", "/v1/chat/completions/c1", True).judge_prompt
    assert TABLE.route("GET", "/v1/chat/completions/c1", True).judge_prompt
    assert TABLE.route("POST", "/v1/chat/completions", True).judge_prompt


@pytest.mark.parametrize(("method", "target", "has_body"), UNJUDGED)
def test_unjudged_routes(method: str, target: str, has_body: bool) -> None:
    route = TABLE.route(method, target, has_body)
    assert route.problem is None
    assert route.label == "other"
    assert route.allow is None


@pytest.mark.parametrize(("method", "target", "has_body", "label"), METHOD_REFUSED)
def test_other_methods_on_a_create_path_are_refused(
    method: str, target: str, has_body: bool, label: str
) -> None:
    route = TABLE.route(method, target, has_body)
    assert route.problem is None
    assert (route.label, route.allow) == (label, "POST")


def test_a_post_and_a_stored_answer_read_are_accepted() -> None:
    for method, target in (("POST", "/v1/chat/completions"), ("GET", "/v1/responses/r1")):
        assert TABLE.route(method, target, method == "POST").allow is None
    assert parse_routes({"/api/chat": "chat_completions"}).route("GET", "/api/chat", False).allow


@pytest.mark.parametrize("target", list(REFUSED))
def test_refused_spellings(target: str) -> None:
    route = TABLE.route("POST", target, True)
    words, label = REFUSED[target]
    assert route.problem is not None
    assert words in route.problem
    assert route.label == label


def test_the_canonical_spelling_is_suggested() -> None:
    assert TABLE.route("POST", "//v1/./Chat/%63ompletions;x/", True).path == (
        "/v1/chat/completions/"
    )
    assert TABLE.route("GET", "/v1/Responses/RESP_AbC", False).path == "/v1/responses/RESP_AbC"


def test_absolute_form_keeps_the_path_and_query_never_the_host() -> None:
    assert origin_form("http://a.example:8/v1/x?q=1") == "/v1/x?q=1"
    assert origin_form("HTTPS://u@a/v1/x") == "/v1/x"
    assert origin_form("http://a?q=1") == "/?q=1"
    assert origin_form("http://a") == "/"
    assert origin_form("/v1/x?y") == "/v1/x?y"
    assert origin_form("*") is None
    assert origin_form("a:443") is None


def test_the_query_is_no_part_of_the_path() -> None:
    route = TABLE.route("POST", "/v1/chat/completions?next=/../x;y//%2e", True)
    assert route.problem is None
    assert route.label == "chat_completions"


def test_labels_are_the_fixed_set() -> None:
    assert ROUTE_LABELS == (
        "chat_completions", "completions", "embeddings", "responses", "messages", "other"
    )  # fmt: skip


# -- canonical means equal to its own normalisation ----------------------------

PIECES = [
    "/", "//", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5C", "%5c", "\\", ";", ";p=1",
    "a", "A", "v1", "V1", "chat", "Chat", "completions", "responses", "messages", "x",
    "%41", "%7e", "%20", "%3a", "%3A", "%25", "%", "%z", "~", "-", "_", "\u00e9", "{", "@", ":",
]  # fmt: skip
paths = st.lists(st.sampled_from(PIECES), max_size=12).map(lambda parts: "/" + "".join(parts))


@given(paths)
def test_a_path_without_problems_is_its_own_normalisation(path: str) -> None:
    assert (path_problem(path) is None) == (normalise_path(path) == path)


@given(paths)
def test_normalising_is_idempotent_and_canonical(path: str) -> None:
    normal = normalise_path(path)
    assert normalise_path(normal) == normal
    assert path_problem(normal) is None


@given(paths)
def test_the_matcher_accepts_exactly_its_own_spelling(path: str) -> None:
    route = TABLE.route("POST", path, True)
    spelled, _ = TABLE.spell(path)
    assert (route.problem is None) == (spelled == path)
    assert route.path == spelled
    again = TABLE.route("POST", spelled, True)
    assert again.problem is None
    assert again.label == route.label


def test_normalisation_examples() -> None:
    assert normalise_path("/a/b/../c/./d//") == "/a/c/d/"
    assert normalise_path("/%7e%41%2fb%3a") == "/~A/b%3A"
    assert normalise_path("/a;x/b;y") == "/a/b"
    assert normalise_path("/..") == "/"
    assert normalise_path("/a\\b") == "/a/b"
    assert normalise_path("/\u00e9") == "/%C3%A9"


# -- the routes: key --------------------------------------------------------------


def test_configured_routes_are_matched_first() -> None:
    table = parse_config(
        {
            "routes": {
                "/api/generate/chat": "chat_completions",
                "/llm/{model}/v1/embeddings": "chat_completions",
            }
        }
    ).routes
    assert table.route("POST", "/api/generate/chat", True).label == "chat_completions"
    assert table.route("POST", "/api/generate/chat/", True).label == "chat_completions"
    assert table.route("POST", "/llm/m1/v1/embeddings", True).label == "chat_completions"
    assert table.route("POST", "/llm/m1/v2/embeddings", True).label == "embeddings"
    variant = table.route("POST", "/api/Generate/chat", True)
    assert variant.problem is not None
    assert "letter-case" in variant.problem
    assert variant.label == "chat_completions"
    assert RouteTable().route("POST", "/api/generate/chat", True).label == "other"


@pytest.mark.parametrize(
    ("pattern", "label", "words"),
    [
        ("/api/chat", "chat", "expected one of chat_completions"),
        ("/api/chat", "other", "expected one of chat_completions"),
        ("/api/chat", None, "expected one of chat_completions"),
        ("api/chat", "chat_completions", "starting with '/'"),
        ("/", "chat_completions", "starting with '/'"),
        ("/api//chat", "chat_completions", "empty segment"),
        ("/api/chat/", "chat_completions", "empty segment"),
        ("/api/{model", "chat_completions", "whole segment"),
        ("/api/v{n}", "chat_completions", "whole segment"),
        ("/api/{}", "chat_completions", "whole segment"),
        ("/api/{1st}", "chat_completions", "placeholder name"),
        ("/api/./chat", "chat_completions", "dot segment"),
        ("/api/%41", "chat_completions", "cannot hold"),
        ("/api/chat;x", "chat_completions", "cannot hold"),
        ("/api/a b", "chat_completions", "cannot hold"),
    ],
)
def test_a_bad_route_is_an_error_naming_its_key(pattern: str, label: object, words: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({"routes": {pattern: label}})
    assert raised.value.key == f"routes.{pattern}"
    assert words in str(raised.value)


def test_routes_that_differ_only_in_case_or_names_are_one_route() -> None:
    with pytest.raises(ConfigError, match=r"the same route as '/api/\{a\}'") as raised:
        parse_routes({"/api/{a}": "completions", "/API/{b}": "completions"})
    assert raised.value.key == "routes./API/{b}"


def test_routes_and_unjudged_routes_keys() -> None:
    with pytest.raises(ConfigError, match=r"^routes: expected a mapping"):
        parse_config({"routes": ["/api/chat"]})
    with pytest.raises(ConfigError, match=r"^unjudged_routes: expected one of pass, block"):
        parse_config({"unjudged_routes": "deny"})
    assert parse_config({}).unjudged_routes == "pass"
    assert parse_config({"unjudged_routes": "block"}).unjudged_routes == "block"
    assert parse_config({"routes": None}).routes.extra == ()
