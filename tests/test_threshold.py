"""The `threshold` option: the score, not the written label, decides the scored label."""

import pytest

from guardvl_sdk import ConfigurationError, Generation, Guard, Label, Status
from guardvl_sdk.cache import VerdictCache
from guardvl_sdk.testing import ScriptedBackend

FORMAT = "<think>\nok\n</think>\n<result>\nRequest: {request}\nResponse: {response}\n</result>"


def scored(text: str, score: float | None):  # type: ignore[no-untyped-def]
    return lambda prompt: Generation(text=text, finished=True, score=score)


SAFE = FORMAT.format(request="unharmful", response="None")
HARMFUL = FORMAT.format(request="harmful", response="None")


@pytest.mark.parametrize(
    ("written", "score", "threshold", "blocked"),
    [
        (SAFE, 0.4, 0.3, True),  # the score crosses the threshold: blocked despite the label
        (HARMFUL, 0.6, 0.7, True),  # a harmful written label always blocks, whatever the score
        (SAFE, 0.2, 0.3, False),  # below it: allowed
        (SAFE, float("nan"), 0.3, False),  # not a number: no score, the written label stands
        (SAFE, float("-inf"), 0.3, False),
        (HARMFUL, float("nan"), 0.3, True),
        (HARMFUL, float("-inf"), 0.3, True),  # what a remote logprob of Infinity yields
        (SAFE, 0.4, None, False),  # no threshold: the written label decides
        (HARMFUL, None, 0.99, True),  # no score: the written label stands
        (SAFE, None, 0.01, False),
    ],
)
def test_threshold_decides_from_the_score(written, score, threshold, blocked) -> None:  # type: ignore[no-untyped-def]
    guard = Guard(ScriptedBackend(scored(written, score)), threshold=threshold)
    verdict = guard.check("a question")
    assert verdict.blocked is blocked and verdict.harmful is blocked
    assert verdict.raw == written  # what the guard wrote is kept


def test_threshold_scores_the_response_label_of_a_response_check() -> None:
    written = FORMAT.format(request="unharmful", response="unharmful")
    verdict = Guard(ScriptedBackend(scored(written, 0.9)), threshold=0.5).check("q", response="a")
    assert verdict.response is Label.HARMFUL and verdict.request is Label.UNHARMFUL
    assert verdict.blocked


def test_threshold_never_loosens_an_undecided_guard() -> None:
    verdict = Guard(ScriptedBackend(scored("gibberish", 0.0)), threshold=0.5).check("q")
    assert verdict.blocked and verdict.status is Status.PARSE_ERROR


def test_threshold_is_part_of_the_cache_key() -> None:
    cache = VerdictCache()
    backend = ScriptedBackend(scored(SAFE, 0.4))
    assert not Guard(backend, cache=cache, threshold=0.5).check("q").blocked
    assert Guard(backend, cache=cache, threshold=0.3).check("q").blocked  # not a cached allow
    with pytest.raises(ConfigurationError):
        Guard(backend, threshold=1.5)
