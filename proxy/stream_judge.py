"""Judging a streamed completion as it arrives, and deciding what may go out.

For each choice of a stream the judge keeps the text so far and how much of
it has been released to the client. After each content event, every stream
filter whose cadence is due judges the last ``window_chars`` of the text.
Text is released once every enforcing stream filter has judged it and it
lies more than that filter's ``holdback_chars`` before the end of what the
filter judged; at the end of a choice everything left is judged and released.

An event whose content goes out unchanged is forwarded as the upstream's own
bytes; otherwise the event is rebuilt with the content that may go out now.
A block ends the stream with a last chunk whose finish_reason is
``content_filter`` and ``data: [DONE]``.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.chain import BoundFilter, Chain, Decision
from proxy.sse import SseEvent, encode_event
from proxy.stream_text import ChoiceText
from proxy.timeline import Timeline

DONE = b"data: [DONE]\n\n"
_SENTENCE_ENDS = frozenset(".!?\n")


class StreamMalformed(ValueError):
    """An event that is not an OpenAI stream chunk."""


class StreamJudge:
    """Runs the stream stage over one response; built per streamed request."""

    def __init__(
        self,
        chain: Chain,
        filters: tuple[BoundFilter, ...],
        end_filters: tuple[BoundFilter, ...],
        route: str,
        body: object,
        request_id: str,
        timeline: Timeline,
        keep_pieces: bool = False,
    ) -> None:
        self._chain = chain
        self._filters = filters
        self._end_filters = end_filters
        # Deferred observers replay the pieces after the response (see proxy.observe).
        self.pieces: dict[int, list[str]] | None = {} if keep_pieces else None
        self._passive = not filters and not end_filters and not keep_pieces
        self._critical = True
        self._chat = route == "chat_completions"
        self._route = route
        self._body = body
        self._request_id = request_id
        self._timeline = timeline
        self._choices: dict[int, ChoiceText] = {}
        # Past this, text every filter has judged and the client has received is
        # dropped, keeping the longest window, so a long completion costs no more.
        self._keep_chars = 4 * max((b.stream.window_chars for b in filters), default=512)
        self._template: dict[str, Any] = {}
        self.blocked: Decision | None = None  # a block mid-stream: the stream ends
        self.blocked_at_end = False  # an at_stream_end block: finish_reason content_filter
        self.content_sent = False  # some content has been handed out
        self.finish_reasons: list[str] = []  # as the client got them
        self.usage: Any = None  # the usage the upstream reported, if any

    async def on_event(self, event: SseEvent, arrived_ns: int) -> bytes:
        """The bytes to forward for one upstream event (possibly none)."""
        if event.data is None or (self._passive and self.content_sent):
            # Nothing to judge, and both first-content marks are taken: relay as is.
            return event.raw
        if event.data == "[DONE]":
            return await self._finish_all() + event.raw
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError as exc:
            raise StreamMalformed("an event's data is not JSON") from exc
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        if not isinstance(choices, list) or not choices:
            if isinstance(chunk, dict) and chunk.get("usage"):
                self.usage = chunk["usage"]
            return event.raw  # usage, or an error the upstream reports: not content
        self._template = chunk
        rebuilt = False
        kept: list[Any] = []
        for choice in choices:
            if not isinstance(choice, dict):
                raise StreamMalformed("a choice is not an object")
            out, changed = await self._on_choice(choice, arrived_ns)
            if self.blocked is not None:
                return self._block_event(choice.get("index", 0))
            rebuilt = rebuilt or changed
            if out is not None:
                kept.append(out)
        if not rebuilt:
            return event.raw
        if not kept:
            return b""
        chunk["choices"] = kept
        return encode_event(orjson.dumps(chunk))

    async def finish(self) -> bytes:
        """The stream ended without [DONE]: judge and release what is left."""
        return await self._finish_all()

    async def replay(self, pieces: dict[int, list[str]]) -> None:
        """Judge a finished stream's pieces as they had arrived (deferred observers)."""
        self._critical = False
        for index, texts in pieces.items():
            state = self._choices[index] = ChoiceText(self._filters)
            for piece in texts:
                state.text += piece
                sentence_end = bool(_SENTENCE_ENDS & set(piece))
                await self._judge_due(state, final=False, sentence_end=sentence_end)
            await self._judge_due(state, final=True)
            await self._blocked_at_end(state)

    # -- one choice ---------------------------------------------------------
    async def _on_choice(
        self, choice: dict[str, Any], arrived_ns: int
    ) -> tuple[dict[str, Any] | None, bool]:
        """(the choice as it goes out or None to drop it, whether it changed)."""
        index = choice.get("index", 0)
        state = self._choices.get(index)
        if state is None:
            state = self._choices[index] = ChoiceText(self._filters)
        holder, key = self._content_slot(choice)
        piece = holder.get(key) if holder is not None else None
        if isinstance(piece, str) and piece:
            self._timeline.mark_upstream_first_content(arrived_ns)
            if self.pieces is not None:
                self.pieces.setdefault(index, []).append(piece)
            state.append(piece, arrived_ns)
            await self._judge_due(
                state, final=False, sentence_end=bool(_SENTENCE_ENDS & set(piece))
            )
        else:
            piece = None
        finish_reason = choice.get("finish_reason")
        final = finish_reason is not None
        if final and self.blocked is None:
            await self._judge_due(state, final=True)
            if self.blocked is None and await self._blocked_at_end(state):
                self.blocked_at_end = True
                choice["finish_reason"] = "content_filter"
        if self.blocked is not None:
            return None, True
        if final:
            self.finish_reasons.append(str(choice["finish_reason"]))
        out = self._release(state, final)
        if out:
            self.content_sent = True
        if out == (piece or "") and choice.get("finish_reason") == finish_reason:
            return choice, False
        if holder is not None:
            holder[key] = out
        if out or finish_reason is not None or self._has_other_fields(choice, holder):
            return choice, True
        return None, True

    def _content_slot(self, choice: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        if self._chat:
            delta = choice.get("delta")
            return (delta if isinstance(delta, dict) else None), "content"
        return choice, "text"

    def _has_other_fields(self, choice: dict[str, Any], holder: dict[str, Any] | None) -> bool:
        if not self._chat or holder is None:
            return False
        return any(k != "content" and v is not None for k, v in holder.items())

    async def _judge_due(self, state: ChoiceText, final: bool, sentence_end: bool = False) -> None:
        for fs in state.filters:
            policy = fs.bound.stream
            fs.events_since += 1
            end = len(state.text)  # an earlier filter may have redacted it
            unjudged = end - fs.judged_end
            if unjudged <= 0:
                continue
            due = final or (
                (policy.every_tokens and fs.events_since >= policy.every_tokens)
                or (policy.every_chars and unjudged >= policy.every_chars)
                or (policy.at_sentence_end and sentence_end)
            )
            if not due:
                continue
            start = max(0, end - policy.window_chars)
            window = state.text[start:]
            decision = await self._chain.judge(
                fs.bound,
                "stream",
                window,
                body=self._body,
                route=self._route,
                request_id=self._request_id,
                timeline=self._timeline,
                critical=self._critical,
            )
            fs.judged_end = len(state.text)
            fs.events_since = 0
            if decision.blocks:
                self.blocked = decision
                return
            if decision.text is not None:
                state.redact(fs, start, window, decision.text)

    async def _blocked_at_end(self, state: ChoiceText) -> bool:
        """Output filters with at_stream_end judge the whole completion."""
        for bound in self._end_filters:
            decision = await self._chain.judge(
                bound,
                "output",
                state.text,
                body=self._body,
                route=self._route,
                request_id=self._request_id,
                timeline=self._timeline,
                critical=self._critical,
            )
            # Released text cannot be recalled: a block marks the end of the
            # choice; a redaction is recorded and cannot be applied.
            if decision.blocks:
                return True
        return False

    def _release(self, state: ChoiceText, final: bool) -> str:
        out = state.release(final, self._timeline)
        if out and len(state.text) > self._keep_chars and not self._end_filters:
            state.compact(self._keep_chars // 4)
        return out

    async def _finish_all(self) -> bytes:
        out = bytearray()
        for index, state in self._choices.items():
            if state.released >= len(state.text):
                continue
            await self._judge_due(state, final=True)
            if self.blocked is not None:
                return bytes(out) + self._block_event(index)
            text = self._release(state, final=True)
            if text:
                out += self._content_event(index, text)
        return bytes(out)

    # -- rebuilt events -----------------------------------------------------
    def _base(self) -> dict[str, Any]:
        return {k: v for k, v in self._template.items() if k not in ("choices", "usage")}

    def _content_event(self, index: int, text: str) -> bytes:
        choice: dict[str, Any] = {"index": index, "finish_reason": None}
        if self._chat:
            choice["delta"] = {"content": text}
        else:
            choice["text"] = text
        self.content_sent = True
        return encode_event(orjson.dumps({**self._base(), "choices": [choice]}))

    def _block_chunk(self, index: int) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": index, "finish_reason": "content_filter"}
        if self._chat:
            choice["delta"] = {}
        else:
            choice["text"] = ""
        return choice

    def _block_event(self, index: int) -> bytes:
        chunk = {**self._base(), "choices": [self._block_chunk(index)]}
        return encode_event(orjson.dumps(chunk)) + DONE
