"""The report's pictures (matplotlib, drawn off-screen, at least 1400 px wide).

- :func:`run_figure`: one combined figure per run: F1 per dataset and task with its 95%
  interval, and a row-normalised confusion matrix per dataset and task with counts, the
  unparsed items in a column of their own.
- :func:`scores_figure`: where verdicts carry scores: the PR curve with the operating point of
  the guard's own labels (and the ``--target-*`` thresholds), F1/precision/recall against the
  threshold, and the reliability diagram.
- :func:`categories_figure`: the confusion between categories, row-normalised.
- :func:`compare_figure`: F1 per dataset and task per run, with intervals and reference marks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardvl_sdk.evaluation.metrics import Outcome, TaskMetrics
from guardvl_sdk.evaluation.results import NEGATIVE, POSITIVE

if TYPE_CHECKING:
    from guardvl_sdk.evaluation.results import DatasetResult, EvalResult

__all__ = ["categories_figure", "compare_figure", "run_figure", "scores_figure"]

WIDTH = 14.0  # inches; at DPI this is 1400 px
DPI = 100


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_counts(outcomes: Sequence[Outcome]) -> list[list[int]]:
    """Rows gold positive / negative; columns predicted positive / negative / unparsed."""
    grid = [[0, 0, 0], [0, 0, 0]]
    for o in outcomes:
        column = 2 if o.predicted is None else 0 if o.predicted else 1
        grid[0 if o.gold else 1][column] += 1
    return grid


def run_figure(result: EvalResult, path: Path) -> Path:
    """F1 with intervals and every confusion matrix of a run, in one PNG."""
    plt = _pyplot()
    tasks = [(d, task, m) for d in result.datasets for task, m in d.metrics.items()]
    columns = 3
    grid_rows = math.ceil(len(tasks) / columns)
    bar_height = 1.2 + 0.32 * len(tasks)
    fig = plt.figure(figsize=(WIDTH, bar_height + 3.0 * grid_rows))
    layout = fig.add_gridspec(
        1 + grid_rows, columns, height_ratios=[bar_height] + [3.0] * grid_rows
    )

    ax = fig.add_subplot(layout[0, :])
    names = [f"{d.name} ({task}, n={m.n})" for d, task, m in tasks]
    _f1_bars(ax, names, [[m for _, _, m in tasks]], [result.label or "run"], single=True)
    ax.set_title(f"{result.label or 'run'}: F1 per dataset with 95% bootstrap interval", loc="left")

    for index, (dataset, task, metrics) in enumerate(tasks):
        ax = fig.add_subplot(layout[1 + index // columns, index % columns])
        _confusion(ax, dataset, task, metrics)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _confusion(ax: Any, dataset: DatasetResult, task: str, metrics: TaskMetrics) -> None:
    counts = confusion_counts(dataset.outcomes[task])  # type: ignore[index]
    shares = [[c / sum(row) if sum(row) else 0.0 for c in row] for row in counts]
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i, row in enumerate(counts):
        for j, count in enumerate(row):
            share = shares[i][j]
            text = f"{100 * share:.1f}%\n({count})" if sum(row) else "-"
            color = "white" if share > 0.6 else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=11, color=color)
    positive, negative = POSITIVE[task], NEGATIVE[task]
    ax.set_xticks([0, 1, 2], [positive, negative, "unparsed"])
    ax.set_yticks([0, 1], [f"{positive}\n({sum(counts[0])})", f"{negative}\n({sum(counts[1])})"])
    ax.set_xlabel("guard's label")
    ax.set_ylabel("gold")
    f1 = "n/a" if metrics.f1 is None else f"{100 * metrics.f1:.2f}"
    ax.set_title(f"{dataset.name} ({task})  F1 {f1}", fontsize=10)


def _f1_bars(
    ax: Any,
    names: list[str],
    runs: list[list[TaskMetrics | dict[str, Any] | None]],
    labels: list[str],
    *,
    single: bool = False,
    reference: list[float | None] | None = None,
) -> None:
    """F1 (in %) as points with interval whiskers, one colour per run, the axis zoomed to the data
    (points, not bars, so a zoomed axis does not exaggerate differences)."""
    count = len(runs)
    step = 0.7 / count
    lowest = 100.0
    for r, (run, label) in enumerate(zip(runs, labels, strict=True)):
        ys, values, low, high = [], [], [], []
        for i, figures in enumerate(run):
            value, span = _f1_and_span(figures)
            if value is None:
                continue
            ys.append(i - 0.35 + step * (r + 0.5) if count > 1 else i)
            values.append(100 * value)
            low.append(100 * (value - span[0]) if span else 0.0)
            high.append(100 * (span[1] - value) if span else 0.0)
            lowest = min(lowest, 100 * (span[0] if span else value))
        ax.errorbar(values, ys, xerr=[low, high], fmt="o", capsize=3, ms=6, label=label,
                    color="#4c72b0" if single else None)  # fmt: skip
        for y, v, h in zip(ys, values, high, strict=True):
            ax.annotate(f"{v:.2f}", (v + h, y), xytext=(4, 0), textcoords="offset points",
                        va="center", fontsize=8)  # fmt: skip
    if reference:
        marks = [(i, 100 * v) for i, v in enumerate(reference) if v is not None]
        if marks:
            ax.plot([v for _, v in marks], [i for i, _ in marks], "kD", label="paper")
            lowest = min(lowest, *(v for _, v in marks))
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names) - 1):
        ax.axhline(i + 0.5, color="#dddddd", lw=0.8)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlim(max(0.0, 10 * math.floor(lowest / 10 - 0.2)), 101.5)
    ax.set_xlabel("F1 (%), harmful positive; whiskers: 95% bootstrap interval")
    ax.grid(axis="x", alpha=0.3)
    if not single or reference:
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.02), ncol=len(labels) + 1, fontsize=9,
                  frameon=False)  # fmt: skip


def _f1_and_span(
    figures: TaskMetrics | dict[str, Any] | None,
) -> tuple[float | None, tuple[float, float] | None]:
    if figures is None:
        return None, None
    if isinstance(figures, TaskMetrics):
        return figures.f1, figures.intervals.get("f1")
    span = (figures.get("intervals") or {}).get("f1")
    return figures.get("f1"), (span[0], span[1]) if span else None


def scores_figure(result: EvalResult, path: Path) -> Path | None:
    """PR curve, threshold sweep and reliability diagram per scored task; None without scores."""
    scored = [(d, task, m) for d in result.datasets for task, m in d.metrics.items() if m.pr_curve]
    if not scored:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(scored), 3, figsize=(WIDTH + 1, 4.2 * len(scored)), squeeze=False)
    for (dataset, task, m), (pr, sweep, reliability) in zip(scored, axes, strict=True):
        title = f"{dataset.name} ({task}, {m.scored} scored)"
        pr.plot([p.recall for p in m.pr_curve], [p.precision for p in m.pr_curve], ".-", lw=1)
        if m.precision is not None and m.recall is not None:
            pr.plot([m.recall], [m.precision], "r*", ms=14, label="the guard's labels")
        for marker, (target, point) in zip("s^", result.operating_points(m).items(), strict=False):
            if point is not None:
                label = f"{target}: score >= {point.threshold:.3f}"
                pr.plot([point.recall], [point.precision], marker, color="green", ms=9, label=label)
        ap = "n/a" if m.average_precision is None else f"{m.average_precision:.3f}"
        auc = "n/a" if m.roc_auc is None else f"{m.roc_auc:.3f}"
        pr.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02))
        pr.set_title(f"{title}\nAP {ap}, ROC AUC {auc}", fontsize=10)
        pr.legend(fontsize=8, loc="lower left")
        pr.grid(alpha=0.3)

        thresholds = [p.threshold for p in m.pr_curve]
        f1 = [
            2 * p.precision * p.recall / (p.precision + p.recall) if p.precision + p.recall else 0
            for p in m.pr_curve
        ]
        sweep.plot(thresholds, [p.precision for p in m.pr_curve], label="precision")
        sweep.plot(thresholds, [p.recall for p in m.pr_curve], label="recall")
        sweep.plot(thresholds, f1, label="F1", lw=2)
        sweep.set(xlabel="threshold: flag when score >= t", xlim=(0, 1), ylim=(0, 1.02))
        sweep.set_title("F1, precision, recall against the threshold", fontsize=10)
        sweep.legend(fontsize=8)
        sweep.grid(alpha=0.3)

        reliability.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
        bins = m.calibration
        reliability.bar([b.low for b in bins], [b.positive_rate for b in bins],
                        width=[b.high - b.low for b in bins], align="edge", alpha=0.6,
                        edgecolor="black", label="share gold positive")  # fmt: skip
        reliability.plot([b.mean_score for b in bins], [b.positive_rate for b in bins], "ro-",
                         ms=4, label="mean score")  # fmt: skip
        ece = "n/a" if m.ece is None else f"{m.ece:.3f}"
        brier = "n/a" if m.brier is None else f"{m.brier:.3f}"
        reliability.set(xlabel="score", ylabel="share gold positive", xlim=(0, 1), ylim=(0, 1))
        reliability.set_title(f"reliability: ECE {ece}, Brier {brier}", fontsize=10)
        reliability.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def categories_figure(result: EvalResult, path: Path) -> Path | None:
    """The category confusion of every dataset that names categories; None when none does."""
    grids = [(d.name, d.category_confusion()) for d in result.datasets]
    grids = [(name, grid) for name, grid in grids if grid]
    if not grids:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(grids), 1, figsize=(WIDTH * 0.7, 5.5 * len(grids)), squeeze=False)
    for (name, grid), (ax,) in zip(grids, axes, strict=True):
        rows = sorted(grid)
        columns = sorted({c for row in grid.values() for c in row})
        counts = [[grid[r].get(c, 0) for c in columns] for r in rows]
        shares = [[v / sum(row) if sum(row) else 0.0 for v in row] for row in counts]
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        for i, row in enumerate(counts):
            for j, v in enumerate(row):
                color = "white" if shares[i][j] > 0.6 else "black"
                ax.text(j, i, f"{100 * shares[i][j]:.0f}%\n({v})", ha="center", va="center",
                        fontsize=9, color=color)  # fmt: skip
        ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
        ax.set_yticks(range(len(rows)), rows)
        ax.set(xlabel="guard's categories", ylabel="gold categories")
        ax.set_title(f"{name}: categories (row-normalised, counts in brackets)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def compare_figure(
    names: list[str],
    runs: list[list[dict[str, Any] | None]],
    labels: list[str],
    reference: list[float | None],
    path: Path,
) -> Path:
    """F1 per row (dataset and task, then averages) per run, with intervals."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH, 1.5 + 0.22 * len(names) * max(2, len(runs))))
    _f1_bars(ax, names, runs, labels, reference=reference)  # type: ignore[arg-type]
    ax.set_title(f"F1 per dataset and run ({', '.join(labels)})", loc="left", pad=28)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
