"""Offline test helpers: a tiny Qwen2.5-VL built from nothing, a scripted backend, a fake server.

Nothing here downloads anything. :func:`build_tiny_model` (:mod:`.tiny_model`) writes a real
(random, untrained) Qwen2.5-VL checkpoint with a real processor to a directory in well under a
second, so the same ``Guard.from_pretrained`` path users take can run in CI. Such a model emits
noise; to test *decisions*, use :class:`ScriptedBackend` (:mod:`.scripted`), which returns
generations you give it, or, through ``Guard.from_server``, :class:`FakeChatServer`
(:mod:`.fake_server`), a loopback server that answers what you script.
"""

from __future__ import annotations

from guardvl_sdk.testing.fake_server import FakeChatServer, FakeReply
from guardvl_sdk.testing.scripted import ScriptedBackend
from guardvl_sdk.testing.tiny_model import QWEN2_VL_CHAT_TEMPLATE, build_tiny_model

__all__ = [
    "QWEN2_VL_CHAT_TEMPLATE",
    "FakeChatServer",
    "FakeReply",
    "ScriptedBackend",
    "build_tiny_model",
]
