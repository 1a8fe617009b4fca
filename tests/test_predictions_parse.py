"""The parser on real generations of the text-only GuardReasoner (1B/3B/8B, six benchmarks)."""

import json

import pytest

from guardvl_sdk import GUARDREASONER_VL, Status

from .conftest import PREDICTIONS_DIR

FILES = sorted(PREDICTIONS_DIR.glob("*/*.jsonl")) if PREDICTIONS_DIR.is_dir() else []


@pytest.mark.skipif(not FILES, reason=f"{PREDICTIONS_DIR} is absent")
def test_at_least_99_percent_of_published_generations_parse() -> None:
    total = failures = 0
    for path in FILES:
        records = [
            json.loads(line)
            for line in path.read_text(encoding="utf-8").split("\n")
            if line.strip()
        ]
        # Response-task files judge a real response; the others only the request.
        has_response = "Response" in path.name or "Reponse" in path.name
        failed = sum(
            GUARDREASONER_VL.parse(r["predict"], has_response=has_response, text_format=True).status
            is not Status.OK
            for r in records
        )
        print(f"{path.parent.name}/{path.name}: {failed} of {len(records)} unparsed")
        total += len(records)
        failures += failed
    assert total > 6000
    assert failures / total <= 0.01, f"{failures} of {total} failed to parse"
