"""The GuardReasoner-VL paper's published figures (REFERENCE.md section 3), for comparisons.

The paper publishes sample-weighted average F1 over its 8 request-task and 6 response-task
benchmarks, not per-benchmark figures here, so a reference row is only meaningful for an average
over exactly those benchmarks: :func:`reference_rows` gives rows only then, and says what is
missing otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["BENCHMARKS", "PUBLISHED", "reference_rows"]

BENCHMARKS: dict[str, tuple[str, ...]] = {
    "request": ("ToxicChat", "OpenAIModeration", "AegisSafetyTest", "SimpleSafetyTests",
                "HarmBenchPrompt", "WildGuardTest", "HarmImageTest", "SPA-VL-Eval"),
    "response": ("HarmBenchResponse", "SafeRLHF", "BeaverTails", "XSTestResponseHarmful",
                 "WildGuardTest", "SPA-VL-Eval"),
}  # fmt: skip
"""The paper's benchmarks of each task."""

PUBLISHED: dict[str, dict[str, float]] = {
    "GuardReasoner-VL-7B": {"request": 0.7907, "response": 0.7758},
    "GuardReasoner-VL-3B": {"request": 0.7873, "response": 0.7656},
    "GuardReasoner-VL-Eco-7B": {"request": 0.7749, "response": 0.7694},
    "GuardReasoner-VL-Eco-3B": {"request": 0.7739, "response": 0.7714},
    "LlamaGuard3-Vision-11B": {"request": 0.4803, "response": 0.5401},
    "Qwen2.5-VL-7B-Instruct": {"request": 0.5653, "response": 0.6158},
}
"""Sample-weighted average F1 over each task's benchmarks, as published."""


def normalise(name: str) -> str:
    """A benchmark's name for matching: its last path part, letters and digits, lower case; the
    authors' misspelling "Reponse" reads as "Response"."""
    base = name.rpartition("/")[2].lower().replace("reponse", "response")
    return re.sub(r"[^a-z0-9]", "", base)


def reference_rows(task: str, datasets: Iterable[str]) -> tuple[dict[str, float], str]:
    """The published averages for an average over ``datasets``, and why (or why not) they apply.

    Returns:
        ``({model: F1}, note)``; the dict is empty unless the datasets are exactly the paper's
        benchmarks of ``task``.
    """
    paper = BENCHMARKS.get(task)
    if paper is None:
        return {}, f"the paper publishes no {task} figures"
    have = {normalise(d) for d in datasets}
    want = {normalise(b): b for b in paper}
    missing = [name for key, name in want.items() if key not in have]
    extra = sorted(d for d in datasets if normalise(d) not in want)
    if missing or extra:
        parts = [f"missing {', '.join(missing)}"] if missing else []
        parts += [f"not in the paper: {', '.join(extra)}"] if extra else []
        return {}, (
            f"no paper reference for the {task} average: the paper averages its "
            f"{len(paper)} {task} benchmarks ({'; '.join(parts)})"
        )
    return (
        {model: figures[task] for model, figures in PUBLISHED.items()},
        f"paper reference: sample-weighted {task} F1 over the same {len(paper)} benchmarks",
    )
