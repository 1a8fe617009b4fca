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

Hooks: ``pre_call`` checks the user turns of ``messages`` (text and ``image_url`` parts; other
parts are refused, so the call is blocked); ``post_call`` checks each choice's answer (and its
tool calls) in the context of that request; the streaming hook holds the stream back until the
whole answer is checked, so nothing unchecked reaches the user. A block raises
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
from guardvl_sdk.guard import CheckInput, Guard
from guardvl_sdk.server.parsing import RESPONSE_ONLY_REQUEST, read_user_turns, tool_call_text
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

    def _request(self, data: dict[str, Any]) -> CheckInput:
        request = read_user_turns(data.get("messages") or [])
        return CheckInput(text=request.text, image=request.images or None)

    async def _check(self, item: CheckInput, *, output: Any = None) -> Verdict:
        try:
            verdict = await self.guard.acheck(item.text, image=item.image, response=item.response)
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
        """Check the request before it is sent; raise :class:`GuardrailBlocked` to stop it."""
        try:
            item = self._request(data)
        except InvalidInputError as exc:
            unread = Verdict(status=Status.ERROR, error=str(exc), model=self.guard.model_id)
            raise GuardrailBlocked(unread, guardrail_name=self.guardrail_name or "guardvl") from exc
        await self._check(item)
        return data

    async def async_post_call_success_hook(
        self, data: dict[str, Any], user_api_key_dict: Any, response: Any
    ) -> Any:
        """Check every choice's answer in the context of the request."""
        request = self._request(data)
        for answer in _answers(response):
            await self._check(_in_context(request, answer), output=answer)
        return response

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: Any, request_data: dict[str, Any]
    ) -> AsyncGenerator[Any, None]:
        """Hold the stream back, check the whole answer, then release it (or block)."""
        chunks = [chunk async for chunk in response]
        text = "".join(
            getattr(choice.delta, "content", None) or ""
            for chunk in chunks
            for choice in getattr(chunk, "choices", [])
        )
        await self._check(_in_context(self._request(request_data), text), output=text)
        for chunk in chunks:
            yield chunk


def _in_context(request: CheckInput, answer: str) -> CheckInput:
    """The answer, checked in the context of its request (a chat with no user turn has none)."""
    text = request.text or ("" if request.image else RESPONSE_ONLY_REQUEST)
    return CheckInput(text=text, image=request.image, response=answer)


def _answers(response: Any) -> list[str]:
    """The text of each choice, with its tool calls, as the guard judges it."""
    answers = []
    for choice in getattr(response, "choices", []) or []:
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None) or ""
        if not isinstance(content, str):
            raise InvalidInputError("the model's answer is not text")
        calls = getattr(message, "tool_calls", None) or []
        as_dicts = [c.model_dump() if hasattr(c, "model_dump") else c for c in calls]
        texts = [content, *(tool_call_text(c, i) for i, c in enumerate(as_dicts))]
        answers.append("\n\n".join(t for t in texts if t))
    return answers
