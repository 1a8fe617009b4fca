"""The `</result>` stop string: its checker is built once per backend, not once per generate.

transformers builds a ``StopStringCriteria`` on every ``generate`` that has ``stop_strings`` in
its config, and building one scans the whole vocabulary (``get_vocab``, a sort, a cache key over
every token): about 0.3 s per call with the real 151,665-token Qwen2.5 vocabulary.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from guardvl_sdk.backends.base import Prompt
from guardvl_sdk.backends.local import LocalBackend

pytestmark = pytest.mark.slow


def _prompt(text: str) -> Prompt:
    content = [{"type": "text", "text": text}]
    return Prompt(messages=[{"role": "user", "content": content}], images=())


def test_generate_scans_the_vocabulary_zero_times(tiny_model_dir, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    backend = LocalBackend.load(tiny_model_dir, max_new_tokens=4, batch_window_ms=None)
    tokenizer = backend.processor.tokenizer
    scans = 0
    real_get_vocab = tokenizer.get_vocab

    def counting_get_vocab() -> Any:
        nonlocal scans
        scans += 1
        return real_get_vocab()

    monkeypatch.setattr(tokenizer, "get_vocab", counting_get_vocab)
    generations = backend.generate([_prompt("How do I pick a lock?")])
    generations += backend.generate([_prompt("Another"), _prompt("and another")])
    assert len(generations) == 3
    assert scans == 0
    # The counter does see a scan where transformers would make one per call.
    from transformers import StopStringCriteria

    StopStringCriteria(tokenizer=tokenizer, stop_strings=["</result>"])
    assert scans == 1


def test_the_backend_stop_checker_fires_on_the_end_tag(tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    backend = LocalBackend.load(tiny_model_dir, max_new_tokens=4, batch_window_ms=None)
    tokenizer = backend.processor.tokenizer
    assert backend.generation_config.stop_strings is None  # the backend's own checker stops
    (checker,) = backend._stopping

    def stops(text: str) -> bool:
        ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
        return bool(checker(ids, None)[0])

    assert stops("<result>\nRequest: harmful\n</result>")
    assert not stops("<result>\nRequest: harmful\n</resul")
