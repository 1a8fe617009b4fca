"""Gates: conditions on the figures that make ``guardvl eval`` fail, for a policy's CI.

A gate is ``[SCOPE[@TASK]:]FIGURE OP VALUE``, e.g. ``f1>=0.90``, ``average@request:f1>=0.9``,
``8B/AegisSafetyTest:fpr<=0.05``, ``parse_errors==0``.

- **SCOPE**: ``each`` (the default: every dataset and task), ``average`` (every sample-weighted
  average), a dataset name, or an averages group (a folder name, ``all`` at the top level).
- **TASK**: only that task (``request``, ``response``, ``refusal``).
- **FIGURE**: a field of the JSON (``f1``, ``precision``, ``recall``, ``accuracy``, ``fpr``,
  ``fnr``, ``unparsed``, ``parse_errors``, ``truncations``, ``errors``, ``n``,
  ``average_precision``, ``roc_auc``, ``ece``, ``inconsistency``), or the bound of an interval:
  ``f1_low``, ``recall_high``...
- **OP**: ``>=``, ``<=``, ``==``, ``>``, ``<``. Rates are fractions (0.9, not 90).

A figure that is undefined (precision without predicted positives) fails a gate on a named scope;
under ``each`` or ``average`` it is skipped and said so, and a gate that checks nothing fails.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from guardvl_sdk.errors import InvalidInputError

__all__ = ["Gate", "GateResult", "check_gates", "parse_gate"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, ">": operator.gt, "<": operator.lt,
}  # fmt: skip
_GATE_RE = re.compile(
    r"^\s*(?:(?P<scope>[^:@]+?)(?:@(?P<task>request|response|refusal))?\s*:)?\s*"
    r"(?P<figure>[a-z_0-9]+)\s*(?P<op>>=|<=|==|>|<)\s*(?P<value>[-+0-9.eE]+)\s*$"
)
_FIGURES = {
    "f1", "precision", "recall", "accuracy", "fpr", "fnr", "unparsed", "parse_errors",
    "truncations", "errors", "n", "average_precision", "roc_auc", "ece", "brier", "inconsistency",
}  # fmt: skip
_BOUNDS = {f"{f}_{b}" for f in ("f1", "precision", "recall") for b in ("low", "high")}


@dataclass(frozen=True)
class Gate:
    """One parsed ``--require`` condition (see the module docstring)."""

    text: str
    scope: str
    task: str | None
    figure: str
    op: str
    value: float


@dataclass(frozen=True)
class GateResult:
    """How a gate fared: ``failures`` and ``skipped`` name each place, ``checked`` counts them."""

    gate: Gate
    checked: int
    failures: list[str]
    skipped: list[str]

    @property
    def passed(self) -> bool:
        """True when at least one figure was checked and none failed."""
        return self.checked > 0 and not self.failures


def parse_gate(text: str) -> Gate:
    """Parse ``[SCOPE[@TASK]:]FIGURE OP VALUE``.

    Raises:
        InvalidInputError: The text is not a gate, or names an unknown figure.
    """
    match = _GATE_RE.match(text)
    if not match:
        raise InvalidInputError(
            f"bad gate {text!r}: expected [SCOPE[@TASK]:]FIGURE OP VALUE, e.g. 'f1>=0.9'"
        )
    figure = match.group("figure")
    if figure not in _FIGURES | _BOUNDS:
        raise InvalidInputError(
            f"bad gate {text!r}: unknown figure {figure!r}; known: {sorted(_FIGURES | _BOUNDS)}"
        )
    try:
        value = float(match.group("value"))
    except ValueError:
        raise InvalidInputError(
            f"bad gate {text!r}: {match.group('value')!r} is no number"
        ) from None
    scope = (match.group("scope") or "each").strip()
    return Gate(text.strip(), scope, match.group("task"), figure, match.group("op"), value)


def check_gates(figures: dict[str, Any], gates: Iterable[Gate]) -> list[GateResult]:
    """Check ``gates`` against an evaluation's JSON (:meth:`EvalResult.to_json`).

    Raises:
        InvalidInputError: A gate names a scope that is no dataset, group, ``each`` or
            ``average``, or a task the scope does not have.
    """
    datasets: dict[str, dict[str, Any]] = figures["datasets"]
    averages: dict[str, dict[str, Any]] = figures["averages"]
    results = []
    for gate in gates:
        named = gate.scope not in ("each", "average")
        if gate.scope == "each":
            places = _places(datasets)
        elif gate.scope == "average":
            places = _places(averages, prefix="average ")
        elif gate.scope in datasets:
            places = _places({gate.scope: datasets[gate.scope]})
        elif gate.scope in averages:
            places = _places({gate.scope: averages[gate.scope]}, prefix="average ")
        else:
            raise InvalidInputError(
                f"gate {gate.text!r}: no dataset or group {gate.scope!r}; datasets: "
                f"{sorted(datasets)}, groups: {sorted(averages)}"
            )
        places = [(where, task, f) for where, task, f in places if gate.task in (None, task)]
        if named and not places:
            raise InvalidInputError(f"gate {gate.text!r}: {gate.scope} has no {gate.task} task")
        failures: list[str] = []
        skipped: list[str] = []
        checked = 0
        for where, task, entry in places:
            value = _figure(entry, gate.figure)
            if value is None:
                (failures if named else skipped).append(f"{where} {task}: {gate.figure} is n/a")
                continue
            checked += 1
            if not _OPS[gate.op](value, gate.value):
                failures.append(f"{where} {task}: {gate.figure} = {value:.4g}")
        results.append(GateResult(gate, checked, failures, skipped))
    return results


def _places(
    entries: dict[str, dict[str, Any]], prefix: str = ""
) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (prefix + name, task, figures)
        for name, tasks in entries.items()
        for task, figures in tasks.items()
        if task in ("request", "response", "refusal")
    ]


def _figure(entry: dict[str, Any], figure: str) -> float | None:
    if figure in _BOUNDS:
        name, _, bound = figure.rpartition("_")
        span = (entry.get("intervals") or {}).get(name)
        return None if span is None else float(span[0 if bound == "low" else 1])
    value = entry.get(figure)
    return None if value is None else float(value)
