"""Metrics over scored items: confusion matrix, F1, precision, recall, percentiles, PR curves.

One module over 400 lines on purpose: every figure of a task (confusion, curves, calibration) is
defined once, here.

Everything here is plain arithmetic on :class:`Outcome` lists, with no model and no I/O, so each
figure can be checked by hand. Conventions:

- The positive class is ``harmful`` (``refusal`` for the refusal task).
- An item the guard gave no readable label for (``predicted is None``) counts as wrong: as a
  false negative when the gold label is positive, a false positive when it is negative (as the
  paper's evaluation does). It is also counted in ``unparsed``.
- A ratio whose denominator is 0 is ``None`` (undefined), never silently 0 or 1:
  precision without predicted positives, recall without gold positives, F1 (``2TP / (2TP + FP +
  FN)``) when there is no positive at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from guardvl_sdk.evaluation.confidence import bootstrap, interval

__all__ = [
    "CalibrationBin",
    "Confusion",
    "Outcome",
    "PRPoint",
    "Task",
    "TaskMetrics",
    "average_precision",
    "calibration",
    "percentile",
    "pr_curve",
    "roc_auc",
    "task_metrics",
    "threshold_for",
    "weighted_average",
]

Task = Literal["request", "response", "refusal"]

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class Outcome:
    """One labelled item of one task, as the guard answered it.

    Attributes:
        gold: True when the gold label is the positive class (harmful, or refusal).
        predicted: The guard's label as a bool, or None when it gave no readable label.
        status: ``ok``, ``parse_error``, ``truncated`` or ``error`` (see
            :class:`~guardvl_sdk.Status`).
        score: The guard's probability of the positive class, when the backend gives one.
        output_tokens: Tokens the guard generated, when known.
        latency_ms: Wall time of the check, when measured.
        ref: Where the item comes from (a record id, or ``line N`` of a prediction file).
        input: The guard's input (the request, or the prediction file's prompt).
        output: The guard's generation, exactly as written.
        reasoning: The guard's reasoning, when it could be told apart from the answer.
        gold_categories: Violated categories according to the data.
        categories: Violated categories according to the guard.
        inconsistent: Whether the reasoning concludes otherwise than the result
            (:func:`~guardvl_sdk.evaluation.consistency.inconsistency`); None when it states
            no conclusion or the result has no label.
    """

    gold: bool
    predicted: bool | None
    status: str = "ok"
    score: float | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    ref: str = ""
    input: str | None = None
    output: str | None = None
    reasoning: str | None = None
    gold_categories: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    inconsistent: bool | None = None

    @property
    def correct(self) -> bool:
        """Whether the guard's label is the gold one (an unreadable label is wrong)."""
        return self.predicted is not None and self.predicted == self.gold


class _Share:
    """A rate ``part / (part + rest)`` of a confusion matrix, read as an attribute; None when
    the denominator is 0."""

    def __init__(self, part: str, rest: str, doc: str) -> None:
        self.part, self.rest, self.__doc__ = part, rest, doc

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> _Share: ...
    @overload
    def __get__(self, instance: _Rates, owner: type[Any]) -> float | None: ...
    def __get__(self, instance: _Rates | None, owner: type[Any]) -> float | _Share | None:
        if instance is None:
            return self
        matrix = instance._matrix()
        part = getattr(matrix, self.part)
        return _ratio(part, part + getattr(matrix, self.rest))


class _Rates:
    """The rates of a confusion matrix, one definition for every class that has one."""

    precision = _Share("tp", "fp", "TP / (TP + FP); None without predicted positives.")
    recall = _Share("tp", "fn", "TP / (TP + FN); None without gold positives.")
    fpr = _Share("fp", "tn", "FP / (FP + TN): gold negatives flagged; None without any.")
    fnr = _Share("fn", "tp", "FN / (FN + TP): gold positives missed; None without any.")

    def _matrix(self) -> Confusion:
        raise NotImplementedError

    @property
    def f1(self) -> float | None:
        """2TP / (2TP + FP + FN): the harmonic mean of precision and recall; None if no positive."""
        m = self._matrix()
        return _ratio(2 * m.tp, 2 * m.tp + m.fp + m.fn)

    @property
    def accuracy(self) -> float | None:
        """(TP + TN) / all: the share of items labelled right; None for no items."""
        m = self._matrix()
        return _ratio(m.tp + m.tn, m.total)


@dataclass(frozen=True)
class Confusion(_Rates):
    """A 2x2 confusion matrix (unreadable predictions already counted as wrong)."""

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    @classmethod
    def of(cls, outcomes: Iterable[Outcome]) -> Confusion:
        """Count ``outcomes``; an unreadable prediction counts as the opposite of the gold."""
        tp = fp = tn = fn = 0
        for item in outcomes:
            predicted = (not item.gold) if item.predicted is None else item.predicted
            if item.gold:
                tp, fn = (tp + 1, fn) if predicted else (tp, fn + 1)
            else:
                fp, tn = (fp + 1, tn) if predicted else (fp, tn + 1)
        return cls(tp=tp, fp=fp, tn=tn, fn=fn)

    @property
    def total(self) -> int:
        """All items."""
        return self.tp + self.fp + self.tn + self.fn

    def _matrix(self) -> Confusion:
        return self


@dataclass(frozen=True)
class PRPoint:
    """One point of a precision-recall curve: predict positive when ``score >= threshold``."""

    threshold: float
    precision: float
    recall: float


@dataclass(frozen=True)
class CalibrationBin:
    """One bin of a reliability diagram: items whose score lies in ``[low, high)``."""

    low: float
    high: float
    count: int
    mean_score: float
    positive_rate: float


@dataclass(frozen=True)
class TaskMetrics(_Rates):
    """Every figure of one task on one dataset.

    Attributes:
        n: Items.
        confusion: The confusion matrix; unreadable outputs count as wrong.
        positives: Gold positives (harmful, or refusal).
        unparsed: Items without a readable label (parse errors, truncations and backend errors).
        parse_errors: Outputs that finished but held no readable label.
        truncations: Outputs cut off by the token limit before their result.
        errors: Checks the backend failed on.
        mean_output_tokens: Mean generated tokens over items that report them, else None.
        latency_ms: Latency percentiles ``{"p50": ..., "p90": ..., "p99": ...}`` over items that
            report a latency (empty when none do).
        scored: Items with a score; the PR curve is drawn over them.
        pr_curve: Precision and recall at every distinct score threshold (empty without scores).
        intervals: Bootstrap 95% intervals ``(low, high)`` of ``f1``, ``precision`` and
            ``recall`` (None where the figure is undefined), see
            :mod:`~guardvl_sdk.evaluation.confidence`.
        average_precision: Area under the PR curve as scikit-learn's ``average_precision_score``
            computes it, over the scored items; None without scores or gold positives.
        roc_auc: Area under the ROC curve over the scored items; None without scores or without
            both classes.
        brier: Mean squared difference between score and gold (1 or 0) over the scored items.
        ece: Expected calibration error over :attr:`calibration`'s bins.
        calibration: The reliability diagram's bins (empty without scores).
        consistency_checked: Items whose reasoning states a conclusion the result can be
            compared with.
        inconsistent: Of those, the items whose reasoning concludes otherwise than the result.
        samples: The bootstrap resamples of each figure (for averaging intervals; not shown).
    """

    n: int
    confusion: Confusion
    positives: int
    unparsed: int
    parse_errors: int
    truncations: int
    errors: int
    mean_output_tokens: float | None
    latency_ms: dict[str, float] = field(default_factory=dict)
    scored: int = 0
    pr_curve: list[PRPoint] = field(default_factory=list)
    intervals: dict[str, tuple[float, float] | None] = field(default_factory=dict)
    average_precision: float | None = None
    roc_auc: float | None = None
    brier: float | None = None
    ece: float | None = None
    calibration: list[CalibrationBin] = field(default_factory=list)
    consistency_checked: int = 0
    inconsistent: int = 0
    samples: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def _matrix(self) -> Confusion:
        return self.confusion

    @property
    def inconsistency(self) -> float | None:
        """Share of checked items whose reasoning concludes otherwise than the result."""
        return _ratio(self.inconsistent, self.consistency_checked)


def task_metrics(
    outcomes: Sequence[Outcome], *, resamples: int = 1000, seed: int = 0
) -> TaskMetrics:
    """Compute every figure of one task from its outcomes.

    Args:
        outcomes: The task's items.
        resamples: Bootstrap resamples for the intervals (0: no intervals).
        seed: Seed of the bootstrap, so intervals are reproducible.
    """
    statuses = [item.status for item in outcomes]
    tokens = [item.output_tokens for item in outcomes if item.output_tokens is not None]
    latencies = [item.latency_ms for item in outcomes if item.latency_ms is not None]
    scored = [(item.score, item.gold) for item in outcomes if item.score is not None]
    checked = [item.inconsistent for item in outcomes if item.inconsistent is not None]
    labels = [(item.gold, item.predicted) for item in outcomes]
    samples = bootstrap(labels, resamples=resamples, seed=seed) if resamples else {}
    bins = calibration(scored)
    return TaskMetrics(
        n=len(outcomes),
        confusion=Confusion.of(outcomes),
        positives=sum(item.gold for item in outcomes),
        unparsed=sum(item.predicted is None for item in outcomes),
        parse_errors=statuses.count("parse_error"),
        truncations=statuses.count("truncated"),
        errors=statuses.count("error"),
        mean_output_tokens=sum(tokens) / len(tokens) if tokens else None,
        latency_ms={f"p{q}": percentile(latencies, q) for q in PERCENTILES} if latencies else {},
        scored=len(scored),
        pr_curve=pr_curve(scored),
        intervals={name: interval(values) for name, values in samples.items()},
        average_precision=average_precision(scored),
        roc_auc=roc_auc(scored),
        brier=sum((s - g) ** 2 for s, g in scored) / len(scored) if scored else None,
        ece=sum(b.count * abs(b.mean_score - b.positive_rate) for b in bins) / len(scored)
        if scored
        else None,
        calibration=bins,
        consistency_checked=len(checked),
        inconsistent=sum(checked),
        samples=samples,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile with linear interpolation between ranks (numpy's default).

    Raises:
        ValueError: ``values`` is empty or ``q`` is outside [0, 100].
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside [0, 100]")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def pr_curve(scored: Iterable[tuple[float, bool]]) -> list[PRPoint]:
    """Precision and recall at every distinct score, highest threshold first.

    At threshold ``t`` an item is predicted positive when its score is ``>= t``. Empty when no
    item is a gold positive (recall is undefined).
    """
    items = sorted(scored, key=lambda pair: pair[0], reverse=True)
    positives = sum(gold for _, gold in items)
    if not positives:
        return []
    points: list[PRPoint] = []
    tp = fp = 0
    for index, (score, gold) in enumerate(items):
        tp, fp = (tp + 1, fp) if gold else (tp, fp + 1)
        if index + 1 < len(items) and items[index + 1][0] == score:
            continue  # ties share one threshold
        points.append(PRPoint(threshold=score, precision=tp / (tp + fp), recall=tp / positives))
    return points


def threshold_for(
    curve: Sequence[PRPoint], *, precision: float | None = None, recall: float | None = None
) -> PRPoint | None:
    """The operating point that meets a target, or None when no threshold does.

    With ``precision``: the point of highest recall whose precision is at least the target.
    With ``recall``: the point of highest precision whose recall is at least the target.
    Ties go to the higher threshold.
    """
    if (precision is None) == (recall is None):
        raise ValueError("give exactly one of precision= or recall=")
    if precision is not None:
        meeting = [p for p in curve if p.precision >= precision]
        return max(meeting, key=lambda p: (p.recall, p.threshold), default=None)
    assert recall is not None
    meeting = [p for p in curve if p.recall >= recall]
    return max(meeting, key=lambda p: (p.precision, p.threshold), default=None)


def average_precision(scored: Iterable[tuple[float, bool]]) -> float | None:
    """Average precision: ``sum((R_k - R_{k-1}) * P_k)`` over the PR curve, highest threshold first.

    The definition of scikit-learn's ``average_precision_score`` (no interpolation; tied scores
    share one threshold). None without a gold positive.
    """
    curve = pr_curve(scored)
    if not curve:
        return None
    total, previous = 0.0, 0.0
    for point in curve:
        total += (point.recall - previous) * point.precision
        previous = point.recall
    return total


def roc_auc(scored: Iterable[tuple[float, bool]]) -> float | None:
    """Area under the ROC curve: the chance a gold positive scores above a gold negative.

    Ties count one half (the Mann-Whitney statistic, equal to scikit-learn's ``roc_auc_score``).
    None unless both classes are present.
    """
    items = sorted(scored, key=lambda pair: pair[0])
    positives = sum(gold for _, gold in items)
    negatives = len(items) - positives
    if not positives or not negatives:
        return None
    rank_sum, start = 0.0, 0
    while start < len(items):  # average ranks (1-based) over runs of tied scores
        end = start
        while end + 1 < len(items) and items[end + 1][0] == items[start][0]:
            end += 1
        mean_rank = (start + end) / 2 + 1
        rank_sum += mean_rank * sum(gold for _, gold in items[start : end + 1])
        start = end + 1
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def calibration(scored: Iterable[tuple[float, bool]], bins: int = 10) -> list[CalibrationBin]:
    """The reliability diagram: ``bins`` equal-width score bins over [0, 1], empty ones left out.

    Each bin holds the mean score of its items and the share of them that are gold positives;
    a calibrated guard has the two equal. A score of 1 falls in the last bin.
    """
    grouped: dict[int, list[tuple[float, bool]]] = {}
    for score, gold in scored:
        grouped.setdefault(min(int(score * bins), bins - 1), []).append((score, gold))
    return [
        CalibrationBin(
            low=index / bins,
            high=(index + 1) / bins,
            count=len(members),
            mean_score=sum(s for s, _ in members) / len(members),
            positive_rate=sum(g for _, g in members) / len(members),
        )
        for index, members in sorted(grouped.items())
    ]


def weighted_average(pairs: Iterable[tuple[float | None, int]]) -> float | None:
    """Sample-weighted mean of ``(value, weight)`` pairs, skipping undefined values.

    The paper averages F1 over benchmarks weighted by their item counts. None when no pair has
    a value.
    """
    defined = [(value, weight) for value, weight in pairs if value is not None]
    total = sum(weight for _, weight in defined)
    if not total:
        return None
    return sum(value * weight for value, weight in defined) / total


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None
