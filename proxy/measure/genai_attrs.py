"""Every span attribute, span name and event name taxmeter emits, in one place.

The ``gen_ai.*`` names follow the OpenTelemetry semantic conventions v1.38.0,
the release that added the ``gen_ai.evaluation.result`` event (its GenAI
part is still "development"); the guardrail attributes (``gen_ai.guardrail.*``)
are an open proposal: when they settle, this module is the only one to change.
"""

from __future__ import annotations

from typing import Final

# -- GenAI semantic conventions (gen_ai.*) ------------------------------------
OPERATION_NAME: Final = "gen_ai.operation.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
REQUEST_STREAM: Final = "gen_ai.request.stream"
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
INPUT_MESSAGES: Final = "gen_ai.input.messages"  # only with telemetry.trace_content
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"  # only with telemetry.trace_content
SERVER_TIME_TO_FIRST_TOKEN: Final = "gen_ai.server.time_to_first_token"

# The event of one evaluation (here: one filter verdict), on the span it judged.
EVENT_EVALUATION_RESULT: Final = "gen_ai.evaluation.result"
EVALUATION_NAME: Final = "gen_ai.evaluation.name"  # the filter's name
EVALUATION_SCORE_LABEL: Final = "gen_ai.evaluation.score.label"  # its action
EVALUATION_EXPLANATION: Final = "gen_ai.evaluation.explanation"  # its reason

# gen_ai.operation.name per route; routes with no GenAI operation get none.
OPERATIONS: Final = {
    "chat_completions": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "responses": "chat",
    "messages": "chat",
}

# -- the guardrail proposal (gen_ai.guardrail.*) ------------------------------
GUARDRAIL_OPERATION: Final = "apply_guardrail"
GUARDRAIL_NAME: Final = "gen_ai.guardrail.name"
GUARDRAIL_STAGE: Final = "gen_ai.guardrail.stage"  # input | output | stream
GUARDRAIL_MODE: Final = "gen_ai.guardrail.mode"  # enforce | observe
GUARDRAIL_ACTION: Final = "gen_ai.guardrail.action"  # allow, block, redact, error, timeout

# -- general conventions ------------------------------------------------------
ERROR_TYPE: Final = "error.type"
HTTP_METHOD: Final = "http.request.method"
HTTP_STATUS: Final = "http.response.status_code"
URL_PATH: Final = "url.path"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"

# -- taxmeter's own -----------------------------------------------------------
VARIANT: Final = "taxmeter.variant"
ROUTE: Final = "taxmeter.route"
OUTCOME: Final = "taxmeter.outcome"
REQUEST_ID: Final = "taxmeter.request_id"
TOTAL_S: Final = "taxmeter.total_s"
UPSTREAM_S: Final = "taxmeter.upstream_s"
TAX_S: Final = "taxmeter.tax_s"
TAX_RATIO: Final = "taxmeter.tax_ratio"
FILTER_CRITICAL_S: Final = "taxmeter.filter_critical_s"
OVERHEAD_S: Final = "taxmeter.overhead_s"
TTFT_S: Final = "taxmeter.ttft_s"
UPSTREAM_TTFT_S: Final = "taxmeter.upstream_ttft_s"
TTFT_TAX_S: Final = "taxmeter.ttft_tax_s"
FILTER_CRITICAL: Final = "taxmeter.filter.critical"  # the call was on the request's path
HOLDBACK_PREFIX: Final = "taxmeter.holdback_s."  # + filter name: mean wait of a piece

# -- span and event names -----------------------------------------------------
HOLDBACK_SPAN: Final = "stream holdback"
EVENT_UPSTREAM_HEADERS: Final = "upstream.headers"
EVENT_FIRST_TOKEN: Final = "gen_ai.first_token"
EVENT_CLIENT_FIRST_TOKEN: Final = "client.first_token"
