"""Verdict cache: a hit against a miss, for text and for text + a 1024x768 JPEG given as bytes.

    python benchmarks/verdict_cache.py [--runs 7] [--tokens 64]

The guard runs as shipped with a ``VerdictCache``. A miss is a check of an input not seen before
(a fresh request text each time, the same JPEG bytes); a hit repeats the first input. Prints the
median of each and the ratio (target: a hit at least 100x faster than a miss, image included).

The benchmark model's random weights never write a parseable verdict, and only ``ok`` verdicts
are cached, so each generation (its full cost paid) is answered as a trained guard would
answer: ``ValidAnswer`` below replaces the text, nothing else.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
import time
from collections.abc import Sequence
from typing import Any

from _common import EOS_SCALE, bench_model, jpeg, load

from guardvl_sdk import Guard
from guardvl_sdk.backends.base import Generation
from guardvl_sdk.cache import VerdictCache

ANSWER = "<think>\nA benchmark.\n</think>\n<result>\nRequest: unharmful\nResponse: None\n</result>"


class ValidAnswer:
    """The benchmark model's generation, its text replaced by a parseable guard answer."""

    def __init__(self, backend: Any) -> None:
        self.backend, self.model_id = backend, backend.model_id

    def generate(self, prompts: Sequence[Any]) -> list[Generation]:
        made = self.backend.generate(prompts)
        return [dataclasses.replace(g, text=ANSWER, finished=True) for g in made]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()

    model = Guard.from_pretrained(bench_model(eos_scale=EOS_SCALE), max_new_tokens=args.tokens)
    guard = Guard(ValidAnswer(model.backend), cache=VerdictCache())
    counter = itertools.count()
    print(f"verdict cache, misses of up to {args.tokens} tokens, {args.runs} runs, medians")
    for kind, image in [("text", None), ("text + 1024x768 JPEG", jpeg(1024, 768))]:
        guard.check("warm-up", image=image)
        misses, hits, tokens = [], [], 0
        for _ in range(args.runs):
            began = time.perf_counter()
            verdict = guard.check(f"What is this? ({next(counter)})", image=image)
            misses.append(time.perf_counter() - began)
            assert not verdict.cached
            tokens += verdict.usage.completion_tokens
            began = time.perf_counter()
            assert guard.check("warm-up", image=image).cached
            hits.append(time.perf_counter() - began)
        miss, hit = statistics.median(misses) * 1000, statistics.median(hits) * 1000
        print(
            f"  {kind:<22} miss {miss:8.1f} ms ({tokens} tokens generated)   hit {hit:7.3f} ms"
            f"   hit is x{miss / hit:.0f} faster   {load()}"
        )


if __name__ == "__main__":
    main()
