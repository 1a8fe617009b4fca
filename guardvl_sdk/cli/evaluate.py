"""``guardvl eval``: measure a guard on labelled data, score existing generations, or compare
earlier runs.

Exit status: 0 done, 1 a ``--require`` gate failed, 2 usage or data error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TYPE_CHECKING, Any

from guardvl_sdk.cli import common
from guardvl_sdk.errors import GuardVLError
from guardvl_sdk.guard import DEFAULT_MODEL

if TYPE_CHECKING:
    from guardvl_sdk.guard import Guard

__all__ = ["add_eval_parser", "eval_guard"]

EXIT_INTERRUPTED = 130  # the shell's status for Ctrl-C


def add_eval_parser(commands: Any) -> None:
    """``guardvl eval``."""
    evaluate = common.add_command(commands, "eval", _eval)
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data", metavar="FILE_OR_DIR", help="labelled JSONL records; run the guard on them"
    )
    source.add_argument(
        "--predictions",
        metavar="FILE_OR_DIR",
        help="existing generations (prompt/label/predict JSONL); no model is run",
    )
    source.add_argument(
        "--compare",
        nargs="+",
        metavar="RUN",
        help="compare earlier runs (--output folders or results JSON files): one table and chart "
        "across runs, per-item differences (written to --output, default guardvl-compare/)",
    )
    evaluate.add_argument(
        "--require",
        action="append",
        default=[],
        metavar="GATE",
        help="fail (exit 1) unless the figures meet GATE, e.g. 'f1>=0.9', 'fpr<=0.05', "
        "'average@request:f1>=0.9', 'parse_errors==0' (repeatable; see docs/evaluation.md)",
    )
    evaluate.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="model id or local directory; with --server, the served model name",
    )
    evaluate.add_argument(
        "--server",
        action="append",
        metavar="URL",
        help="an OpenAI-compatible guard server, e.g. http://gpu-1:8000/v1 (repeatable; key "
        "from $OPENAI_API_KEY); verdicts then carry scores where the server returns logprobs",
    )
    evaluate.add_argument("--adapter", help="a LoRA adapter trained on --model")
    evaluate.add_argument(
        "--quantization", choices=["auto", "4bit", "8bit", "none"], default="auto"
    )
    evaluate.add_argument("--device", help="e.g. cuda, cpu (default: CUDA when available)")
    evaluate.add_argument("--max-new-tokens", type=int, default=4096)
    evaluate.add_argument("--batch-size", type=int, default=8, help="checks per model call")
    evaluate.add_argument("--limit", type=int, help="only the first N records of each dataset")
    evaluate.add_argument(
        "--task",
        choices=["request", "response", "refusal"],
        help="(--predictions) score this task in every file instead of reading it from the data",
    )
    evaluate.add_argument(
        "--none-is-unharmful",
        action="store_true",
        help="(--predictions) read a 'None' label as unharmful, as the GuardReasoner-VL authors' "
        "code does; by default it is unparsed, so wrong",
    )
    evaluate.add_argument(
        "--output",
        metavar="DIR",
        help="write results.json, report.md and plots here; a model run also keeps its resume "
        "cache here (default for --data: guardvl-eval/)",
    )
    evaluate.add_argument("--json", metavar="PATH", help="write the figures as JSON to PATH")
    evaluate.add_argument(
        "--target-precision", type=float, help="report the score threshold meeting it"
    )
    evaluate.add_argument(
        "--target-recall", type=float, help="report the score threshold meeting it"
    )
    evaluate.add_argument("--label", help="the run's name in reports and --compare")
    evaluate.add_argument(
        "--seed", type=int, default=0, help="seed of the bootstrap intervals (default 0)"
    )
    evaluate.add_argument(
        "--resamples", type=int, default=1000, help="bootstrap resamples (default 1000; 0: none)"
    )
    evaluate.add_argument(
        "--show",
        type=int,
        default=20,
        metavar="N",
        help="misclassified items shown per dataset, task and kind in the report (default 20)",
    )
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")


def eval_guard(args: argparse.Namespace) -> Guard:
    """The guard a ``--data`` run measures."""
    return common.load_guard(args, args.model, batch_size=args.batch_size)


def _eval(args: argparse.Namespace) -> int:
    """measure a guard on labelled data, or score existing generations

    Per dataset and task: F1 (harmful positive), precision, recall, accuracy, confusion matrix,
    parse failures and truncations, output tokens, latency; plus sample-weighted averages, with
    bootstrap 95% intervals. Exit status: 0 done, 1 a --require gate failed, 2 usage or data
    error, 130 interrupted (rerun to resume). See docs/evaluation.md.
    """
    from guardvl_sdk.evaluation import evaluate_guard, score_predictions
    from guardvl_sdk.evaluation.gates import check_gates, parse_gate
    from guardvl_sdk.evaluation.report import format_table, write_items, write_json, write_report
    from guardvl_sdk.evaluation.results import EvalResult

    targets = {"precision": args.target_precision, "recall": args.target_recall}
    if any(t is not None and not 0 < t <= 1 for t in targets.values()):
        return common.usage_error("eval", "targets must be in (0, 1]")
    if args.compare is not None:
        return _eval_compare(args)
    output = args.output
    try:
        gates = [parse_gate(text) for text in args.require]
        if args.predictions is not None:
            datasets, notes = score_predictions(
                args.predictions,
                task=args.task,
                none_is_unharmful=args.none_is_unharmful,
                resamples=args.resamples,
                seed=args.seed,
            )
            if args.none_is_unharmful:
                notes.insert(0, "a 'None' label was read as unharmful (--none-is-unharmful)")
            result = EvalResult(
                datasets,
                source="predictions",
                notes=notes,
                target_precision=args.target_precision,
                target_recall=args.target_recall,
            )
        else:
            if args.task or args.none_is_unharmful:
                return common.usage_error(
                    "eval", "--task and --none-is-unharmful need --predictions"
                )
            output = output or "guardvl-eval"
            guard = eval_guard(args)
            result = evaluate_guard(
                guard,
                args.data,
                output=output,
                progress=not args.quiet,
                limit=args.limit,
                target_precision=args.target_precision,
                target_recall=args.target_recall,
                resamples=args.resamples,
                seed=args.seed,
            )
        from pathlib import Path

        named = Path(output or args.predictions or args.data).resolve().name
        result = dataclasses.replace(result, label=args.label or named)
        figures = result.to_json()
        verdicts = check_gates(figures, gates)
    except GuardVLError as exc:
        return common.usage_error("eval", exc)
    except KeyboardInterrupt:
        if args.data is None:
            raise
        print(
            f"\nguardvl eval: interrupted; finished items are kept in {output}/: run the same "
            "command again to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print(format_table(result))
    written = []
    if args.json:
        written.append(write_json(result, args.json))
    if output:
        written.append(write_json(result, f"{output}/results.json"))
        written.append(write_items(result, f"{output}/items.jsonl"))
        written.append(write_report(result, output, show=args.show))
        written.append(written[-1].with_suffix(".html"))
    for path in written:
        print(f"wrote {path}")
    failed = [v for v in verdicts if not v.passed]
    for verdict in verdicts:
        state = "passed" if verdict.passed else "FAILED"
        detail = "; ".join(verdict.failures) or ("nothing to check" if not verdict.checked else "")
        skipped = f" (skipped: {'; '.join(verdict.skipped)})" if verdict.skipped else ""
        detail = f": {detail}" if detail else ""
        print(f"gate {verdict.gate.text}: {state}, {verdict.checked} checked{detail}{skipped}")
    if failed:
        names = ", ".join(repr(v.gate.text) for v in failed)
        print(f"guardvl eval: gate failed: {names}", file=sys.stderr)
        return common.EXIT_BLOCKED
    return common.EXIT_ALLOWED


def _eval_compare(args: argparse.Namespace) -> int:
    from guardvl_sdk.evaluation.compare import (
        compare_runs,
        format_comparison,
        load_run,
        write_comparison,
    )

    if args.require or args.task or args.none_is_unharmful:
        return common.usage_error(
            "eval", "--compare takes no --require, --task or --none-is-unharmful"
        )
    try:
        comparison = compare_runs([load_run(path) for path in args.compare])
    except GuardVLError as exc:
        return common.usage_error("eval", exc)
    print(format_comparison(comparison))
    for path in write_comparison(comparison, args.output or "guardvl-compare", show=args.show):
        print(f"wrote {path}")
    return common.EXIT_ALLOWED
