"""How sure a figure is: bootstrap intervals, and McNemar's test between two runs.

- **Intervals**: the items of a task are resampled with replacement ``resamples`` times (1000 by
  default) with a seeded generator, F1, precision and recall are computed on every resample, and
  the 95% interval is the 2.5th to 97.5th percentile of the resamples where the figure is defined
  (the percentile bootstrap). The same seed gives the same interval. An average's interval
  resamples each dataset the same way and averages resample by resample.
- **Compared runs**: McNemar's exact test on per-item correctness: of the items exactly one run
  gets right, is the split further from even than chance would make it? (A two-sided binomial
  test with p = 1/2 on the discordant items.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = ["LEVEL", "bootstrap", "interval", "mcnemar", "weighted_samples"]

LEVEL = 0.95
"""The confidence level of every interval."""

FIGURES = ("f1", "precision", "recall")


def bootstrap(
    labels: Sequence[tuple[bool, bool | None]], *, resamples: int, seed: int
) -> dict[str, Any]:
    """F1, precision and recall on ``resamples`` bootstrap resamples of ``labels``.

    Args:
        labels: One ``(gold, predicted)`` pair per item, True for the positive class;
            ``predicted`` is None where the guard gave no readable label.
        resamples: How many resamples.
        seed: Seed of the generator.

    Returns:
        ``{figure: array of resamples}``, NaN where a resample leaves the figure undefined;
        empty for no items.
    """
    if not labels:
        return {}
    gold = np.array([g for g, _ in labels], dtype=bool)
    # An unreadable label counts as wrong, as in the point estimate.
    predicted = np.array([(not g) if p is None else p for g, p in labels], dtype=bool)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(labels), size=(resamples, len(labels)))
    g, p = gold[picks], predicted[picks]
    tp = (g & p).sum(axis=1)
    fp = (~g & p).sum(axis=1)
    fn = (g & ~p).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "f1": np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan),
            "precision": np.where(tp + fp > 0, tp / (tp + fp), np.nan),
            "recall": np.where(tp + fn > 0, tp / (tp + fn), np.nan),
        }


def interval(samples: Any, level: float = LEVEL) -> tuple[float, float] | None:
    """The percentile interval of the defined resamples; None when fewer than half are defined."""
    values = np.asarray(samples, dtype=float)
    defined = values[~np.isnan(values)]
    if not len(defined) or len(defined) < len(values) / 2:
        return None
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(defined, [tail, 100 - tail])
    return float(low), float(high)


def weighted_samples(parts: Sequence[tuple[Any, int]]) -> Any:
    """Resample-by-resample weighted average of several datasets' resamples.

    ``parts`` pairs each dataset's resamples with its item count; in each resample, datasets
    where the figure is undefined are left out (as for the point average).
    """
    stacked = np.array([values for values, _ in parts], dtype=float)
    weights = np.array([[weight] for _, weight in parts], dtype=float) * ~np.isnan(stacked)
    with np.errstate(divide="ignore", invalid="ignore"):
        total = weights.sum(axis=0)
        return np.where(total > 0, np.nansum(stacked * weights, axis=0) / total, np.nan)


def mcnemar(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value for ``only_a`` items only run A gets right and ``only_b``
    items only run B gets right (1.0 when no item differs)."""
    discordant = only_a + only_b
    if not discordant:
        return 1.0
    k = min(only_a, only_b)
    # Exact integer arithmetic: 2**discordant overflows a float past about 1000 items.
    tail = Fraction(sum(math.comb(discordant, i) for i in range(k + 1)), 2**discordant)
    return min(1.0, float(2 * tail))
