"""What every backend takes and returns: a rendered prompt in, a generation out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Sequence

    from PIL import Image

__all__ = [
    "DEFAULT_MAX_TIME",
    "DEFAULT_TIMEOUT",
    "AsyncBackend",
    "Backend",
    "Generation",
    "Prompt",
    "ScoringBackend",
]

DEFAULT_MAX_TIME = 300.0
"""Seconds one local ``generate`` call runs before it stops itself (its outputs are
``truncated``, so the check fails closed)."""

DEFAULT_TIMEOUT = 600.0
"""The default check deadline of a local guard: seconds a caller waits for its outputs, queueing
behind other callers included, before it gets ``BackendTimeoutError`` (the check fails closed)."""


@dataclass(frozen=True)
class Prompt:
    """A prompt rendered by a :class:`~guardvl_sdk.policy.Policy`, ready for a backend.

    Attributes:
        messages: Chat messages in the Hugging Face multimodal format (``{"type": "image"}`` parts
            stand where the images go); the model's own chat template turns them into text.
        images: The images, already RGB and within the pixel budget, in the order of the image
            parts.
        score_label: The label whose probability of ``harmful`` a backend reports as
            :attr:`Generation.score`: ``"request"``, or ``"response"`` when a response is checked.
    """

    messages: list[dict[str, Any]]
    images: tuple[Image.Image, ...] = ()
    score_label: str = "request"


@dataclass(frozen=True)
class Generation:
    """What a backend generated for one prompt.

    Attributes:
        text: The generated text only (never the prompt), special tokens removed.
        finished: True when generation stopped by itself (end of sequence or a stop string);
            False when it ran out of ``max_new_tokens``.
        prompt_tokens: Tokens in the prompt, images included.
        completion_tokens: Tokens generated.
        score: Probability that the request (or, with a response, the response) is harmful, read
            from the label token, when the backend can provide it.
        error: Set when this prompt alone failed (a backend that sends prompts separately, such as
            a remote one); the other generations of the call stand. ``text`` is then empty.
    """

    text: str
    finished: bool = True
    prompt_tokens: int = 0
    completion_tokens: int = 0
    score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: Exception | None = None


@runtime_checkable
class Backend(Protocol):
    """Generates guard outputs for rendered prompts. Implementations must be thread-safe."""

    model_id: str

    def generate(self, prompts: Sequence[Prompt]) -> list[Generation]:
        """Generate one output per prompt, in order; never fewer.

        Raise when the call fails as a whole. A backend that sends prompts separately may instead
        return, for a prompt that failed alone, a generation with :attr:`Generation.error` set.
        """
        ...


# Optional capabilities: a backend may have them too; the guard uses what it has.


@runtime_checkable
class AsyncBackend(Protocol):
    """A backend that also generates without blocking the event loop (``Guard.acheck``)."""

    async def agenerate(self, prompts: Sequence[Prompt]) -> list[Generation]:
        """Like :meth:`Backend.generate`, awaited."""
        ...


@runtime_checkable
class ScoringBackend(Protocol):
    """A backend that reads P(harmful) of the label token in one forward pass (``triage``)."""

    def label_probability(
        self, prompts: Sequence[Prompt], *, continuation: str
    ) -> list[float | None]:
        """P(harmful) of the label token right after ``continuation``, per prompt."""
        ...
