"""The middleware core: every way of guarding a VLM call stands on these modules.

``@guarded`` (:mod:`.decorator`), ``guard.session()`` (:mod:`.session`), the OpenAI adapter and
the LangChain adapters are thin peers on:

- :mod:`.options`: the options every entry point shares, validated once (one ``on_block``
  vocabulary);
- :mod:`.events`: :class:`GuardEvent`, :class:`BlockedCall`, and the :class:`Reporter` every check
  goes through (it logs and calls ``on_verdict``);
- :mod:`.messages`: reading the request out of text, images and chat messages (a chat is read
  whole, every role, by :mod:`guardvl_sdk.conversation`);
- :mod:`.answers`: reading OpenAI-format answers (each choice of a completion or a stream, with
  its reasoning and tool calls; an allowlist of answer fields), for the OpenAI and LiteLLM
  adapters;
- :mod:`.stream`: the stream gate (what of a streamed answer is released, when) with one sync and
  one async driver;
- :mod:`.flow`: a call's control flow written once as steps (:class:`Check`, :class:`Call`,
  :class:`GuardStream`, ...), run by :func:`run_flow` or awaited by :func:`arun_flow`: the sync
  and async paths of an entry point differ only in the driver;
- :mod:`.signature`: reading a guarded function's signature.

One rule for empty answers, the same everywhere: when the output check is on, every answer is
checked, an empty one (or one of tool calls only) too, as an empty response. The output check
judges the request together with the answer, and under ``check="output"`` it is the only check,
so an answer without text never lets a request pass unjudged.
"""

from __future__ import annotations

from guardvl_sdk.hooks.answers import StreamedChoices, choice_answers, refuse_unread
from guardvl_sdk.hooks.decorator import guarded
from guardvl_sdk.hooks.events import BlockedCall, GuardEvent, Guardian, Reporter
from guardvl_sdk.hooks.flow import (
    Call,
    Check,
    Flow,
    GuardStream,
    PassStream,
    Resolve,
    Step,
    arun_flow,
    run_flow,
)
from guardvl_sdk.hooks.messages import Request, RequestReader, read_messages
from guardvl_sdk.hooks.options import (
    DEFAULT_REFUSAL,
    BlockMode,
    CheckMode,
    HookArgs,
    HookOptions,
    OnBlock,
    StreamOptions,
)
from guardvl_sdk.hooks.session import GuardSession
from guardvl_sdk.hooks.signature import IMAGE_PARAMETERS, TEXT_PARAMETERS
from guardvl_sdk.hooks.stream import (
    Due,
    Gates,
    OneAnswer,
    StreamGate,
    aguard_stream,
    guard_stream,
)

__all__ = [
    "DEFAULT_REFUSAL",
    "IMAGE_PARAMETERS",
    "TEXT_PARAMETERS",
    "BlockMode",
    "BlockedCall",
    "Call",
    "Check",
    "CheckMode",
    "Due",
    "Flow",
    "Gates",
    "GuardEvent",
    "GuardSession",
    "GuardStream",
    "Guardian",
    "HookArgs",
    "HookOptions",
    "OnBlock",
    "OneAnswer",
    "PassStream",
    "Reporter",
    "Request",
    "RequestReader",
    "Resolve",
    "Step",
    "StreamGate",
    "StreamOptions",
    "StreamedChoices",
    "aguard_stream",
    "arun_flow",
    "choice_answers",
    "guard_stream",
    "guarded",
    "read_messages",
    "refuse_unread",
    "run_flow",
]
