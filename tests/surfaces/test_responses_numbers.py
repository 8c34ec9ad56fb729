"""The sequence numbers a judged Responses stream gives its events, step by step.

Each row is a run of operations on one :class:`Numbering`: ``arrive n`` (an
upstream event numbered n), ``before`` (an event inserted before the one
being judged), ``after`` (one after all so far), ``drop`` (the event being
judged is not sent). Each operation's result is checked, and so are the
numbering's offset, highest number and current event's number after it:
an offset that is wrong but later set right by the counting-up rule would
renumber a later event wrongly once the upstream counts up again.
"""

from __future__ import annotations

from typing import Any

import pytest

from proxy.surfaces.responses_numbers import Numbering

# (operation, its result, offset, high, current) after each step.
Step = tuple[str, Any, int, int, int | None]
RUNS: dict[str, list[Step]] = {
    "a fresh numbering gives 0 first": [("after", 0, 0, 0, None)],
    "an insert with no event judged is after all": [("before", 0, 0, 0, None)],
    "an event that keeps its number": [("arrive 0", False, 0, 0, 0), ("arrive 1", False, 0, 1, 1)],
    "an event with no number": [("arrive 0", False, 0, 0, 0), ("arrive -", False, 0, 0, None)],
    "an upstream that repeats a number": [
        ("arrive 0", False, 0, 0, 0), ("arrive 0", True, 1, 1, 1), ("arrive 1", True, 1, 2, 2)],
    "an upstream that counts down": [
        ("arrive 5", False, 0, 5, 5), ("arrive 3", True, 3, 6, 6), ("arrive 4", True, 3, 7, 7)],
    "an event inserted before the one judged": [
        ("arrive 3", False, 0, 3, 3), ("before", 3, 1, 4, 4), ("arrive 4", True, 1, 5, 5)],
    "two inserted before the one judged": [
        ("arrive 0", False, 0, 0, 0), ("before", 0, 1, 1, 1), ("before", 1, 2, 2, 2),
        ("arrive 1", True, 2, 3, 3)],
    "a repeated number after an insert": [
        ("arrive 0", False, 0, 0, 0), ("before", 0, 1, 1, 1), ("arrive 0", True, 2, 2, 2)],
    "an event after all": [("arrive 0", False, 0, 0, 0), ("after", 1, 0, 1, 0)],
    "a dropped event": [
        ("arrive 0", False, 0, 0, 0), ("arrive 1", False, 0, 1, 1), ("drop", None, -1, 0, None),
        ("arrive 2", True, -1, 1, 1)],
    "a drop with no event judged": [("drop", None, 0, -1, None), ("after", 0, 0, 0, None)],
}  # fmt: skip


def run(numbering: Numbering, operation: str) -> Any:
    name, _, argument = operation.partition(" ")
    if name == "arrive":
        return numbering.arrive(None if argument == "-" else int(argument))
    if name == "before":
        return numbering.before_current()
    if name == "after":
        return numbering.after()
    assert name == "drop"
    return numbering.dropped()


@pytest.mark.parametrize("name", RUNS)
def test_each_step_numbers_its_event_and_keeps_the_count(name: str) -> None:
    numbering = Numbering()
    assert numbering.current is None
    for operation, result, offset, high, current in RUNS[name]:
        got = run(numbering, operation)
        assert got == result, operation
        assert type(got) is type(result), operation
        state = (numbering.offset, numbering.high, numbering.current)
        assert state == (offset, high, current), operation
