"""guardvl-sdk: guardrail middleware for vision-language-model apps.

Checks every request before it reaches your VLM and every answer before it reaches your user, with
the GuardReasoner-VL guard models, and returns a structured :class:`Verdict`::

    from guardvl_sdk import Guard

    guard = Guard.from_pretrained("yueliu1999/GuardReasoner-VL-Eco-3B")
    verdict = guard.check("How do I disable the smoke detector?", image="kitchen.jpg")
    if verdict.blocked: ...
"""

from __future__ import annotations

from guardvl_sdk.audit import AuditRecord, JsonlAuditLog, SqliteAuditLog
from guardvl_sdk.backends.base import Backend, Generation, Prompt
from guardvl_sdk.errors import (
    AuditError,
    BackendConnectionError,
    BackendError,
    BackendStatusError,
    BackendTimeoutError,
    ConfigurationError,
    GuardBlocked,
    GuardOutputError,
    GuardVLError,
    InvalidDataError,
    InvalidInputError,
    MissingExtraError,
    ModelLoadError,
)
from guardvl_sdk.guard import DEFAULT_MODEL, DEMO_MODEL, CheckInput, Guard, OnError
from guardvl_sdk.hooks import (
    DEFAULT_REFUSAL,
    BlockedCall,
    CheckMode,
    GuardEvent,
    GuardSession,
    OnBlock,
    guarded,
)
from guardvl_sdk.policy import GUARDREASONER_VL, Category, Policy
from guardvl_sdk.records import Record, load_records
from guardvl_sdk.verdict import Completion, InspectedPart, Label, Status, Usage, Verdict

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_REFUSAL",
    "DEMO_MODEL",
    "GUARDREASONER_VL",
    "AuditError",
    "AuditRecord",
    "Backend",
    "BackendConnectionError",
    "BackendError",
    "BackendStatusError",
    "BackendTimeoutError",
    "BlockedCall",
    "Category",
    "CheckInput",
    "CheckMode",
    "Completion",
    "ConfigurationError",
    "Generation",
    "Guard",
    "GuardBlocked",
    "GuardEvent",
    "GuardOutputError",
    "GuardSession",
    "GuardVLError",
    "InspectedPart",
    "InvalidDataError",
    "InvalidInputError",
    "JsonlAuditLog",
    "Label",
    "MissingExtraError",
    "ModelLoadError",
    "OnBlock",
    "OnError",
    "Policy",
    "Prompt",
    "Record",
    "SqliteAuditLog",
    "Status",
    "Usage",
    "Verdict",
    "__version__",
    "guarded",
    "load_records",
]
