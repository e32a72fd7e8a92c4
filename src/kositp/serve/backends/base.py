"""What the gateway needs from a backend: a stream of text deltas that ends with one `Finished`.

Both backends speak this one event language, so the OpenAI formatting, limits, metrics and
cancellation live in the app once. Closing the async iterator (client gone) cancels generation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass

from kositp.serve.schemas import ChatCompletionRequest, CompletionRequest


@dataclass
class TextDelta:
    text: str


@dataclass
class Finished:
    reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int


Event = TextDelta | Finished


class BackendRequestError(Exception):
    """A request the backend rejects (e.g. prompt longer than the context): the client gets a 4xx."""

    def __init__(self, message: str, status: int = 400, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.message, self.status, self.code, self.param = message, status, code, param


class BackendUnavailable(Exception):
    """No replica can take the request right now: the client gets a 503."""


class Backend(ABC):
    """A loaded model that turns OpenAI requests into event streams."""

    @property
    @abstractmethod
    def model_ids(self) -> list[str]:
        """Model ids clients may send (the base model, then any LoRA adapters)."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load or connect; called once before the server accepts requests."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Release resources; called once after in-flight requests are drained."""

    def ready(self) -> bool:
        return True

    def queue_depth(self) -> int:
        return 0

    def stats(self) -> dict[str, float]:
        """Backend counters exported on /metrics as kositp_backend_<name>."""
        return {}

    @abstractmethod
    def chat(self, req: ChatCompletionRequest, max_tokens: int) -> AsyncIterator[Event]: ...

    @abstractmethod
    def complete(self, req: CompletionRequest, max_tokens: int) -> AsyncIterator[Event]: ...
