"""Comparing runs: one table and one chart across runs and datasets, and per-item differences.

A run is the output folder of ``guardvl eval --output`` (its ``results.json``, and its
``items.jsonl`` for per-item differences) or a results JSON file (with ``items.jsonl`` beside it
when it has one). Rows are matched by dataset name and task. Per-item differences pair items by
their reference (record id or line) and need the same input in both runs; McNemar's exact test
on the items only one run gets right says whether a difference is more than chance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardvl_sdk.errors import InvalidInputError
from guardvl_sdk.evaluation.confidence import mcnemar
from guardvl_sdk.evaluation.document import Document, cut
from guardvl_sdk.evaluation.reference import reference_rows

__all__ = ["Run", "compare_runs", "format_comparison", "load_run", "write_comparison"]

ITEMS_FILE = "items.jsonl"
RESULTS_FILE = "results.json"


@dataclass(frozen=True)
class Run:
    """One run's figures (its results JSON) and, when present, its items."""

    label: str
    path: Path
    figures: dict[str, Any]
    items: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Difference:
    """Per-item differences of two runs on one dataset and task."""

    dataset: str
    task: str
    a: str
    b: str
    paired: int
    only_a: list[tuple[dict[str, Any], dict[str, Any]]]
    only_b: list[tuple[dict[str, Any], dict[str, Any]]]
    p_value: float
    note: str = ""


@dataclass(frozen=True)
class Comparison:
    """Rows of F1 across runs, reference rows, and the per-item differences."""

    runs: list[Run]
    rows: list[tuple[str, str, list[dict[str, Any] | None]]]
    averages: list[tuple[str, str, list[dict[str, Any] | None]]]
    references: list[tuple[str, str, dict[str, float]]]
    notes: list[str]
    differences: list[Difference]


def load_run(path: str | Path) -> Run:
    """Read a run from its output folder or results JSON file.

    Raises:
        InvalidInputError: No results JSON there, or it is not one.
    """
    path = Path(path)
    file = path / RESULTS_FILE if path.is_dir() else path
    try:
        figures = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"--compare: cannot read {file}: {exc}") from exc
    if not isinstance(figures, dict) or "datasets" not in figures or "averages" not in figures:
        raise InvalidInputError(f"--compare: {file} is no guardvl eval results JSON")
    items: dict[tuple[str, str, str], dict[str, Any]] = {}
    items_file = file.parent / ITEMS_FILE
    if items_file.is_file():
        for line in items_file.read_text(encoding="utf-8").split("\n"):
            if line.strip():
                item = json.loads(line)
                items[(item["dataset"], item["task"], item["ref"])] = item
    default = path.name if path.is_dir() else path.stem
    return Run(figures.get("label") or default, path, figures, items)


def compare_runs(runs: list[Run]) -> Comparison:
    """Line up the runs' figures by dataset and task, and pair their items.

    Raises:
        InvalidInputError: Fewer than two runs, or two with the same label.
    """
    if len(runs) < 2:
        raise InvalidInputError("--compare needs at least two runs")
    labels = [r.label for r in runs]
    if len(set(labels)) < len(labels):
        runs = [Run(str(r.path), r.path, r.figures, r.items) for r in runs]
    rows = _lined_up([r.figures["datasets"] for r in runs])
    averages = _lined_up([r.figures["averages"] for r in runs])
    references, notes = [], []
    for group, task, cells in averages:
        names = {d for cell in cells if cell for d in cell.get("datasets", [])}
        found, note = reference_rows(task, {n.rpartition("/")[2] for n in names})
        notes.append(f"{group} {task}: {note}")
        if found:
            references.append((group, task, found))
    differences = [
        diff
        for i, a in enumerate(runs)
        for b in runs[i + 1 :]
        for diff in _differences(a, b, [(d, t) for d, t, _ in rows])
    ]
    return Comparison(runs, rows, averages, references, notes, differences)


def _lined_up(
    per_run: list[dict[str, dict[str, Any]]],
) -> list[tuple[str, str, list[dict[str, Any] | None]]]:
    keys: list[tuple[str, str]] = []
    for entries in per_run:
        for name, tasks in entries.items():
            for task, figures in tasks.items():
                if isinstance(figures, dict) and "f1" in figures and (name, task) not in keys:
                    keys.append((name, task))
    return [
        (name, task, [entries.get(name, {}).get(task) for entries in per_run])
        for name, task in keys
    ]


def _differences(a: Run, b: Run, keys: list[tuple[str, str]]) -> list[Difference]:
    out = []
    for dataset, task in keys:
        left = {ref: item for (d, t, ref), item in a.items.items() if (d, t) == (dataset, task)}
        right = {ref: item for (d, t, ref), item in b.items.items() if (d, t) == (dataset, task)}
        if not left or not right:
            continue
        common = [ref for ref in left if ref in right]
        changed = [
            r
            for r in common
            if (left[r]["input"], left[r]["gold"]) != (right[r]["input"], right[r]["gold"])
        ]
        if changed:
            note = f"{len(changed)} items differ in input or gold label: not paired"
            out.append(Difference(dataset, task, a.label, b.label, 0, [], [], 1.0, note))
            continue
        pairs = [(left[r], right[r]) for r in common]
        only_a = [(x, y) for x, y in pairs if x["correct"] and not y["correct"]]
        only_b = [(x, y) for x, y in pairs if y["correct"] and not x["correct"]]
        p_value = mcnemar(len(only_a), len(only_b))
        out.append(
            Difference(dataset, task, a.label, b.label, len(common), only_a, only_b, p_value)
        )
    return out


def format_comparison(comparison: Comparison) -> str:
    """The comparison as a terminal table: F1 [95% interval] per run, then the averages."""
    labels = [r.label for r in comparison.runs]
    header = ["dataset", "task", *labels]
    body = [[d, t, *(_cell(c) for c in cells)] for d, t, cells in comparison.rows]
    averages = [
        [f"average {g}", t, *(_cell(c) for c in cells)] for g, t, cells in comparison.averages
    ]
    refs = [
        [f"paper {model}", t, *([f"{100 * f1:.2f}"] + [""] * (len(labels) - 1))]
        for _, t, found in comparison.references
        for model, f1 in found.items()
    ]
    table = [header, *body, [""] * len(header), *averages, *refs]
    width = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        f"guardvl eval --compare: {len(labels)} runs. F1 in % (harmful positive) with its 95% "
        "bootstrap interval.",
        *(
            "  ".join(
                f"{cell:<{w}}" if i < 2 else f"{cell:>{w}}"
                for i, (cell, w) in enumerate(zip(row, width, strict=True))
            ).rstrip()
            for row in table
        ),
        "",
        *comparison.notes,
    ]
    significant = [d for d in comparison.differences if d.paired]
    if significant:
        lines += [
            "",
            "Per-item differences (McNemar's exact test on items only one run gets right):",
        ]
        for d in significant:
            lines.append(
                f"{d.dataset} {d.task}: {d.a} vs {d.b}: {len(d.only_a)} only {d.a} right, "
                f"{len(d.only_b)} only {d.b} right, p = {d.p_value:.3g}"
                + (" (significant at 5%)" if d.p_value < 0.05 else "")
            )
    return "\n".join(lines)


def write_comparison(comparison: Comparison, directory: str | Path, *, show: int = 5) -> list[Path]:
    """Write ``compare.md``, ``compare.html``, ``compare.json`` and the chart ``compare.png``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    labels = [r.label for r in comparison.runs]
    doc = Document(f"guardvl eval comparison: {', '.join(labels)}")
    doc.bullets([f"{r.label}: {r.path}" for r in comparison.runs])
    doc.paragraph("F1 in % (harmful positive); brackets: 95% bootstrap interval.")
    doc.table(
        ["dataset", "task", *labels],
        [[d, t, *(_cell(c) for c in cells)] for d, t, cells in comparison.rows],
    )
    doc.heading("Sample-weighted averages")
    doc.table(
        ["folder", "task", *labels],
        [[g, t, *(_cell(c) for c in cells)] for g, t, cells in comparison.averages]
        + [
            [f"paper: {model}", t, f"{100 * f1:.2f}", *[""] * (len(labels) - 1)]
            for _, t, found in comparison.references
            for model, f1 in found.items()
        ],
    )
    doc.bullets(comparison.notes)
    written = []
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        doc.paragraph(
            'Chart not drawn: matplotlib is not installed (`pip install "guardvl-sdk[eval]"`).'
        )
    else:
        from guardvl_sdk.evaluation.plots import compare_figure

        rows = comparison.rows + [(f"average {g}", t, c) for g, t, c in comparison.averages]
        reference = [None] * len(comparison.rows) + [
            next((found.get("GuardReasoner-VL-7B") for g2, t2, found in comparison.references
                  if (g2, t2) == (g, t)), None)
            for g, t, _ in comparison.averages
        ]  # fmt: skip
        chart = compare_figure(
            [f"{d} ({t})" for d, t, _ in rows],
            [[c[i] for _, _, c in rows] for i in range(len(labels))],
            labels,
            reference,
            out / "compare.png",
        )
        doc.image(chart, out, "F1 per dataset and run")
        written.append(chart)

    doc.heading("Per-item differences")
    doc.paragraph(
        "Items one run gets right and the other wrong, paired by reference. p: McNemar's exact "
        "test on those items; below 0.05 the difference is unlikely to be chance."
    )
    doc.table(
        ["dataset", "task", "runs", "paired", "only first right", "only second right", "p"],
        [
            [
                d.dataset,
                d.task,
                f"{d.a} vs {d.b}",
                str(d.paired),
                str(len(d.only_a)),
                str(len(d.only_b)),
                d.note or f"{d.p_value:.3g}",
            ]
            for d in comparison.differences
        ],
    )
    for d in comparison.differences:
        for winner, loser, pairs in ((d.a, d.b, d.only_a), (d.b, d.a, d.only_b)):
            if not pairs:
                continue
            doc.heading(f"{d.dataset} ({d.task}): {winner} right, {loser} wrong ({len(pairs)})", 3)
            for left, right in pairs[:show]:
                first, second = (left, right) if winner == d.a else (right, left)
                doc.item(
                    f"{first['ref']}: gold {first['gold']}; {winner} {first['predicted']}, "
                    f"{loser} {second['predicted'] or 'unparsed'}",
                    [("input", cut(first.get("input"), tail=False)),
                     (f"{loser} reasoning", cut(second.get("reasoning") or second.get("output")))],
                )  # fmt: skip
    md, page = doc.write(out, "compare")
    summary = out / "compare.json"
    summary.write_text(json.dumps(_json(comparison), indent=2) + "\n", encoding="utf-8")
    return [md, page, summary, *written]


def _json(comparison: Comparison) -> dict[str, Any]:
    return {
        "runs": [{"label": r.label, "path": str(r.path)} for r in comparison.runs],
        "rows": [
            {"dataset": d, "task": t, "f1": [c.get("f1") if c else None for c in cells],
             "intervals": [(c.get("intervals") or {}).get("f1") if c else None for c in cells]}
            for d, t, cells in comparison.rows + comparison.averages
        ],
        "references": [
            {"group": g, "task": t, "published": f} for g, t, f in comparison.references
        ],
        "differences": [
            {"dataset": d.dataset, "task": d.task, "runs": [d.a, d.b], "paired": d.paired,
             "only_first_right": len(d.only_a), "only_second_right": len(d.only_b),
             "p_value": d.p_value, "note": d.note}
            for d in comparison.differences
        ],
    }  # fmt: skip


def _cell(figures: dict[str, Any] | None) -> str:
    if not figures or figures.get("f1") is None:
        return "-" if not figures else "n/a"
    span = (figures.get("intervals") or {}).get("f1")
    value = f"{100 * figures['f1']:.2f}"
    return f"{value} [{100 * span[0]:.1f}, {100 * span[1]:.1f}]" if span else value
