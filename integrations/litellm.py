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
checks each choice's answer in the context of that conversation; the streaming hook holds the
stream back (the stream gate, buffered) until each choice's whole answer is checked, so nothing
unchecked reaches the user. Answers are read by the OpenAI adapter's reader
(:mod:`guardvl_sdk.hooks.answers`), with its allowlist: reasoning (``reasoning_content``,
``reasoning``), text, refusal and tool calls are judged; an answer field it does not read
(``thinking_blocks``, ``images``, ``audio``, ``provider_specific_fields``, ... when not empty)
blocks. A block raises
:class:`GuardrailBlocked`: both the SDK's :class:`~guardvl_sdk.errors.GuardBlocked` and LiteLLM's
``GuardrailRaisedException`` (the proxy answers it with HTTP 400). An input the guard cannot read
blocks too. LiteLLM runs guardrails in its async path (``acompletion``, the proxy) only.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, NoReturn

from litellm.exceptions import GuardrailRaisedException
from litellm.integrations.custom_guardrail import CustomGuardrail

from guardvl_sdk.checks import Due
from guardvl_sdk.errors import GuardBlocked, InvalidInputError
from guardvl_sdk.guard import Guard
from guardvl_sdk.hooks import StreamedChoices, StreamOptions, aguard_stream, choice_answers
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

    async def _judge(self, messages: Any, response: Any = None) -> Verdict:
        """The verdict on the conversation, or with ``response`` on that answer to it."""
        try:
            return await self.guard.acheck(messages=messages or [], response=response)
        except InvalidInputError as exc:  # what the guard cannot read does not pass
            return self._unreadable(exc)

    def _unreadable(self, exc: InvalidInputError) -> Verdict:
        return Verdict(status=Status.ERROR, error=str(exc), model=self.guard.model_id)

    def _blocked(self, verdict: Verdict, output: Any = None) -> NoReturn:
        name = self.guardrail_name or "guardvl"
        raise GuardrailBlocked(verdict, guardrail_name=name, blocked_output=output)

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: Any
    ) -> dict[str, Any]:
        """Check the conversation before it is sent; raise :class:`GuardrailBlocked` to stop it."""
        verdict = await self._judge(data.get("messages"))
        if verdict.blocked:
            self._blocked(verdict)
        return data

    async def async_post_call_success_hook(
        self, data: dict[str, Any], user_api_key_dict: Any, response: Any
    ) -> Any:
        """Check every choice's answer (reasoning, text, tool calls) in the request's context."""
        try:
            answers = choice_answers(getattr(response, "choices", None) or [])
        except InvalidInputError as exc:
            self._blocked(self._unreadable(exc))
        for answer in answers.values():
            verdict = await self._judge(data.get("messages"), answer)
            if verdict.blocked:
                self._blocked(verdict, answer if isinstance(answer, str) else answer["content"])
        return response

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: Any, request_data: dict[str, Any]
    ) -> AsyncGenerator[Any, None]:
        """Hold the stream back, check each choice's whole answer, then release it (or block).

        An answer is what its deltas assembled: reasoning, text, and every tool call's name and
        arguments (their pieces concatenated by call index).
        """
        messages = request_data.get("messages")

        async def check(due: Due, partial: bool) -> Verdict:
            return await self._judge(messages, due.answer)

        def on_block(verdict: Verdict, key: int) -> NoReturn:
            self._blocked(verdict, gates.streams[key].text)  # the withheld answer's text

        gates = StreamedChoices(StreamOptions(every=None, buffered=True))
        try:
            async for chunk in aguard_stream(response, gates, check, on_block):
                yield chunk
        except InvalidInputError as exc:  # a delta field the reader does not judge
            self._blocked(self._unreadable(exc))
