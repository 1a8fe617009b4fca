"""Reasoning targets from a teacher model behind an OpenAI-compatible chat API.

The teacher sees what the guard will see (the policy's instruction, the images, the transcript)
plus the gold labels, and is asked for reasoning that leads to them in the guard's format. Its
reply is read with :meth:`Policy.parse`: a reply that does not parse, or whose labels (or
categories) disagree with the gold ones, is dropped and counted, never trained on.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guardvl_sdk.backends.base import Prompt
from guardvl_sdk.backends.chat_api import chat_messages
from guardvl_sdk.policy import Policy
from guardvl_sdk.records import Record
from guardvl_sdk.verdict import Label, Status

if TYPE_CHECKING:
    import httpx

__all__ = ["Teacher", "TeacherResult"]


@dataclass(frozen=True)
class TeacherResult:
    """Records the teacher gave reasoning to, and what was dropped.

    Attributes:
        records: The kept records, in order, with ``reasoning`` filled where it was missing.
        dropped: How many records were dropped.
        reasons: Why, counted (e.g. ``{"labels disagree": 3, "unparseable": 1}``).
    """

    records: list[Record]
    dropped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        """One line, e.g. ``kept 97, dropped 3 (labels disagree: 2, unparseable: 1)``."""
        why = ", ".join(f"{reason}: {count}" for reason, count in self.reasons.most_common())
        return f"kept {len(self.records)}, dropped {self.dropped}" + (f" ({why})" if why else "")


class Teacher:
    """A teacher model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        base_url: The API root, e.g. ``http://localhost:8000/v1``.
        model: The model name to request.
        api_key: Bearer token; default the ``OPENAI_API_KEY`` environment variable, if set.
        max_tokens: Bound of each reply.
        timeout: Seconds per request.
        client: An ``httpx.Client`` to use instead of a new one (e.g. with a mock transport).
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        max_tokens: int = 1024,
        timeout: float = 120.0,
        client: httpx.Client | None = None,
    ) -> None:
        import httpx

        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.max_tokens = max_tokens
        self._owned = client is None
        self._client = client or httpx.Client(timeout=timeout)
        self._headers = headers

    def __enter__(self) -> Teacher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client, if this teacher made it."""
        if self._owned:
            self._client.close()

    def fill(self, records: Iterable[Record], policy: Policy) -> TeacherResult:
        """Ask for reasoning for every record without it; keep replies that agree with the labels.

        Records that already have reasoning are kept as they are, without a request.
        """
        kept: list[Record] = []
        reasons: Counter[str] = Counter()
        for record in records:
            if (record.reasoning or "").strip():
                kept.append(record)
                continue
            reasoning, problem = self.reason(record, policy)
            if reasoning is None:
                reasons[problem or "unusable"] += 1
            else:
                kept.append(record.model_copy(update={"reasoning": reasoning}))
        return TeacherResult(kept, sum(reasons.values()), reasons)

    def reason(self, record: Record, policy: Policy) -> tuple[str | None, str | None]:
        """One record's reasoning, or ``(None, why it was dropped)``."""
        import httpx

        payload = {
            "model": self.model,
            "messages": _teacher_messages(record, policy),
            "temperature": 0.0,
            "max_tokens": self.max_tokens,
        }
        try:
            reply = self._client.post(self.url, json=payload, headers=self._headers)
            reply.raise_for_status()
            text = reply.json()["choices"][0]["message"]["content"]
        except httpx.HTTPStatusError as exc:
            return None, f"HTTP {exc.response.status_code}"
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
            return None, "request failed"
        if not isinstance(text, str):
            return None, "request failed"
        return _validated(text, record, policy)


def _validated(text: str, record: Record, policy: Policy) -> tuple[str | None, str | None]:
    parsed = policy.parse(text, has_response=record.response is not None)
    if parsed.status is not Status.OK:
        return None, "unparseable"
    gold_response = record.response_label if record.response is not None else None
    if parsed.request is not record.request_label or parsed.response is not gold_response:
        return None, "labels disagree"
    gold_categories = policy.category_names(record.categories) if policy.categories else []
    if set(parsed.categories) != set(gold_categories):
        return None, "categories disagree"
    if not parsed.reasoning:
        return None, "no reasoning"
    return parsed.reasoning, None


def _teacher_messages(record: Record, policy: Policy) -> list[dict[str, Any]]:
    """The guard's prompt in the OpenAI format, plus the gold answer to explain."""
    from guardvl_sdk.inputs import load_images

    gold = policy.target(
        request=record.request_label or Label.HARMFUL,
        response=record.response_label if record.response is not None else None,
        categories=record.categories if policy.categories else (),
    )
    result = gold[gold.index("<result>") :]
    images = load_images([str(path) for path in record.images])
    shown = policy.messages(record.request, num_images=len(images), response=record.response)
    system, user = chat_messages(Prompt(messages=shown, images=tuple(images)))
    user["content"].append(
        {
            "type": "text",
            "text": "A human labeller gave this result:\n"
            f"{result}\n"
            "Think step by step about why it is right. Put the reasoning into <think> </think>, "
            "then give exactly that result in <result> </result>.",
        }
    )
    return [system, user]
