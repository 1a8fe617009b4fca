"""LiteLLM: the guard in-process, as a ``CustomGuardrail`` (extra ``guardvl-sdk[litellm]``).

For LiteLLM SDK users (``litellm.acompletion``) and for a LiteLLM proxy that runs the guard in its
own process. A proxy that should call a separate ``guardvl serve`` needs no code: point LiteLLM's
Generic Guardrail API at it (docs/serving.md).

::

    import litellm
    from guardvl_sdk import Guard
    from guardvl_sdk.integrations.litellm import GuardVLGuardrail

    guardrail = GuardVLGuardrail(Guard.from_server(...), event_hook=["pre_call", "post_call"])
    litellm.callbacks = [guardrail]
    await litellm.acompletion(model=..., messages=..., guardrails=["guardvl"])

Hooks: ``pre_call`` checks the whole conversation, ``messages``, every role and part, as
``guard.check(messages=...)`` does (a part the guard cannot read blocks the call); ``post_call``
checks each choice's answer (text and tool calls) in the context of that conversation; the
streaming hook holds the stream back until each choice's whole answer (reasoning, text and the
tool calls its deltas assembled) is checked, so nothing unchecked reaches the user. A block raises
:class:`GuardrailBlocked`: both the SDK's :class:`~guardvl_sdk.errors.GuardBlocked` and LiteLLM's
``GuardrailRaisedException`` (the proxy answers it with HTTP 400). An input the guard cannot read
blocks too. LiteLLM runs guardrails in its async path (``acompletion``, the proxy) only.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from litellm.exceptions import GuardrailRaisedException
from litellm.integrations.custom_guardrail import CustomGuardrail

from guardvl_sdk.errors import GuardBlocked, InvalidInputError
from guardvl_sdk.guard import Guard
from guardvl_sdk.verdict import Status, Verdict

__all__ = ["GuardVLGuardrail", "GuardrailBlocked"]


class GuardrailBlocked(GuardBlocked, GuardrailRaisedException):
    """The guard blocked a LiteLLM call: a ``GuardBlocked`` and a ``GuardrailRaisedException``."""

    def __init__(self, verdict: Verdict, *, guardrail_name: str, blocked_output: Any = None):
        message = f"guardvl blocked the {verdict.stage}: {verdict.summary()}"
        if verdict.error:  # the guard could not decide: say why (never content)
            message += f" ({verdict.error})"
        GuardrailRaisedException.__init__(
            self,
            guardrail_name=guardrail_name,
            message=message,
            should_wrap_with_default_message=False,
            blocked_content=verdict.status is Status.OK,
        )
        self.verdict = verdict
        self.blocked_output = blocked_output


class GuardVLGuardrail(CustomGuardrail):
    """A LiteLLM guardrail that checks requests and answers with a :class:`Guard`.

    Args:
        guard: The guard. In a proxy config, give ``config`` instead.
        config: A guard configuration file (:meth:`Guard.from_config`), for proxies that build
            the guardrail from their YAML (``litellm_params: {guardrail: ..., config: ...}``).
        guardrail_name: The name calls select it by (``guardrails=[...]``).
        **kwargs: LiteLLM's guardrail options: ``event_hook`` (default pre and post call),
            ``default_on`` (default True: every call is checked).
    """

    def __init__(
        self,
        guard: Guard | None = None,
        *,
        config: str | Path | None = None,
        guardrail_name: str = "guardvl",
        **kwargs: Any,
    ) -> None:
        if (guard is None) == (config is None):
            raise TypeError("GuardVLGuardrail needs a guard or a config file, not both")
        self.guard = guard if guard is not None else Guard.from_config(config)  # type: ignore[arg-type]
        kwargs.setdefault("event_hook", ["pre_call", "post_call"])
        kwargs.setdefault("default_on", True)
        super().__init__(guardrail_name=guardrail_name, **kwargs)

    async def _check(
        self, messages: Any, *, response: dict[str, Any] | None = None, output: Any = None
    ) -> Verdict:
        try:
            verdict = await self.guard.acheck(messages=messages or [], response=response)
        except InvalidInputError as exc:  # what the guard cannot read does not pass
            verdict = Verdict(status=Status.ERROR, error=str(exc), model=self.guard.model_id)
        if verdict.blocked:
            raise GuardrailBlocked(
                verdict, guardrail_name=self.guardrail_name or "guardvl", blocked_output=output
            )
        return verdict

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: Any
    ) -> dict[str, Any]:
        """Check the conversation before it is sent; raise :class:`GuardrailBlocked` to stop it."""
        await self._check(data.get("messages"))
        return data

    async def async_post_call_success_hook(
        self, data: dict[str, Any], user_api_key_dict: Any, response: Any
    ) -> Any:
        """Check every choice's answer (text and tool calls) in the context of the request."""
        for answer in _answers(response):
            await self._check(data.get("messages"), response=answer, output=answer["content"])
        return response

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: Any, request_data: dict[str, Any]
    ) -> AsyncGenerator[Any, None]:
        """Hold the stream back, check each choice's whole answer, then release it (or block).

        An answer is what its deltas assembled: reasoning, text, and every tool call's name and
        arguments (their pieces concatenated by call index).
        """
        chunks = [chunk async for chunk in response]
        for answer in _streamed_answers(chunks):
            await self._check(request_data.get("messages"), response=answer, output=answer)
        for chunk in chunks:
            yield chunk


def _answers(response: Any) -> list[dict[str, Any]]:
    """Each choice as an assistant message: its text and tool calls, what the guard judges."""
    answers = []
    for choice in getattr(response, "choices", []) or []:
        message = getattr(choice, "message", None)
        answer: dict[str, Any] = {"role": "assistant", "content": getattr(message, "content", None)}
        calls = getattr(message, "tool_calls", None) or []
        if calls:
            answer["tool_calls"] = [
                {
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": c.function.arguments},
                }
                for c in calls
            ]
        answers.append(answer)
    return answers


def _streamed_answers(chunks: list[Any]) -> list[dict[str, Any]]:
    """Each choice of a stream as an assistant message, from its deltas (one, empty, if none)."""
    texts: dict[int, dict[str, str]] = {}
    calls: dict[int, dict[Any, dict[str, Any]]] = {}
    for chunk in chunks:
        for choice in getattr(chunk, "choices", None) or []:
            index = getattr(choice, "index", 0) or 0
            delta = getattr(choice, "delta", None)
            text = texts.setdefault(index, {"reasoning": "", "content": ""})
            text["reasoning"] += getattr(delta, "reasoning_content", None) or ""
            text["content"] += getattr(delta, "content", None) or ""
            for n, call in enumerate(getattr(delta, "tool_calls", None) or []):
                at = call.index if getattr(call, "index", None) is not None else f"#{n}"
                entry = calls.setdefault(index, {}).setdefault(
                    at, {"type": "function", "function": {"name": "", "arguments": ""}}
                )
                function = getattr(call, "function", None)
                entry["function"]["name"] += getattr(function, "name", None) or ""
                entry["function"]["arguments"] += getattr(function, "arguments", None) or ""
    answers = []
    for index, text in sorted(texts.items()) or [(0, {"reasoning": "", "content": ""})]:
        content = text["content"]
        if text["reasoning"]:
            content = f"{text['reasoning']}\n\n{content}"  # its thoughts are output too
        answer: dict[str, Any] = {"role": "assistant", "content": content}
        if calls.get(index):
            answer["tool_calls"] = list(calls[index].values())
        answers.append(answer)
    return answers
