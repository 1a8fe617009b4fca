"""check_batch(return_exceptions=True): a failed item in its place; each item audited once."""

from __future__ import annotations

import json
from pathlib import Path

from guardvl_sdk import Guard, InvalidInputError, JsonlAuditLog, Verdict
from guardvl_sdk.integrations.langchain import GuardRunnable
from guardvl_sdk.testing import ScriptedBackend

ALLOW = "<think>fine</think><result>\nRequest: unharmful\nResponse: None\n</result>"
BAD_IMAGE = b"not an image"


def audited(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_bad_item_comes_back_in_its_place_and_each_item_is_audited_once(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    backend = ScriptedBackend(ALLOW)
    guard = Guard(backend, audit=JsonlAuditLog(log))
    items = [{"text": "hello"}, {"text": "look", "image": BAD_IMAGE}, {"text": "bye"}]
    results = guard.check_batch(items, return_exceptions=True)
    assert isinstance(results[0], Verdict) and isinstance(results[2], Verdict)
    assert isinstance(results[1], InvalidInputError)
    assert len(backend.prompts) == 2 and backend.calls == 1  # one batch, the good items only
    assert len(audited(log)) == 3  # one record per item: two verdicts and the refusal


def test_langchain_batch_checks_each_item_once(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    backend = ScriptedBackend(ALLOW)
    guard = Guard(backend, audit=JsonlAuditLog(log))
    results = GuardRunnable(guard).batch(
        ["hello", {"question": "look", "photo": "data:image/png;base64,AAAA"}, "bye"],
        return_exceptions=True,
    )
    assert results[0] == "hello" and results[2] == "bye"
    assert isinstance(results[1], InvalidInputError)
    assert backend.calls == 1 and len(backend.prompts) == 2  # no re-check one by one
    assert len(audited(log)) == 3
