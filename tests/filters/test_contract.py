"""The filter contract's optional members: read once, their defaults for what is left out."""

from __future__ import annotations

from types import MappingProxyType
from typing import ClassVar

import pytest

from filters import Declared, Filter, FilterContext, FilterOptions, Stage, Verdict, closer, declared


class Bare:
    """A plugin as the README's first example writes it: none of the optional members."""

    stages: tuple[Stage, ...] = ("input",)

    async def check(self, ctx: FilterContext) -> Verdict:
        return Verdict.allow()


class Typed(FilterOptions):
    stages: tuple[Stage, ...] = ("input", "stream")
    cpu_bound = True
    max_match_chars = 12
    stream_defaults: ClassVar[MappingProxyType[str, object]] = MappingProxyType({"every_chars": 40})
    loads: ClassVar[str | None] = "a table"

    async def check(self, ctx: FilterContext) -> Verdict:
        return Verdict.allow()

    async def aclose(self) -> None:
        return None


class Mistyped(Bare):
    cpu_bound = "yes"  # truthy, but not True: never moved to a worker thread
    max_match_chars = True  # a bool is no length
    loads = ""  # nothing to say


def test_a_filter_without_the_optional_members_gets_their_defaults() -> None:
    instance = Bare()
    assert isinstance(instance, Filter)
    assert declared(instance) == declared(Bare) == Declared()
    assert closer(instance) is None


def test_declared_members_are_read_from_the_class_and_the_instance() -> None:
    instance = Typed()
    assert declared(Typed) == Declared(True, 12, {"every_chars": 40}, "a table")
    instance.cpu_bound = False  # set per instance, from a param (as synthetic does)
    assert declared(instance).cpu_bound is False
    assert closer(instance) == instance.aclose


@pytest.mark.parametrize("of", [Mistyped, Mistyped()], ids=["class", "instance"])
def test_a_member_of_the_wrong_type_counts_as_left_out(of: object) -> None:
    assert declared(of) == Declared()
