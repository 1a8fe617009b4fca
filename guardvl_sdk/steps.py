"""The steps of one check, as functions of their inputs; :class:`~guardvl_sdk.Guard` runs them.

inputs -> :func:`read_item` (parts, receipt) -> :func:`text_windows` (prompts within the text
budget) -> :func:`triage` / :func:`generate` (the backend) -> :func:`window_verdict` (a
generation parsed into a verdict, the threshold applied) -> :func:`decide` (blocked or not).
None of them keeps state: the guard's options come in as arguments, so each step can be read,
tested and changed alone. What holds state (the cache, the conversation memory, the audit log)
stays in ``Guard``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from guardvl_sdk.backends.base import Generation, Prompt, ScoringBackend
from guardvl_sdk.checks import BatchItem, CheckInput
from guardvl_sdk.conversation import Part, read_answer, read_messages
from guardvl_sdk.errors import BackendError, GuardOutputError, GuardVLError, InvalidInputError
from guardvl_sdk.inputs import ImageBudget, clean_text, load_image
from guardvl_sdk.inspection import ConversationMemory, Inspection, Unreadable, inspect_parts
from guardvl_sdk.policy import Policy
from guardvl_sdk.redaction import redact
from guardvl_sdk.verdict import Label, Status, Usage, Verdict, valid_score
from guardvl_sdk.windows import split_windows

__all__ = [
    "Check",
    "OnError",
    "Outcome",
    "Window",
    "agenerate",
    "as_check_input",
    "decide",
    "failure",
    "generate",
    "merge",
    "ms_since",
    "read_item",
    "text_windows",
    "triage",
    "window_verdict",
]

logger = logging.getLogger("guardvl_sdk")

OnError = Literal["block", "allow", "raise"]


@dataclass(frozen=True)
class Window:
    """One prompt to generate for: a whole check, or one window of a long one."""

    prompt: Prompt
    has_response: bool


@dataclass
class Check:
    """One item being checked: its content, its window prompts, or its cached verdict."""

    content: Inspection
    windows: list[Window]
    key: str | None
    verdict: Verdict | None = None


@dataclass(frozen=True)
class Outcome:
    """What the backend gave for one window (or the error it raised), and how long it took."""

    result: Generation | Exception
    latency_ms: float


def ms_since(began: float) -> float:
    """Milliseconds since ``began`` (a ``time.perf_counter()`` value)."""
    return (time.perf_counter() - began) * 1000


def as_check_input(item: BatchItem, index: int) -> CheckInput:
    """A batch item (a ``CheckInput``, a mapping of its fields, or a request string) as one.

    Raises:
        InvalidInputError: Unknown keys, or another type.
    """
    if isinstance(item, CheckInput):
        return item
    if isinstance(item, str):
        return CheckInput(text=item)
    if isinstance(item, Mapping):
        unknown = set(item) - {"text", "image", "response", "messages", "memory"}
        if unknown:
            raise InvalidInputError(f"batch item {index}: unknown keys {sorted(unknown)}")
        return CheckInput(**item)
    raise InvalidInputError(
        f"batch item {index}: expected CheckInput, a mapping or a str, got {type(item).__name__}"
    )


def read_item(
    item: CheckInput,
    *,
    max_pixels: int | None,
    fetch: Callable[[str], bytes] | None,
    unreadable: Unreadable,
    memory: ConversationMemory | None,
) -> Inspection:
    """Read the item into parts and lay them out, with the receipt (one place for both).

    Raises:
        InvalidInputError: Nothing to check, both ``messages`` and ``text``/``image``, or
            content the guard cannot read under ``unreadable="raise"``.
    """
    conversation = item.messages is not None
    if conversation:
        if item.text is not None or item.image is not None:
            raise InvalidInputError("give messages= or text= and image=, not both")
        parts = read_messages(item.messages or [])
    else:
        parts = []
        if item.text is not None:
            parts.append(Part("text", "user", 0, text=clean_text(item.text, what="text")))
        sources = item.image if isinstance(item.image, list | tuple) else [item.image]
        parts += [Part("image", "user", 0, image=s) for s in sources if s is not None]
    answer = None
    if item.response is not None:
        index = len(item.messages or ()) if conversation else 1
        answer = read_answer(item.response, index, item.response_offset)
    budget = ImageBudget()  # one per check: the images sent (not those judged earlier)
    return inspect_parts(
        parts,
        answer,
        load_image=lambda source: load_image(
            source, max_pixels=max_pixels, fetch=fetch, budget=budget
        ),
        can_fetch=fetch is not None,
        unreadable=unreadable,
        memory=memory if conversation and item.memory else None,
        conversation=conversation,
    )


def text_windows(
    text: str, response: str | None, *, max_text_chars: int, overlap: int, max_windows: int
) -> list[tuple[str, str | None]]:
    """The (request, response) pairs that cover a long text within the text budget.

    Raises:
        InvalidInputError: More than ``max_windows`` windows would be needed.
    """
    size = max_text_chars
    # The budget counts characters and UTF-8 bytes (a safe proxy for tokens) alike.
    requests = split_windows(text, size, overlap, max_bytes=size)
    answers: list[str | None] = [None]
    if response is not None:
        answers = list(split_windows(response, size, overlap, max_bytes=size))
    if len(requests) * len(answers) > max_windows:
        raise InvalidInputError(
            f"text too long to check: {len(text) + len(response or '')} characters would "
            f"take {len(requests) * len(answers)} windows of {size}, over max_windows="
            f"{max_windows}"
        )
    return [(request, answer) for request in requests for answer in answers]


def triage(
    backend: object,
    policy: Policy,
    prompts: list[Prompt],
    band: tuple[float, float] | None,
    batch_size: int,
) -> dict[int, Outcome]:
    """Request checks the label probability decides alone (see ``Guard(triage=...)``), by index.

    Nothing is decided without a band or a :class:`~guardvl_sdk.backends.base.ScoringBackend`;
    a failed probe leaves its prompts to the full check.
    """
    if band is None or not isinstance(backend, ScoringBackend):
        return {}
    low, high = band
    target = policy.target(request=Label.HARMFUL)
    continuation = target[: target.index("Request:") + len("Request:")]
    requests = [i for i, p in enumerate(prompts) if p.score_label == "request"]
    decided: dict[int, Outcome] = {}
    for start in range(0, len(requests), batch_size):
        chunk = requests[start : start + batch_size]
        began = time.perf_counter()
        try:
            chunk_prompts = [prompts[i] for i in chunk]
            probabilities = backend.label_probability(chunk_prompts, continuation=continuation)
        except Exception as exc:  # the full check will run, and fail or not, on its own
            logger.warning("guard triage failed, reasoning in full: %r", exc)
            continue
        for index, probability in zip(chunk, probabilities, strict=True):
            if probability is None or low <= probability <= high:
                continue
            label = Label.HARMFUL if probability > high else Label.UNHARMFUL
            text = policy.target(request=label)
            generation = Generation(text=text, score=probability, extra={"triage": True})
            decided[index] = Outcome(generation, ms_since(began))
    return decided


def merge(triaged: dict[int, Outcome], rest: list[Outcome], total: int) -> list[Outcome]:
    """Outcomes in prompt order: the triaged ones at their indices, the rest in between."""
    others = iter(rest)
    return [triaged[i] if i in triaged else next(others) for i in range(total)]


def generate(
    backend_generate: Callable[[list[Prompt]], list[Generation]], prompts: list[Prompt]
) -> list[Generation | Exception]:
    """Generate, splitting the batch in two on out-of-memory; failures become values."""
    try:
        generations = backend_generate(prompts)
    except Exception as exc:
        if _is_out_of_memory(exc) and len(prompts) > 1:
            logger.warning("guard ran out of memory on %d prompts; halving", len(prompts))
            half = len(prompts) // 2
            first = generate(backend_generate, prompts[:half])
            return first + generate(backend_generate, prompts[half:])
        return [exc] * len(prompts)
    return _per_prompt(generations, len(prompts))


async def agenerate(
    backend_agenerate: Callable[[list[Prompt]], Any], prompts: list[Prompt]
) -> list[Generation | Exception]:
    """Like :func:`generate`, with the backend's ``agenerate``."""
    try:
        generations = await backend_agenerate(prompts)
    except Exception as exc:
        if _is_out_of_memory(exc) and len(prompts) > 1:
            half = len(prompts) // 2
            first = await agenerate(backend_agenerate, prompts[:half])
            return first + await agenerate(backend_agenerate, prompts[half:])
        return [exc] * len(prompts)
    return _per_prompt(generations, len(prompts))


def window_verdict(
    window: Window,
    outcome: Outcome,
    *,
    policy: Policy,
    model_id: str,
    threshold: float | None,
    on_error: OnError,
) -> Verdict:
    """The verdict of one window: the generation parsed by the policy, the threshold applied.

    A failed generation is an ``error`` verdict (its message redacted). The threshold may turn
    a written label harmful, never a harmful one unharmful. Not decided yet: see :func:`decide`.
    """
    common: dict[str, Any] = {
        "stage": "output" if window.has_response else "input",
        "model": model_id,
        "policy": policy.name,
        "latency_ms": outcome.latency_ms,
    }
    result = outcome.result
    if isinstance(result, Exception):
        error = redact(f"{type(result).__name__}: {result}")
        logger.warning("guard backend failed (on_error=%s): %s", on_error, error)
        return Verdict(status=Status.ERROR, error=error, **common)
    parsed = policy.parse(result.text, has_response=window.has_response, finished=result.finished)
    labels = {"request": parsed.request, "response": parsed.response}
    score = valid_score(result.score)  # NaN, infinite or out of [0, 1]: no score
    scored = window.prompt.score_label
    if (
        threshold is not None
        and score is not None
        and parsed.status is Status.OK
        and labels[scored] is not Label.HARMFUL
    ):
        labels[scored] = Label.HARMFUL if score >= threshold else Label.UNHARMFUL
    return Verdict(
        request=labels["request"],
        response=labels["response"],
        completion=parsed.completion,
        categories=parsed.categories,
        reasoning=parsed.reasoning,
        raw=result.text,
        score=score,
        status=parsed.status,
        error=parsed.error,
        usage=Usage(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens),
        **common,
    )


def decide(status: Status, harmful: bool, on_error: OnError) -> bool:
    """The decision: a harmful label blocks; otherwise an undecided guard follows on_error."""
    if harmful:
        return True
    if status is Status.OK:
        return False
    return on_error != "allow"


def failure(verdict: Verdict, outcomes: list[Outcome]) -> GuardVLError:
    """The error ``on_error="raise"`` raises for a verdict that is not ``ok``."""
    found = next((o.result for o in outcomes if isinstance(o.result, Exception)), None)
    if isinstance(found, GuardVLError):
        return found
    if found is not None:
        error = BackendError(f"guard backend failed: {found!r}")
        error.__cause__ = found
        return error
    return GuardOutputError(f"guard output unusable: {verdict.error}", verdict=verdict)


def _is_out_of_memory(exc: Exception) -> bool:
    # torch.OutOfMemoryError (CUDA) or a RuntimeError saying so (CPU, MPS), without importing torch.
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _per_prompt(generations: list[Generation], expected: int) -> list[Generation | Exception]:
    if len(generations) != expected:
        error = BackendError(f"backend returned {len(generations)} outputs for {expected}")
        return [error] * expected
    return [g.error if g.error is not None else g for g in generations]
