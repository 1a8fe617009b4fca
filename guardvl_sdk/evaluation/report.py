"""Showing an :class:`EvalResult`: a terminal table, JSON, per-item JSONL, a report with plots.

The report (``report.md`` and a self-contained ``report.html``) shows the figures with their
intervals, flags single-class datasets, the score thresholds, reasoning consistency, categories,
one combined figure per run, and the items the guard got wrong with its reasoning.

Plots need matplotlib (``pip install "guardvl-sdk[eval]"``); without it the report is written
without them and says so.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from guardvl_sdk.evaluation.confidence import FIGURES
from guardvl_sdk.evaluation.document import Document, cut
from guardvl_sdk.evaluation.metrics import Outcome, Task, TaskMetrics
from guardvl_sdk.evaluation.results import CONVENTION, NEGATIVE, POSITIVE, EvalResult

__all__ = ["format_table", "write_items", "write_json", "write_report"]

_COLUMNS = (
    ("dataset", "<"), ("task", "<"), ("n", ">"), ("F1", ">"), ("prec", ">"), ("recall", ">"),
    ("acc", ">"), ("F1 95% CI", ">"), ("TP", ">"), ("FP", ">"), ("TN", ">"), ("FN", ">"),
    ("parse", ">"), ("trunc", ">"), ("err", ">"), ("tokens", ">"), ("p50/p90/p99 ms", ">"),
)  # fmt: skip


def format_table(result: EvalResult) -> str:
    """The figures as a plain-text table, with the convention and notes above it."""
    rows = [
        [*(row := _row(d.name, task, m))[:7], _span(m.intervals.get("f1")), *row[7:]]
        for d in result.datasets
        for task, m in d.metrics.items()
    ]
    figures = ("f1", "precision", "recall", "accuracy")
    averages = [
        [group, task, str(a["n"]), *(_pct(a[f]) for f in figures), _span(a["intervals"]["f1"])]
        + [""] * 9
        for group, tasks in result.averages().items()
        for task, a in tasks.items()
    ]
    width = [len(name) for name, _ in _COLUMNS]
    for row in rows + averages:
        width = [max(w, len(cell)) for w, cell in zip(width, row, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            f"{cell:{align}{w}}" for cell, (_, align), w in zip(cells, _COLUMNS, width, strict=True)
        ).rstrip()

    out = [
        f"guardvl eval: {len(result.datasets)} dataset(s), {_source(result)}. "
        "F1, precision, recall, accuracy in %; positive class harmful (refusal for refusal).",
        _wrap(f"Convention: {CONVENTION}"),
        *(_wrap(f"Note: {note}") for note in result.notes),
        *(_wrap(f"Flag: {flag}") for flag in _flags(result)),
        "",
        line([name for name, _ in _COLUMNS]),
        *(line(row) for row in rows),
        "",
        "Sample-weighted averages (by item count) per folder and task:",
        *(line(row) for row in averages),
        *_threshold_lines(result),
    ]
    return "\n".join(out)


def write_json(result: EvalResult, path: str | Path) -> Path:
    """Write every figure as JSON (keyed by dataset name, then task) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n")
    return path


def write_items(result: EvalResult, path: str | Path) -> Path:
    """Write every scored item (:meth:`EvalResult.items`) as JSONL to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as sink:
        for item in result.items():
            sink.write(json.dumps(item) + "\n")  # ASCII: no raw U+2028 line breaks
    return path


def write_report(result: EvalResult, directory: str | Path, *, show: int = 20) -> Path:
    """Write ``report.md`` and a self-contained ``report.html`` (plots in ``plots/``).

    Args:
        result: The evaluation.
        directory: The output folder.
        show: At most this many misclassified and unparsed items per dataset, task and kind
            (every item is in ``items.jsonl``).

    Returns:
        The path of ``report.md``.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    doc = Document(f"guardvl eval report{f': {result.label}' if result.label else ''}")
    doc.paragraph(f"Source: {_source(result)}. Every item is in `items.jsonl`.")
    doc.paragraph(f"**Convention.** {CONVENTION}")
    doc.paragraph(f"**Confidence.** {CONFIDENCE}")
    doc.bullets(result.notes + _flags(result))

    doc.heading("Figures")
    doc.paragraph("F1, precision, recall, accuracy and FPR in %; brackets: 95% interval.")
    scored = any(m.scored for d in result.datasets for m in d.metrics.values())
    header = ["dataset", "task", "n", "F1", "precision", "recall", "accuracy", "FPR", "TP", "FP",
              "TN", "FN", "parse errors", "truncated", "errors", "mean tokens",
              "latency p50/p90/p99 ms"]  # fmt: skip
    rows = []
    for d in result.datasets:
        for task, m in d.metrics.items():
            row = _row(d.name, task, m)
            row[3:6] = [_with_interval(getattr(m, f), m.intervals.get(f)) for f in FIGURES]
            row.insert(7, _pct(m.fpr))
            if scored:
                row += [_num(m.average_precision), _num(m.roc_auc), _num(m.ece)]
            rows.append(row)
    doc.table(header + (["AP", "ROC AUC", "ECE"] if scored else []), rows)

    doc.heading("Sample-weighted averages")
    doc.table(
        ["folder", "task", "datasets", "n", "F1", "precision", "recall", "accuracy", "unparsed"],
        [
            [
                group,
                task,
                str(len(a["datasets"])),
                str(a["n"]),
                *(_with_interval(a[f], a["intervals"].get(f)) for f in FIGURES),
                _pct(a["accuracy"]),
                str(a["unparsed"]),
            ]
            for group, tasks in result.averages().items()
            for task, a in tasks.items()
        ],
    )
    thresholds = _threshold_lines(result)
    if thresholds:
        doc.heading("Score thresholds for the targets")
        doc.bullets(thresholds)
    _consistency(doc, result)
    _categories(doc, result)

    doc.heading("Plots")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        doc.paragraph(
            'Plots not drawn: matplotlib is not installed (`pip install "guardvl-sdk[eval]"`).'
        )
    else:
        from guardvl_sdk.evaluation import plots

        folder = out / "plots"
        folder.mkdir(exist_ok=True)
        doc.image(plots.run_figure(result, folder / "overview.png"), out, "F1 and confusion")
        for drawn, alt in (
            (plots.scores_figure(result, folder / "scores.png"), "scores"),
            (plots.categories_figure(result, folder / "categories.png"), "categories"),
        ):
            if drawn is not None:
                doc.image(drawn, out, alt)

    doc.heading("Items the guard got wrong")
    doc.paragraph(
        f"Per dataset and task, at most {show} of each kind, in file order; `items.jsonl` has "
        "all. Texts are cut to 400 characters."
    )
    for d in result.datasets:
        for task, outcomes in d.outcomes.items():
            _wrong_items(doc, d.name, task, outcomes, show)
    md, _ = doc.write(out, "report")
    return md


CONFIDENCE = (
    "Intervals are 95% percentile-bootstrap intervals over the items (1000 resamples, seeded: "
    "the same data and seed give the same interval). On 100 items, F1 can move by several "
    "points from the luck of the draw alone; two runs whose intervals overlap are not shown to "
    "differ by this alone (compare them with --compare, which tests per-item differences)."
)


def _flags(result: EvalResult) -> list[str]:
    """Warnings a reader needs before trusting a figure."""
    flags = []
    for d in result.datasets:
        for task, m in d.metrics.items():
            if m.n and m.positives in (0, m.n):
                only = POSITIVE[task] if m.positives else NEGATIVE[task]
                flags.append(
                    f"{d.name} ({task}) holds only {only} items: "
                    + (
                        "precision is 100% or n/a and F1 measures recall alone"
                        if m.positives
                        else "F1, precision and recall are 0 or n/a; read the FPR"
                    )
                )
    return flags


def _threshold_lines(result: EvalResult) -> list[str]:
    lines = []
    for dataset in result.datasets:
        for task, metrics in dataset.metrics.items():
            for target, point in result.operating_points(metrics).items():
                where = (
                    f"score >= {point.threshold:.4f} (precision {_pct(point.precision)}, "
                    f"recall {_pct(point.recall)})"
                    if point
                    else "no threshold meets it"
                )
                lines.append(f"{dataset.name} {task}: {target}: {where}")
    return lines


def _consistency(doc: Document, result: EvalResult) -> None:
    rows = [
        [d.name, task, str(m.consistency_checked), str(m.inconsistent), _pct(m.inconsistency)]
        for d in result.datasets
        for task, m in d.metrics.items()
        if m.consistency_checked
    ]
    if not rows:
        return
    doc.heading("Reasoning consistency")
    doc.paragraph(
        "Outputs whose reasoning concludes otherwise than their result (a label, or categories "
        "none of which the result names). Rule: guardvl_sdk.evaluation.consistency; only "
        "outputs whose reasoning states a conclusion are checked."
    )
    doc.table(["dataset", "task", "checked", "inconsistent", "share %"], rows)


def _categories(doc: Document, result: EvalResult) -> None:
    rows = [
        [d.name, name, str(c.tp), str(c.fp), str(c.fn), _pct(c.precision), _pct(c.recall),
         _pct(c.f1)]
        for d in result.datasets
        for name, c in d.category_scores().items()
    ]  # fmt: skip
    if not rows:
        return
    doc.heading("Categories")
    doc.paragraph(
        "Per category, over every item: TP when the data and the guard name it, FP when only "
        "the guard does, FN when only the data does."
    )
    doc.table(["dataset", "category", "TP", "FP", "FN", "precision", "recall", "F1"], rows)
    for d in result.datasets:
        grid = d.category_confusion()
        if grid:
            columns = sorted({c for row in grid.values() for c in row})
            doc.paragraph(f"{d.name}: gold categories (rows) against the guard's (columns).")
            doc.table(
                ["gold \\ guard", *columns],
                [[g, *(str(grid[g].get(c, 0)) for c in columns)] for g in sorted(grid)],
            )


def _wrong_items(doc: Document, name: str, task: Task, outcomes: list[Outcome], show: int) -> None:
    groups = [
        ("false negatives", [o for o in outcomes if o.gold and o.predicted is False]),
        ("false positives", [o for o in outcomes if not o.gold and o.predicted is True]),
        ("unparsed", [o for o in outcomes if o.predicted is None]),
    ]
    if not any(items for _, items in groups):
        return
    doc.heading(f"{name} ({task})", 3)
    for kind, items in groups:
        if not items:
            continue
        more = f"; the first {show} shown" if len(items) > show else ""
        doc.paragraph(f"**{kind.capitalize()}**: {len(items)}{more}.")
        for o in items[:show]:
            predicted = "unparsed" if o.predicted is None else _label(task, o.predicted)
            title = f"{o.ref}: gold {_label(task, o.gold)}, guard {predicted} ({o.status})"
            if o.score is not None:
                title += f", score {o.score:.3f}"
            if o.inconsistent:
                title += ", reasoning inconsistent with the result"
            fields = [("input", cut(o.input, tail=False))]
            fields.append(("reasoning", cut(o.reasoning, tail=True)))
            if o.predicted is None or not o.reasoning:
                fields.append(("output (end)", cut(o.output, tail=True)))
            doc.item(title, [(k, v) for k, v in fields if v])


def _label(task: str, positive: bool) -> str:
    return POSITIVE[task] if positive else NEGATIVE[task]


def _with_interval(value: float | None, span: Sequence[float] | None) -> str:
    if value is None:
        return "n/a"
    return f"{_pct(value)} [{_pct(span[0])}, {_pct(span[1])}]" if span else _pct(value)


def _span(span: Sequence[float] | None) -> str:
    return f"{_pct(span[0])}-{_pct(span[1])}" if span else "n/a"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _row(name: str, task: str, m: TaskMetrics) -> list[str]:
    c = m.confusion
    latency = "/".join(_ms(m.latency_ms[k]) for k in ("p50", "p90", "p99")) if m.latency_ms else "-"
    tokens = f"{m.mean_output_tokens:.1f}" if m.mean_output_tokens is not None else "-"
    return [
        name, task, str(m.n), _pct(m.f1), _pct(m.precision), _pct(m.recall), _pct(m.accuracy),
        str(c.tp), str(c.fp), str(c.tn), str(c.fn), str(m.parse_errors), str(m.truncations),
        str(m.errors), tokens, latency,
    ]  # fmt: skip


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def _source(result: EvalResult) -> str:
    return f"a run of {result.model}" if result.source == "model" else "existing generations"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def _wrap(text: str, width: int = 100) -> str:
    import textwrap

    return textwrap.fill(text, width=width, subsequent_indent="  ")
