"""Judging a streamed answer as it arrives, and deciding what may go out.

The surface's :class:`~proxy.surfaces.base.StreamCodec` turns each upstream
event into text deltas on *channels* (a choice's content, its reasoning, one
tool call's arguments, an output item's text...). For each channel the judge
keeps the text so far and how much of it has been released to the client.
After each delta, every stream filter whose cadence is due judges the last
``window_chars`` of the channel's text. Text is released once every
enforcing stream filter has judged it and it lies before the tail that
filter holds back: its ``holdback_chars``, or with ``"auto"`` the tail the
filter reported as unsettled (text that could still grow into a match), or
for a filter that reports nothing but declares ``max_match_chars``, the last
``max_match_chars - 1`` characters as the model reads them (see
:func:`proxy.judge.holdback.tail_of`). At the end of a channel everything left is
judged and released.

An event whose text goes out unchanged is forwarded as the upstream's own
bytes; otherwise the codec rebuilds it with the text that may go out now.
A block ends the stream the surface's way (a ``content_filter`` finish, an
incomplete response, a refusal). After the surface's terminal event the
stream is over (``terminal``).
"""

from __future__ import annotations

from collections.abc import Hashable

from proxy.formats.sse import SseEvent
from proxy.judge.chain import BoundFilter, Chain, Decision
from proxy.judge.holdback import hold_for
from proxy.judge.stream_text import ChoiceText
from proxy.measure.timeline import Timeline
from proxy.surfaces.base import (
    Delta,
    StreamCodec,
    StreamMalformed,
    StreamStep,
    Usage,
    unread_strings,
)

__all__ = ["StreamJudge", "StreamMalformed"]

_SENTENCE_ENDS = frozenset(".!?\n")
# How much of the texts before is judged with the next one of a family (events
# not heard of): a match longer than this across two of them is not seen.
_JOINED_TAIL = 512
_ACROSS_EVENTS = "a filter's match across streamed events taxmeter does not know"


class StreamJudge:
    """Runs the stream stage over one response; built per streamed request."""

    def __init__(
        self,
        chain: Chain,
        filters: tuple[BoundFilter, ...],
        end_filters: tuple[BoundFilter, ...],
        codec: StreamCodec,
        route: str,
        body: object,
        request_id: str,
        timeline: Timeline,
        keep_pieces: bool = False,
    ) -> None:
        self._chain = chain
        self._filters = filters
        self._end_filters = end_filters
        self._codec = codec
        # Deferred observers replay the pieces after the response (see proxy.judge.observe).
        self.pieces: dict[Hashable, list[str]] | None = {} if keep_pieces else None
        self._passive = not filters and not end_filters and not keep_pieces
        self._critical = True
        self._route = route
        self._body = body
        self._request_id = request_id
        self._timeline = timeline
        self._channels: dict[Hashable, ChoiceText] = {}
        self._groups: dict[Hashable, list[Hashable]] = {}
        self._sent: dict[Hashable, list[str]] | None = {} if codec.keeps_text else None
        self._families: dict[Hashable, str] = {}  # events not heard of: their texts' tail
        self._swept = 0  # strings no codec read, each judged whole on its own channel
        # Past this, text every filter has judged and the client has received is
        # dropped, keeping the longest window, so a long answer costs no more.
        self._keep_chars = 4 * max((b.stream.window_chars for b in filters), default=512)
        self.blocked: Decision | None = None  # a block mid-stream: the stream ends
        self._blocked_channel: Hashable | None = None  # where the block was found
        self.blocked_at_end = False  # an at_stream_end block: finished as filtered
        self.content_sent = False  # some text has been handed out
        self.terminal = False  # the surface's last event has gone out
        self.finish_reasons: list[str] = []  # as the client got them
        self.usage: Usage | None = None  # the usage the upstream reported, if any

    def relays_unparsed(self, chunk: bytes) -> bool:
        """Whether ``chunk`` (whole events) may go out as it came, unparsed: nothing
        judges this stream, its first content is out, and no event in it matters to
        the record or ends the stream."""
        return self._passive and self.content_sent and self._codec.quiet(chunk)

    async def on_event(self, event: SseEvent, arrived_ns: int) -> bytes:
        """The bytes to forward for one upstream event (possibly none)."""
        codec = self._codec
        if self._passive and self.content_sent:
            # Nothing to judge, and both first-content marks are taken: relay as is.
            if codec.is_terminal(event):
                self.terminal = True
            usage = codec.usage_in(event)
            if usage is not None:
                self.usage = usage
            self.finish_reasons += codec.finish_reasons_in(event)
            return event.raw
        step = codec.step(event)
        if step is None:
            return event.raw
        if step.document is not None:
            self._sweep(step)
        if step.usage is not None:
            self.usage = step.usage
        out = bytearray()
        changed = await self._deltas(step, arrived_ns)
        if self.blocked is None and step.wholes:
            changed = await self._wholes(step, arrived_ns) or changed
        if self.blocked is not None:
            return self._block_bytes()
        # What each delta of this event carries as released: a channel that ends
        # here gives the rest of its text in its own delta, after what it carries
        # (an event of its own would go before the event, the text out of order).
        carried = {delta.channel: delta for delta in step.deltas} if step.ends else {}
        for group in step.ends:
            for channel in self._groups.get(group, ()):
                rest = await self._close(channel)
                if self.blocked is not None:
                    return bytes(out) + self._block_bytes()
                delta = carried.get(channel)
                if rest and delta is not None:
                    delta.put(delta.released + rest)
                    changed = True
                elif rest:
                    out += codec.text_event(channel, rest)
            if self._ended_filtered(group) and step.set_finish_reason is not None:
                step.set_finish_reason("content_filter")
                step.finish_reason = "content_filter"
                changed = True
        if step.finish_reason is not None:
            self.finish_reasons.append(step.finish_reason)
        for channel, fill in step.fills:
            fill("".join(self._sent.get(channel, ())) if self._sent is not None else "")
            changed = True
        if step.terminal:
            out += await self._finish_all()
            if self.blocked is not None:
                return bytes(out) + self._block_bytes()
            self.terminal = True
        if changed or step.rebuild:
            if changed and step.drop_tokens is not None:
                step.drop_tokens()  # they spell out text that was held or changed
            out += codec.encode(event, step) if step.document is not None else event.raw
        else:
            out += event.raw
        return bytes(out)

    async def finish(self) -> bytes:
        """The stream ended without its terminal event: judge and release what is left."""
        out = await self._finish_all()
        if self.blocked is not None:
            return out + self._block_bytes()
        return out  # no terminal event is made up: the client sees the stream end as it did

    async def replay(self, pieces: dict[Hashable, list[str]]) -> None:
        """Judge a finished stream's pieces as they had arrived (deferred observers)."""
        self._critical = False
        for channel, texts in pieces.items():
            state = self._channels[channel] = ChoiceText(self._filters)
            for piece in texts:
                state.text += piece
                sentence_end = bool(_SENTENCE_ENDS & set(piece))
                await self._judge_due(state, final=False, sentence_end=sentence_end)
            await self._judge_to_end(state)
            await self._blocked_at_end(state)

    # -- channels -----------------------------------------------------------
    async def _deltas(self, step: StreamStep, arrived_ns: int) -> bool:
        changed = False
        for delta in step.deltas:
            state = self._channel(delta.channel)
            piece = delta.text
            if piece:
                self._arrived(delta.channel, state, piece, arrived_ns)
                await self._judge_due(
                    state, final=False, sentence_end=bool(_SENTENCE_ENDS & set(piece))
                )
                if self.blocked is not None:
                    self._blocked_channel = delta.channel
                    return True
            out = self._release(delta.channel, state, final=False)
            delta.released = out
            if out != piece:
                delta.put(out)
                changed = True
        return changed

    async def _wholes(self, step: StreamStep, arrived_ns: int) -> bool:
        """Texts given whole: each judged as a channel that ends where it begins."""
        changed = False
        for whole in step.wholes:
            state = self._channel(whole.channel)
            if whole.text:
                self._arrived(whole.channel, state, whole.text, arrived_ns)
            out = await self._close(whole.channel)
            if self.blocked is not None:
                return True
            if out != whole.text:
                whole.put(out)
                changed = True
            if whole.family is not None:
                await self._joined(whole.family, out)
                if self.blocked is not None:
                    return True
        return changed

    def _sweep(self, step: StreamStep) -> None:
        """Every string of the event the codec did not read (a key heard of whose
        value came in another shape, a level read by a type the upstream chose) is
        judged whole too, and joined with those of the events before it."""
        for ref in unread_strings(step.document, step.read, self._codec.opaque):
            self._swept += 1
            channel = ("swept", self._swept)
            step.wholes.append(Delta(channel, ref.get(), ref.set, family="swept"))

    async def _joined(self, family: Hashable, released: str) -> None:
        """Texts given whole one event at a time (events not heard of) are judged
        joined as well, the last of them with the tail of those before: a match
        across them would change text already sent, which cannot be recalled, so
        it ends the stream."""
        text = self._families.get(family, "") + released
        self._families[family] = text[-_JOINED_TAIL:]
        state = ChoiceText(self._filters)
        state.text = text
        await self._judge_to_end(state)
        if self.blocked is None and state.text != text:
            self.blocked = Decision(blocks=True, reason=_ACROSS_EVENTS)

    def _arrived(self, channel: Hashable, state: ChoiceText, piece: str, arrived_ns: int) -> None:
        """New text on a channel: the first content's time, the piece kept, appended."""
        self._timeline.mark_upstream_first_content(arrived_ns)
        if self.pieces is not None:
            self.pieces.setdefault(channel, []).append(piece)
        state.append(piece, arrived_ns)

    def _channel(self, channel: Hashable) -> ChoiceText:
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = ChoiceText(self._filters)
            group = channel[0] if isinstance(channel, tuple) else channel
            self._groups.setdefault(group, []).append(channel)
        return state

    async def _close(self, channel: Hashable) -> str:
        """A channel is complete: judge the rest, the whole text at its end, release."""
        state = self._channels[channel]
        if state.closed:
            return ""
        state.closed = True
        await self._judge_to_end(state)
        if self.blocked is not None:
            self._blocked_channel = channel
            return ""
        if await self._blocked_at_end(state):
            state.filtered = True
        return self._release(channel, state, final=True)

    def _ended_filtered(self, group: Hashable) -> bool:
        if any(self._channels[c].filtered for c in self._groups.get(group, ())):
            self.blocked_at_end = True
            return True
        return False

    async def _judge_to_end(self, state: ChoiceText) -> None:
        """A channel's end: every filter judges the text as it finally is. A
        redaction by one filter is new text to those that judged before it, so
        they judge again; past a pass per filter what is still unjudged stays
        unreleased (redactions that undo each other)."""
        for _ in range(len(state.filters) + 1):
            await self._judge_due(state, final=True)
            if self.blocked is not None:
                return
            if all(fs.judged_end >= len(state.text) for fs in state.filters):
                return

    async def _judge_due(self, state: ChoiceText, final: bool, sentence_end: bool = False) -> None:
        for fs in state.filters:
            policy = fs.bound.stream
            fs.events_since += 1
            end = len(state.text)  # an earlier filter may have redacted it
            unjudged = end - fs.judged_end
            if unjudged <= 0 and not (final and fs.hold):
                # (At the end, a tail judged as unsettled is judged again, as final.)
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
                partial=not final,
            )
            fs.judged_end = len(state.text)
            fs.events_since = 0
            if decision.blocks:
                self.blocked = decision
                return
            if decision.text is not None:
                state.redact(fs, start, window, decision.text)
                window = decision.text
            fs.hold = 0 if final else hold_for(fs.bound, decision.unsettled, window)

    async def _blocked_at_end(self, state: ChoiceText) -> bool:
        """Output filters with at_stream_end judge the whole text of a channel."""
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
            # channel as filtered; a redaction is recorded and cannot be applied.
            if decision.blocks:
                return True
        return False

    def _release(self, channel: Hashable, state: ChoiceText, final: bool) -> str:
        out = state.release(final, self._timeline)
        if out:
            self.content_sent = True
            if self._sent is not None:
                self._sent.setdefault(channel, []).append(out)
        if out and len(state.text) > self._keep_chars and not self._end_filters:
            state.compact(self._keep_chars // 4)
        return out

    async def _finish_all(self) -> bytes:
        out = bytearray()
        for channel in list(self._channels):
            state = self._channels[channel]
            if state.closed or state.released >= len(state.text):
                continue
            await self._judge_to_end(state)
            if self.blocked is not None:
                self._blocked_channel = channel
                return bytes(out)
            text = self._release(channel, state, final=True)
            if text:
                out += self._codec.text_event(channel, text)
        return bytes(out)

    def _block_bytes(self) -> bytes:
        return self._codec.blocked(self._blocked_channel)
