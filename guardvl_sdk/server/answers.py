"""Turning verdicts into the service's answers: OpenAI moderation results and LiteLLM actions.

Mapping to OpenAI's moderation result (documented in docs/serving.md):

- ``flagged`` is the guard's decision, :attr:`~guardvl_sdk.verdict.Verdict.blocked`: a guard that
  could not decide (backend down, unreadable output) flags, unless it was built to fail open.
- ``categories`` keeps every key of OpenAI's schema, always ``false`` (the guard does not judge
  them), and adds ``"harmful"`` (the guard's label) plus one key per category of a custom policy.
- ``category_scores`` gives ``"harmful"`` the guard's P(harmful) when the backend exposes one, else
  1.0 or 0.0 from the label; the policy's categories score 1.0 when named, else 0.0.
- ``category_applied_input_types`` lists, for the keys the guard judged, the kinds of input it
  saw (``text``, ``image``).
- ``guardvl`` carries the full verdict, as :meth:`Verdict.model_dump` serialises it.
"""

from __future__ import annotations

from typing import Any

from guardvl_sdk.checks import CheckInput
from guardvl_sdk.verdict import Verdict

__all__ = ["HARMFUL_CATEGORY", "OPENAI_CATEGORIES", "litellm_answer", "moderation_result"]

HARMFUL_CATEGORY = "harmful"
"""The ``categories`` key that carries the guard's harmful label."""

OPENAI_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)


def _input_types(item: CheckInput) -> list[str]:
    kinds = ["text"] if item.text or item.response else []
    return [*kinds, "image"] if item.image else kinds


def moderation_result(verdict: Verdict, item: CheckInput, policy_categories: list[str]) -> Any:
    """One entry of ``results`` for ``verdict`` (see the module docstring)."""
    judged = [HARMFUL_CATEGORY, *policy_categories]
    harmful = verdict.harmful is True
    categories: dict[str, bool] = dict.fromkeys(OPENAI_CATEGORIES, False)
    scores: dict[str, float] = dict.fromkeys(OPENAI_CATEGORIES, 0.0)
    applied: dict[str, list[str]] = {name: [] for name in OPENAI_CATEGORIES}
    categories[HARMFUL_CATEGORY] = harmful
    scores[HARMFUL_CATEGORY] = verdict.score if verdict.score is not None else float(harmful)
    for name in policy_categories:
        categories[name] = name in verdict.categories
        scores[name] = float(categories[name])
    for name in judged:
        applied[name] = _input_types(item)
    return {
        "flagged": verdict.blocked,
        "categories": categories,
        "category_scores": scores,
        "category_applied_input_types": applied,
        "guardvl": verdict.model_dump(mode="json"),
    }


def litellm_answer(verdict: Verdict) -> dict[str, Any]:
    """The Generic Guardrail API answer: ``BLOCKED`` with a reason, or ``NONE`` (pass as is)."""
    if verdict.allowed:
        return {"action": "NONE"}
    return {"action": "BLOCKED", "blocked_reason": f"guardvl: {verdict.summary()}"}
