"""What an evaluation produces: figures per dataset and task, and sample-weighted averages."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardvl_sdk.evaluation.confidence import FIGURES, LEVEL, interval, weighted_samples
from guardvl_sdk.evaluation.metrics import (
    Confusion,
    Outcome,
    PRPoint,
    Task,
    TaskMetrics,
    task_metrics,
    threshold_for,
    weighted_average,
)

__all__ = ["CONVENTION", "DatasetResult", "EvalResult"]

TASKS: tuple[Task, ...] = ("request", "response", "refusal")
POSITIVE = {"request": "harmful", "response": "harmful", "refusal": "refusal"}
NEGATIVE = {"request": "unharmful", "response": "unharmful", "refusal": "compliance"}
NO_CATEGORY = "(none)"

CONVENTION = (
    "Labels are read with Policy.parse from the guard's closed result block (exactly one "
    "Request:/Response: label per task; prediction files are also read in the text-only "
    "GuardReasoner format, the last label of each kind). An output with no readable label "
    "for the task counts as wrong, as the paper does (a false negative on a harmful item, a false "
    "positive on an unharmful one), and is also counted as unparsed. Positive class: harmful "
    "(refusal for the refusal task). A ratio with a zero denominator is n/a. Averages are "
    "weighted by item count, over the datasets where the figure is defined."
)


@dataclass(frozen=True)
class DatasetResult:
    """Every task measured on one dataset.

    Attributes:
        name: The dataset's name (its file or folder name, see :func:`discover`).
        path: The file it was read from.
        outcomes: The scored items of each task, in file order.
        unlabelled: Items that had no gold label for any task (not scored).
        resamples: Bootstrap resamples for the intervals.
        seed: The bootstrap's seed.
    """

    name: str
    path: Path
    outcomes: dict[Task, list[Outcome]]
    unlabelled: int = 0
    resamples: int = 1000
    seed: int = 0
    metrics: dict[Task, TaskMetrics] = field(init=False)

    def __post_init__(self) -> None:
        computed = {
            task: task_metrics(items, resamples=self.resamples, seed=self.seed)
            for task, items in self.outcomes.items()
        }
        object.__setattr__(self, "metrics", computed)

    def category_scores(self) -> dict[str, Confusion]:
        """Per category, over the items where the data or the guard names categories.

        An item counts as a true positive of a category the data and the guard both name, a
        false positive of one only the guard names, a false negative of one only the data
        names (``tn`` is not counted). Empty when no item names a category.
        """
        counts: dict[str, list[int]] = {}
        for item in self._categorised():
            gold, said = set(item.gold_categories), set(item.categories)
            for name in gold | said:
                tp_fp_fn = counts.setdefault(name, [0, 0, 0])
                tp_fp_fn[0 if name in gold and name in said else 1 if name in said else 2] += 1
        return {
            name: Confusion(tp=tp, fp=fp, fn=fn) for name, (tp, fp, fn) in sorted(counts.items())
        }

    def category_confusion(self) -> dict[str, dict[str, int]]:
        """``{gold category: {guard's category: items}}``, ``(none)`` for no category.

        An item naming several categories counts once for each (gold, guard) pair.
        """
        grid: dict[str, dict[str, int]] = {}
        for item in self._categorised():
            for gold in item.gold_categories or (NO_CATEGORY,):
                row = grid.setdefault(gold, {})
                for said in item.categories or (NO_CATEGORY,):
                    row[said] = row.get(said, 0) + 1
        return grid

    def _categorised(self) -> list[Outcome]:
        """Each item once (a record scored on two tasks is one item), if any names a category."""
        seen: dict[str, Outcome] = {}
        for items in self.outcomes.values():
            for item in items:
                seen.setdefault(item.ref, item)
        found = list(seen.values())
        return found if any(o.gold_categories or o.categories for o in found) else []

    @property
    def group(self) -> str:
        """The folder part of the name (``8B`` for ``8B/ToxicChat``); ``all`` at the top level."""
        parent = self.name.rpartition("/")[0]
        return parent or "all"


@dataclass(frozen=True)
class EvalResult:
    """The result of ``guardvl eval``: figures per dataset and task, and averages.

    Attributes:
        datasets: One result per dataset, by name.
        source: ``"predictions"`` (existing generations scored) or ``"model"`` (a guard was run).
        model: The guard's model id, for a model run.
        notes: Conventions and facts a reader needs (the convention, the task of each file...).
        target_precision: Report the score threshold that meets this precision, when scores exist.
        target_recall: Report the score threshold that meets this recall, when scores exist.
        label: A short name for the run (``--compare`` shows it).
    """

    datasets: list[DatasetResult]
    source: str
    model: str | None = None
    notes: list[str] = field(default_factory=list)
    target_precision: float | None = None
    target_recall: float | None = None
    label: str | None = None

    def items(self) -> Iterator[dict[str, Any]]:
        """Every scored item of every dataset and task, as written to ``items.jsonl``."""
        for d in self.datasets:
            for task, outcomes in d.outcomes.items():
                for o in outcomes:
                    yield {
                        "dataset": d.name,
                        "task": task,
                        "ref": o.ref,
                        "gold": POSITIVE[task] if o.gold else NEGATIVE[task],
                        "predicted": None
                        if o.predicted is None
                        else POSITIVE[task]
                        if o.predicted
                        else NEGATIVE[task],
                        "correct": o.correct,
                        "status": o.status,
                        "score": o.score,
                        "output_tokens": o.output_tokens,
                        "latency_ms": o.latency_ms,
                        "gold_categories": list(o.gold_categories),
                        "categories": list(o.categories),
                        "inconsistent": o.inconsistent,
                        "input": o.input,
                        "reasoning": o.reasoning,
                        "output": o.output,
                    }

    def averages(self) -> dict[str, dict[Task, dict[str, Any]]]:
        """Sample-weighted averages per group of datasets (their folder) and task."""
        groups: dict[str, dict[Task, list[TaskMetrics]]] = {}
        names: dict[str, dict[Task, list[str]]] = {}
        for dataset in self.datasets:
            for task, metrics in dataset.metrics.items():
                groups.setdefault(dataset.group, {}).setdefault(task, []).append(metrics)
                names.setdefault(dataset.group, {}).setdefault(task, []).append(dataset.name)
        return {
            group: {
                task: _average(tasks[task], names[group][task]) for task in TASKS if task in tasks
            }
            for group, tasks in groups.items()
        }

    def operating_points(self, metrics: TaskMetrics) -> dict[str, PRPoint | None]:
        """The thresholds that meet the targets, for a task with scores."""
        points: dict[str, PRPoint | None] = {}
        if not metrics.pr_curve:
            return points
        if self.target_precision is not None:
            points[f"precision>={self.target_precision:g}"] = threshold_for(
                metrics.pr_curve, precision=self.target_precision
            )
        if self.target_recall is not None:
            points[f"recall>={self.target_recall:g}"] = threshold_for(
                metrics.pr_curve, recall=self.target_recall
            )
        return points

    def to_json(self) -> dict[str, Any]:
        """Every figure, keyed by dataset name and task (see docs/evaluation.md)."""
        return {
            "source": self.source,
            "model": self.model,
            "label": self.label,
            "convention": CONVENTION,
            "notes": self.notes,
            "confidence": {
                "level": LEVEL,
                "method": "percentile bootstrap over items",
                "resamples": self.datasets[0].resamples if self.datasets else None,
                "seed": self.datasets[0].seed if self.datasets else None,
            },
            "datasets": {
                d.name: {
                    "path": str(d.path),
                    "unlabelled": d.unlabelled,
                    **_categories_json(d),
                    **{
                        task: self._metrics_json(task, metrics)
                        for task, metrics in d.metrics.items()
                    },
                }
                for d in self.datasets
            },
            "averages": self.averages(),
        }

    def _metrics_json(self, task: Task, m: TaskMetrics) -> dict[str, Any]:
        c = m.confusion
        points = self.operating_points(m)
        return {
            "positive_class": POSITIVE[task],
            "n": m.n,
            "positives": m.positives,
            "f1": m.f1,
            "precision": m.precision,
            "recall": m.recall,
            "accuracy": m.accuracy,
            "fpr": m.fpr,
            "fnr": m.fnr,
            "intervals": {k: list(v) if v else None for k, v in m.intervals.items()},
            "confusion": {"tp": c.tp, "fp": c.fp, "tn": c.tn, "fn": c.fn},
            "unparsed": m.unparsed,
            "parse_errors": m.parse_errors,
            "truncations": m.truncations,
            "errors": m.errors,
            "mean_output_tokens": m.mean_output_tokens,
            "latency_ms": m.latency_ms,
            "scored": m.scored,
            "average_precision": m.average_precision,
            "roc_auc": m.roc_auc,
            "brier": m.brier,
            "ece": m.ece,
            "calibration": [vars(b) for b in m.calibration],
            "pr_curve": [vars(p) for p in m.pr_curve],
            "thresholds": {k: (vars(p) if p else None) for k, p in points.items()},
            "consistency_checked": m.consistency_checked,
            "inconsistent": m.inconsistent,
            "inconsistency": m.inconsistency,
        }


def _categories_json(d: DatasetResult) -> dict[str, Any]:
    scores = d.category_scores()
    if not scores:
        return {}
    return {
        "categories": {
            name: {
                "tp": c.tp,
                "fp": c.fp,
                "fn": c.fn,
                "precision": c.precision,
                "recall": c.recall,
                "f1": c.f1,
            }
            for name, c in scores.items()
        },
        "category_confusion": d.category_confusion(),
    }


def _average(metrics: Sequence[TaskMetrics], names: list[str]) -> dict[str, Any]:
    intervals: dict[str, list[float] | None] = {}
    for figure in FIGURES:
        parts = [(m.samples[figure], m.n) for m in metrics if figure in m.samples]
        span = interval(weighted_samples(parts)) if len(parts) == len(metrics) else None
        intervals[figure] = list(span) if span else None
    return {
        "datasets": names,
        "n": sum(m.n for m in metrics),
        **{
            count: sum(getattr(m, count) for m in metrics)
            for count in ("unparsed", "parse_errors", "truncations", "errors")
        },
        **{
            figure: weighted_average((getattr(m, figure), m.n) for m in metrics)
            for figure in ("f1", "precision", "recall", "accuracy", "fpr", "fnr")
        },
        "intervals": intervals,
    }
