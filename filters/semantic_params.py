"""semantic_guard's param checks: each names its param, and all run before any model loads."""

from __future__ import annotations

from filters import params

NEEDS_ML = "semantic_guard needs the ml extra: pip install torch==2.13.0 'taxmeter[ml]'"
RUNTIMES = ("onnx", "torch")
PRECISIONS = ("int8", "fp32")
# onnx_cache's default: the user's cache directory (see filters.semantic_cache).
AUTO_CACHE = "auto"


def number(name: str, value: object, low: float, high: float, *, open_low: bool = False) -> float:
    value = params.number(name, value)
    if value < low or value > high or (open_low and value == low):
        span = f"({low}, {high}]" if open_low else f"[{low}, {high}]"
        raise ValueError(f"{name}: expected a number in {span}, got {value!r}")
    return float(value)


def strings(name: str, value: object) -> list[str]:
    value = params.strings(name, value)
    if not all(v.strip() for v in value):
        raise ValueError(f"{name}: entries must not be empty or blank")
    return [v.strip() for v in value]


def path(name: str, value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise TypeError(f"{name}: expected a file path, got {value!r}")
    return value


def choice(name: str, value: object, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name}: expected one of {', '.join(options)}, got {value!r}")
    return value


def cache_dir(name: str, value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not value.strip() or "\0" in value):
        raise TypeError(f"{name}: expected a directory, {AUTO_CACHE!r} or null, got {value!r}")
    return value
