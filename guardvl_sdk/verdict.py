"""The guard's answer: :class:`Verdict`, its :class:`Label` values and small value types."""

from __future__ import annotations

import math
from enum import Enum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    computed_field,
    field_serializer,
    field_validator,
)

from guardvl_sdk.text import without_lone_surrogates

__all__ = [
    "Completion",
    "InspectedPart",
    "Label",
    "PartKind",
    "PartStatus",
    "Stage",
    "Status",
    "Usage",
    "Verdict",
    "valid_score",
]


def valid_score(score: float | None) -> float | None:
    """``score`` if it is a probability (finite, in [0, 1]); otherwise no score (None)."""
    if score is None or not math.isfinite(score) or not 0.0 <= score <= 1.0:
        return None
    return float(score)


class Label(str, Enum):
    """A harmfulness label, as the guard writes it."""

    HARMFUL = "harmful"
    UNHARMFUL = "unharmful"


class Completion(str, Enum):
    """Refusal detection, a task only the text-only GuardReasoner models answer."""

    REFUSAL = "refusal"
    COMPLIANCE = "compliance"


class Status(str, Enum):
    """How far the guard got.

    ``ok``: every label the check needs was read. ``parse_error``: the guard finished but no
    readable label was found. ``truncated``: the guard ran out of tokens before its result.
    ``error``: the backend failed. Only ``ok`` ever carries an ``unharmful`` label.
    """

    OK = "ok"
    PARSE_ERROR = "parse_error"
    TRUNCATED = "truncated"
    ERROR = "error"


Stage = Literal["input", "output"]


class Usage(BaseModel):
    """Token counts of one check."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


PartKind = Literal["text", "image", "tool_call", "tool_result", "other"]
PartStatus = Literal["inspected", "earlier", "not_inspected"]


class InspectedPart(BaseModel):
    """One part of a check's input, as the inspection receipt lists it (never its content).

    Attributes:
        kind: ``text``, ``image``, ``tool_call`` (a call's name and arguments, as the assistant
            wrote them), ``tool_result`` (what a tool returned to the model), or ``other``
            (content the guard cannot read, such as audio; never ``inspected``).
        role: Who the part came from: ``user``, ``assistant``, ``system`` or ``tool``.
        message: Index of the message it came from, for a conversation; else None.
        offset: For a slice of a streamed answer, where the slice starts in the whole answer
            (the slice is ``[offset, offset + chars)``); else None.
        chars: Length of a text part, in characters.
        width: Pixel width of an image as the guard saw it (after the pixel budget).
        height: Pixel height, likewise.
        sha256: SHA-256 of the content: of a text's UTF-8, of an image's decoded pixels and size
            (see :func:`guardvl_sdk.audit.image_hash`), of an unreadable part's source.
        status: ``inspected``: sent to the guard in this check. ``earlier``: already judged in
            an earlier check of the same conversation, so not sent again (see
            ``Guard(conversation_memory=...)``). ``not_inspected``: the guard could not read it
            (``Guard(unreadable=...)``); such a verdict is blocked unless allowed explicitly.
        reason: Why a part was not inspected.
    """

    model_config = ConfigDict(frozen=True)

    kind: PartKind
    role: str | None = None
    message: int | None = None
    offset: int | None = None
    chars: int | None = None
    width: int | None = None
    height: int | None = None
    sha256: str
    status: PartStatus = "inspected"
    reason: str | None = None


class Verdict(BaseModel):
    """The structured result of one guard check.

    Attributes:
        request: Label of the user's request; ``None`` when it could not be read.
        response: Label of the assistant's response; ``None`` when no response was checked or
            the label could not be read.
        completion: Refusal/compliance, only from text-only GuardReasoner models.
        categories: Violated policy categories, for policies that name them.
        reasoning: The guard's reasoning (the text inside ``<think>``), if any.
        raw: The full generated text, exactly as the guard wrote it.
        score: Probability of ``harmful`` at the label token, when the backend provides it.
        status: See :class:`Status`.
        blocked: The decision after the guard's failure policy. ``True`` means do not pass on.
        error: What went wrong, when ``status`` is not ``ok``.
        stage: ``"input"`` for a request check, ``"output"`` for a check with a response.
        model: Id of the guard model.
        policy: Name of the policy that rendered and parsed the check.
        usage: Token counts.
        latency_ms: Wall time of the check, in milliseconds.
        cached: True when the verdict came from the verdict cache.
        windows: How many overlapping windows a long text was checked in (1 when it fit).
        inspected: The inspection receipt: every part of the input, once each, in input order
            (see :class:`InspectedPart`). Empty only for verdicts not made by a check.
    """

    model_config = ConfigDict(frozen=True)

    request: Label | None = None
    response: Label | None = None
    completion: Completion | None = None
    categories: list[str] = Field(default_factory=list)
    reasoning: str | None = None
    raw: str = ""
    score: float | None = None
    status: Status = Status.OK
    blocked: bool = True
    error: str | None = None
    stage: Stage = "input"
    model: str | None = None
    policy: str | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_ms: float = 0.0
    cached: bool = False
    windows: int = 1
    inspected: tuple[InspectedPart, ...] = ()

    @field_validator("reasoning", "raw", "error", "model", "policy", mode="before")
    @classmethod
    def _encodable(cls, value: Any) -> Any:
        # A lone surrogate from a server would make model_dump_json() raise: verdicts always
        # serialise.
        return without_lone_surrogates(value) if isinstance(value, str) else value

    @field_serializer("reasoning", "raw", "error", "model", "policy", when_used="json")
    def _encodable_json(self, value: str | None) -> str | None:
        # Also for copies made without validation (model_copy(update=...)).
        return None if value is None else without_lone_surrogates(value)

    @field_validator("categories", mode="before")
    @classmethod
    def _encodable_list(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [without_lone_surrogates(v) if isinstance(v, str) else v for v in value]
        return value

    @field_validator("score", mode="before")
    @classmethod
    def _probability(cls, value: Any) -> Any:
        return valid_score(value) if isinstance(value, int | float) else value

    @computed_field  # type: ignore[prop-decorator]
    @property
    def harmful(self) -> bool | None:
        """True if any label is harmful; False if all needed labels are unharmful; else None.

        ``None`` means the guard gave no usable answer (see ``status``): never read it as safe.
        """
        if Label.HARMFUL in (self.request, self.response):
            return True
        if self.status is Status.OK:
            return False
        return None

    @property
    def allowed(self) -> bool:
        """The opposite of :attr:`blocked`."""
        return not self.blocked

    def summary(self) -> str:
        """A one-line description, e.g. ``request=harmful response=None status=ok blocked``."""
        request = self.request.value if self.request else None
        response = self.response.value if self.response else None
        decision = "blocked" if self.blocked else "allowed"
        return f"request={request} response={response} status={self.status.value} {decision}"
