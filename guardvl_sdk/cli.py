"""The ``guardvl`` command line.

One module over 400 lines on purpose: one parser and one handler per subcommand, argument handling
only (the work is in the modules they call).

Exit status of ``guardvl check``: 0 allowed, 1 blocked, 2 usage or input error. ``guardvl train``
and ``guardvl demo``: 0 done, 2 usage, data or configuration error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from guardvl_sdk import __version__
from guardvl_sdk.errors import ConfigurationError, GuardVLError, InvalidInputError
from guardvl_sdk.guard import DEFAULT_MODEL
from guardvl_sdk.verdict import Label, Verdict

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from guardvl_sdk.guard import Guard

__all__ = ["main"]

EXIT_ALLOWED, EXIT_BLOCKED, EXIT_USAGE = 0, 1, 2
EXIT_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader went away

Settings = TypeVar("Settings", bound="DataclassInstance")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="guardvl", description="Guardrails for vision-language-model apps."
    )
    parser.add_argument("--version", action="version", version=f"guardvl-sdk {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser(
        "check",
        help="check a request (and optionally a response) with a guard model",
        description="Exit status: 0 allowed, 1 blocked, 2 usage or input error.",
    )
    check.add_argument(
        "text", nargs="?", default=None, help="the user's request text ('-': read it from stdin)"
    )
    check.add_argument(
        "--image", action="append", default=[], metavar="PATH", help="an image (repeatable)"
    )
    check.add_argument("--response", help="the assistant's answer, checked in context")
    _add_guard_arguments(check)
    check.add_argument("--json", action="store_true", help="print the verdict as JSON")

    tiny = commands.add_parser(
        "make-tiny-model",
        help="write a tiny random Qwen2.5-VL (offline) for tests and demos; it emits noise",
    )
    tiny.add_argument("directory")
    tiny.add_argument(
        "--tokenizer",
        metavar="PATH",
        help="a real Qwen2.5 tokenizer.json (or its directory) instead of the byte-level toy one",
    )

    train = commands.add_parser("train", help="fine-tune a guard on policy data")
    methods = train.add_subparsers(dest="method", required=True, metavar="METHOD")
    sft = methods.add_parser(
        "sft",
        help="reasoning SFT (LoRA, QLoRA or full) with trl",
        description="Reasoning SFT on JSONL policy data. Multi-GPU: run it under "
        "`accelerate launch -m guardvl_sdk train sft ...` (see docs/training.md).",
    )
    from guardvl_sdk.training.sft import SFTSettings

    _add_dataclass_arguments(sft, SFTSettings)
    rl = methods.add_parser(
        "rl",
        help="online RL (GRPO) with the paper's recipe, on labels alone",
        description="GRPO with rejection sampling, safety-aware concatenation, dynamic clipping "
        "and the length-aware reward (--eco: beta 1/6). See docs/rl.md.",
    )
    from guardvl_sdk.training.rl import RLSettings

    _add_dataclass_arguments(rl, RLSettings)
    rl.set_defaults(train_rl=True)  # `method` is taken: --method lora|qlora|full

    demo = commands.add_parser(
        "demo",
        help="train (once, minutes on a CPU) and run the demo guard: a demo, not a safety model",
    )
    demo.add_argument("--dir", help="cache directory (default: $GUARDVL_DEMO_DIR or ~/.cache)")
    demo.add_argument("--rebuild", action="store_true", help="train again even if cached")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_eval_parser(commands)
    _add_serve_parser(commands)
    _add_moderate_parser(commands)
    return parser


def _add_moderate_parser(commands: Any) -> None:
    moderate = commands.add_parser(
        "moderate",
        help="check every line of an unlabelled JSONL file; one verdict per line, resumable",
        description="Each line: a JSON object with text (or request), image or images (paths "
        "relative to the input file, or data: URLs), response, or messages, and an optional id. "
        "Each output line: line, id, blocked, and the verdict (or the error of a line that "
        "cannot be checked, which counts as blocked). Run it again after an interruption: only "
        "lines without a result are checked. Exit status: 0 nothing blocked, 1 some blocked, "
        "2 usage or input error.",
    )
    moderate.add_argument("input", metavar="IN.jsonl", help="the lines to check")
    moderate.add_argument(
        "-o", "--output", required=True, metavar="OUT.jsonl", help="results (appended, resumable)"
    )
    _add_guard_arguments(moderate)
    moderate.add_argument("--batch-size", type=int, default=8, help="lines per guard call")
    moderate.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_guard_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say which guard checks: ``check`` and ``moderate`` share them."""
    parser.add_argument(
        "--model",
        help=f"'demo' (the offline demo guard), a local directory or a hub id (default: "
        f"{DEFAULT_MODEL}); with --server, the served model name",
    )
    parser.add_argument(
        "--server",
        metavar="URL",
        help="an OpenAI-compatible guard server, e.g. http://gpu-1:8000/v1 (key from "
        "$OPENAI_API_KEY) instead of a model loaded in this process",
    )
    parser.add_argument("--adapter", help="a LoRA adapter trained on --model (guardvl train sft)")
    parser.add_argument(
        "--quantization",
        choices=["auto", "4bit", "8bit", "none"],
        default="auto",
        help="auto: 4-bit on CUDA, none on CPU",
    )
    parser.add_argument("--device", help="e.g. cuda, cuda:1, cpu (default: CUDA when available)")
    parser.add_argument("--max-new-tokens", type=int, default=4096)
    parser.add_argument(
        "--on-error",
        choices=["block", "allow"],
        default="block",
        help="decision when the guard cannot decide (default: block)",
    )


def _add_serve_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve a guard over HTTP: moderation API, native checks, LiteLLM guardrail",
        description="Serve a guard over HTTP (extra guardvl-sdk[server]); see docs/serving.md. "
        "Give --config FILE, or --model (a model in this process) or --server URL... --model "
        "NAME (inference servers). Flags override the file.",
    )
    serve.add_argument("--config", help="a guard.yaml (see guardvl_sdk.config)")
    serve.add_argument("--model", help="model id or directory; with --server, the served name")
    serve.add_argument("--server", nargs="+", metavar="URL", help="inference server base URLs")
    serve.add_argument("--adapter", help="a LoRA adapter trained on --model")
    serve.add_argument("--quantization", choices=["auto", "4bit", "8bit", "none"])
    serve.add_argument("--device", help="e.g. cuda, cuda:1, cpu")
    serve.add_argument("--max-new-tokens", type=int)
    serve.add_argument("--on-error", choices=["block", "allow"], help="default: block")
    serve.add_argument("--host", help="default 127.0.0.1")
    serve.add_argument("--port", type=int, help="default 8080")
    serve.add_argument("--api-key-file", help="accepted API keys, one per line")
    serve.add_argument(
        "--api-key",
        action="append",
        default=[],
        help="an accepted API key (repeatable; prefer --api-key-file or $GUARDVL_API_KEY)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])


def _add_eval_parser(commands: Any) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="measure a guard on labelled data, or score existing generations",
        description="Per dataset and task: F1 (harmful positive), precision, recall, accuracy, "
        "confusion matrix, parse failures and truncations, output tokens, latency; plus "
        "sample-weighted averages, with bootstrap 95%% intervals. Exit status: 0 done, 1 a "
        "--require gate failed, 2 usage or data error, 130 interrupted (rerun to resume). "
        "See docs/evaluation.md.",
    )
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


def _add_dataclass_arguments(parser: argparse.ArgumentParser, settings: type[Any]) -> None:
    """One option per dataclass field, with the field's help string (trl style)."""
    converters = {"str": str, "int": int, "float": float}
    for item in dataclasses.fields(settings):
        flag = "--" + item.name.replace("_", "-")
        kind = str(item.type).replace(" | None", "")
        required = item.default is dataclasses.MISSING
        help_text = item.metadata.get("help")
        if kind == "bool":
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=item.default, help=help_text
            )
            continue
        parser.add_argument(
            flag,
            type=converters[kind],
            required=required,
            default=None if required else item.default,
            choices=item.metadata.get("choices"),
            help=help_text if required else f"{help_text} (default: {item.default})",
        )


def _dataclass_from_arguments(settings: type[Settings], args: argparse.Namespace) -> Settings:
    """The inverse of :func:`_add_dataclass_arguments`: the settings the options give."""
    return settings(
        **{item.name: getattr(args, item.name) for item in dataclasses.fields(settings)}
    )


def _print_load_hint(base: str, model: Any, adapter: Any) -> None:
    """How to load what a training run wrote: a full model, or an adapter on its base."""
    if model is not None:
        print(f"load it with: Guard.from_pretrained({str(model)!r})")
    if adapter is not None:
        print(f"load it with: Guard.from_pretrained({base!r}, adapter={str(adapter)!r})")


def _print_verdict(verdict: Verdict) -> None:
    decision = "BLOCKED" if verdict.blocked else "ALLOWED"
    print(f"decision:  {decision}")
    print(f"status:    {verdict.status.value}" + (f" ({verdict.error})" if verdict.error else ""))
    print(f"request:   {verdict.request.value if verdict.request else None}")
    if verdict.stage == "output":
        print(f"response:  {verdict.response.value if verdict.response else None}")
    if verdict.categories:
        print(f"categories: {', '.join(verdict.categories)}")
    if verdict.score is not None:
        print(f"score:     {_score_line(verdict)}")
    print(
        f"model:     {verdict.model}  ({verdict.latency_ms:.0f} ms, "
        f"{verdict.usage.completion_tokens} tokens generated)"
    )
    if verdict.reasoning:
        print("reasoning:")
        print(textwrap.indent(verdict.reasoning, "  "))
    elif verdict.status.value != "ok":
        print("raw output:")
        print(textwrap.indent(verdict.raw or "(empty)", "  "))


def _score_line(verdict: Verdict) -> str:
    """The score as the probability of what its label says, naming the label it belongs to.

    ``Verdict.score`` is P(harmful) at the response's label in a response check, else at the
    request's. When the request's harmful label is what blocked a response check, that is said.
    """
    assert verdict.score is not None
    task = "response" if verdict.stage == "output" else "request"
    label = verdict.response if task == "response" else verdict.request
    harmful = verdict.blocked if label is None else label is Label.HARMFUL
    shown = verdict.score if harmful else 1 - verdict.score
    line = f"{shown:.3f} (probability the {task} is {'harmful' if harmful else 'unharmful'})"
    if task == "response" and not harmful and verdict.request is Label.HARMFUL:
        line += "; the request's harmful label decided"
    return line


def _quiet_hub_downloads() -> None:
    """No hub progress bars on the command line (when transformers is installed at all)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()


def _model_or_default(args: argparse.Namespace, command: str) -> str:
    """``--model``, or the default hub model, announced so a forgotten option is noticed."""
    if args.model is not None:
        return str(args.model)
    print(
        f"guardvl {command}: no --model given: using {DEFAULT_MODEL} "
        "(use --model demo for the offline demo guard)",
        file=sys.stderr,
    )
    return DEFAULT_MODEL


def _check(args: argparse.Namespace) -> int:
    from guardvl_sdk.inputs import clean_text, load_images

    text = sys.stdin.read() if args.text == "-" else args.text
    try:
        # Inputs first: a typo in a path should not cost a model load.
        images = load_images(args.image)
        text = None if text is None else clean_text(text, what="text")
        response = None if args.response is None else clean_text(args.response, what="response")
        if not (text or "").strip() and not images:
            print("guardvl check: give request text, --image, or both", file=sys.stderr)
            return EXIT_USAGE
        guard = _guard_from_arguments(args, "check")
        verdict = guard.check(text, image=images or None, response=response)
    except InvalidInputError as exc:
        print(f"guardvl check: invalid input: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except GuardVLError as exc:
        print(f"guardvl check: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(verdict.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        _print_verdict(verdict)
    return EXIT_BLOCKED if verdict.blocked else EXIT_ALLOWED


def _guard_from_arguments(
    args: argparse.Namespace, command: str, *, batch_size: int | None = None
) -> Guard:
    """The guard ``--model`` / ``--server`` and their options name."""
    from guardvl_sdk.guard import Guard

    model = _model_or_default(args, command)
    options: dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}
    if args.server:
        return Guard.from_server(
            args.server,
            model=model,
            api_key=os.environ.get("OPENAI_API_KEY"),
            max_new_tokens=args.max_new_tokens,
            on_error=args.on_error,
            **options,
        )
    _quiet_hub_downloads()
    return Guard.from_pretrained(
        model,
        quantization=None if args.quantization == "none" else args.quantization,
        device=args.device,
        max_new_tokens=args.max_new_tokens,
        adapter=args.adapter,
        on_error=args.on_error,
        **({"batch_size": args.batch_size} if "batch_size" in args else {}),
    )


def _moderate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from guardvl_sdk.moderate import moderate, read_items, tally

    source, out = Path(args.input), Path(args.output)
    try:
        if args.batch_size < 1:
            raise InvalidInputError("--batch-size must be at least 1")
        if source.resolve() == out.resolve():
            raise InvalidInputError("the output must not be the input file")
        items = read_items(source)  # every line validated before the model loads
        if not items:
            raise InvalidInputError(f"{source} has no lines to check")
        guard = _guard_from_arguments(args, "moderate", batch_size=args.batch_size)
        checked = moderate(guard, items, out, batch_size=args.batch_size, progress=not args.quiet)
    except InvalidInputError as exc:
        print(f"guardvl moderate: invalid input: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except GuardVLError as exc:
        print(f"guardvl moderate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    counts = tally(out)
    print(
        f"{counts.items} lines in {out} ({checked} checked by this run): {counts.blocked} "
        f"blocked, of which {counts.errors} could not be checked",
        file=sys.stderr,
    )
    return EXIT_BLOCKED if counts.blocked else EXIT_ALLOWED


def _make_tiny_model(args: argparse.Namespace) -> int:
    from guardvl_sdk.testing import build_tiny_model

    try:
        path = build_tiny_model(args.directory, tokenizer=args.tokenizer)
    except ValueError as exc:
        print(f"guardvl make-tiny-model: {exc}", file=sys.stderr)
        return EXIT_USAGE
    vocabulary = "the Qwen2.5 tokenizer" if args.tokenizer else "a byte-level toy tokenizer"
    print(f"wrote a tiny random Qwen2.5-VL with {vocabulary} to {path} (untrained: noise)")
    return EXIT_ALLOWED


def _train(args: argparse.Namespace) -> int:
    if getattr(args, "train_rl", False):
        return _train_rl(args)
    from guardvl_sdk.training.sft import SFTSettings, train_sft

    try:
        settings = _dataclass_from_arguments(SFTSettings, args)
        result = train_sft(settings)
    except GuardVLError as exc:
        print(f"guardvl train sft: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"trained on {result.examples} examples: {result.steps} steps in {result.seconds:.0f} s, "
        f"mean loss {result.train_loss:.4f}; loss log in {result.output / 'loss_log.jsonl'}"
    )
    if result.teacher_dropped:
        print(f"the teacher's reasoning was dropped for {result.teacher_dropped} records")
    _print_load_hint(settings.base, result.model, result.adapter)
    return EXIT_ALLOWED


def _train_rl(args: argparse.Namespace) -> int:
    from guardvl_sdk.training.rl import RLSettings, train_rl

    try:
        settings = _dataclass_from_arguments(RLSettings, args)
        result = train_rl(settings)
    except GuardVLError as exc:
        print(f"guardvl train rl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if result.rejection:
        print(result.rejection)
    print(
        f"trained on {result.items} RL items ({result.hard} kept of {result.records} records, "
        f"{result.augmented} concatenated): {result.steps} steps in {result.seconds:.0f} s; "
        f"rewards and clip range in {result.output / 'rl_log.jsonl'}"
    )
    _print_load_hint(settings.base, result.model, result.adapter)
    return EXIT_ALLOWED


def _demo(args: argparse.Namespace) -> int:
    from guardvl_sdk.guard import Guard
    from guardvl_sdk.training import demo

    _quiet_hub_downloads()
    print(
        "guardvl demo: a tiny Qwen2.5-VL trained with guardvl's R-SFT on synthetic data.\n"
        "A DEMO OF THE MACHINERY, NOT A SAFETY MODEL: it knows a few keywords and drawings."
    )
    directory = args.dir or demo.default_demo_dir()
    try:
        path, metrics = demo.build_demo_guard(
            directory, rebuild=args.rebuild, progress=not args.quiet
        )
        guard = Guard.from_pretrained(path, max_new_tokens=128)
    except GuardVLError as exc:
        print(f"guardvl demo: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"guard: {path} (trained in {metrics.train_seconds:.0f} s on "
        f"{metrics.train_examples} synthetic examples)\n"
        f"held-out synthetic split ({metrics.items} items, measured): "
        f"format compliance {metrics.format_compliance:.1%}, request F1 {metrics.request_f1:.3f}, "
        f"response F1 {metrics.response_f1:.3f}, categories exact {metrics.category_accuracy:.1%}, "
        f"reasoning names the result's categories {metrics.reasoning_consistency:.1%}\n"
        "a few held-out items (the first of each kind, not picked by hand):"
    )
    shown = demo.showcase()
    verdicts = guard.check_batch([check for _, check in shown])
    for (description, _), verdict in zip(shown, verdicts, strict=True):
        print(f"\n> {description}")
        _print_verdict(verdict)
    return EXIT_ALLOWED


def _eval(args: argparse.Namespace) -> int:
    from guardvl_sdk.evaluation import evaluate_guard, score_predictions
    from guardvl_sdk.evaluation.gates import check_gates, parse_gate
    from guardvl_sdk.evaluation.report import format_table, write_items, write_json, write_report
    from guardvl_sdk.evaluation.results import EvalResult

    targets = {"precision": args.target_precision, "recall": args.target_recall}
    if any(t is not None and not 0 < t <= 1 for t in targets.values()):
        print("guardvl eval: targets must be in (0, 1]", file=sys.stderr)
        return EXIT_USAGE
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
                print(
                    "guardvl eval: --task and --none-is-unharmful need --predictions",
                    file=sys.stderr,
                )
                return EXIT_USAGE
            output = output or "guardvl-eval"
            guard = _eval_guard(args)
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
        print(f"guardvl eval: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if args.data is None:
            raise
        print(
            f"\nguardvl eval: interrupted; finished items are kept in {output}/: run the same "
            "command again to resume",
            file=sys.stderr,
        )
        return 130  # the shell's status for Ctrl-C
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
        return EXIT_BLOCKED
    return EXIT_ALLOWED


def _eval_compare(args: argparse.Namespace) -> int:
    from guardvl_sdk.evaluation.compare import (
        compare_runs,
        format_comparison,
        load_run,
        write_comparison,
    )

    if args.require or args.task or args.none_is_unharmful:
        print("guardvl eval: --compare takes no --require, --task or --none-is-unharmful",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    try:
        comparison = compare_runs([load_run(path) for path in args.compare])
    except GuardVLError as exc:
        print(f"guardvl eval: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(format_comparison(comparison))
    for path in write_comparison(comparison, args.output or "guardvl-compare", show=args.show):
        print(f"wrote {path}")
    return EXIT_ALLOWED


def _eval_guard(args: argparse.Namespace) -> Guard:
    import os

    from guardvl_sdk.guard import Guard

    if args.server:
        return Guard.from_server(
            args.server,
            model=args.model,
            api_key=os.environ.get("OPENAI_API_KEY"),
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
        )
    _quiet_hub_downloads()
    return Guard.from_pretrained(
        args.model,
        quantization=None if args.quantization == "none" else args.quantization,
        device=args.device,
        max_new_tokens=args.max_new_tokens,
        adapter=args.adapter,
        batch_size=args.batch_size,
    )


def _serve_config(args: argparse.Namespace) -> Any:
    """The configuration ``guardvl serve`` runs: the file's, with the flags on top."""
    from guardvl_sdk.config import GuardConfig, load_config

    data: dict[str, Any] = {}
    if args.config:
        data = load_config(args.config).model_dump(exclude_unset=True)
    if args.server:
        if not args.model:
            raise ConfigurationError("--server needs --model, the served model's name")
        data["backend"] = {"type": "server", "base_url": args.server, "model": args.model}
    elif args.model:
        data["backend"] = {"type": "local", "model": args.model}
    backend = data.get("backend")
    if backend is None:
        raise ConfigurationError("give --config, --model, or --server URL... --model NAME")
    quantization = None if args.quantization == "none" else args.quantization
    local = {"adapter": args.adapter, "device": args.device, "quantization": quantization}
    for key, value in {**local, "max_new_tokens": args.max_new_tokens}.items():
        if value is not None and (backend["type"] == "local" or key == "max_new_tokens"):
            backend[key] = value
    if args.on_error:
        data.setdefault("guard", {})["on_error"] = args.on_error
    server = data.setdefault("server", {})
    for key in ("host", "port", "api_key_file"):
        if getattr(args, key) is not None:
            server[key] = getattr(args, key)
    return GuardConfig.model_validate(data)


def _serve(args: argparse.Namespace) -> int:
    import os

    try:
        from guardvl_sdk.server import ServerSettings, serve
    except ImportError as exc:
        print(f"guardvl serve needs the server extra: pip install 'guardvl-sdk[server]' ({exc})")
        return EXIT_USAGE
    try:
        config = _serve_config(args)
        keys = [*args.api_key, *filter(None, [os.environ.get("GUARDVL_API_KEY")])]
        section = config.server
        settings = ServerSettings(
            api_keys=(*keys, *section.api_keys()),
            max_body_bytes=section.max_body_bytes,
            max_images=section.max_images,
            timeout=section.timeout,
            shutdown_grace=section.shutdown_grace,
        )
        from guardvl_sdk.guard import Guard

        guard = Guard.from_config(config)
    except (GuardVLError, ValidationError) as exc:
        print(f"guardvl serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    serve(
        guard, settings, host=config.server.host, port=config.server.port, log_level=args.log_level
    )
    return EXIT_ALLOWED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``guardvl`` command; returns the exit status."""
    args = _build_parser().parse_args(argv)
    handlers = {
        "check": _check,
        "make-tiny-model": _make_tiny_model,
        "train": _train,
        "demo": _demo,
        "eval": _eval,
        "serve": _serve,
        "moderate": _moderate,
    }
    try:
        status = handlers[args.command](args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`guardvl eval ... | head`): stop quietly, as Unix tools do.
        # Point stdout at /dev/null so the interpreter's own flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE
    return status


if __name__ == "__main__":
    sys.exit(main())
