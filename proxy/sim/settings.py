"""How the simulated model server behaves, and what it counts, as its app state."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True, slots=True)
class MockSettings:
    """How the simulated model behaves. Raises ValueError naming a bad field."""

    ttft_ms: float = 150.0  # time to first token (like a 7B model on one GPU)
    tokens_per_s: float = 50.0  # decode speed after the first token
    max_tokens: int = 64  # default completion length when the request sets none
    model: str = "mock-model"
    embedding_dim: int = 384

    def __post_init__(self) -> None:
        if not self.ttft_ms >= 0:
            raise ValueError(f"ttft_ms must be >= 0, got {self.ttft_ms}")
        if not self.tokens_per_s > 0:
            raise ValueError(f"tokens_per_s must be > 0, got {self.tokens_per_s}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {self.embedding_dim}")
        if not self.model:
            raise ValueError("model must not be empty")


@dataclass(slots=True)
class MockStats:
    """Stream counters; ``active_streams`` returns to 0 once every stream has stopped."""

    active_streams: int = 0
    streams_started: int = 0
    streams_finished: int = 0
    streams_cancelled: int = 0


MOCK_SETTINGS = web.AppKey("mock_settings", MockSettings)
MOCK_STATS = web.AppKey("mock_stats", MockStats)
