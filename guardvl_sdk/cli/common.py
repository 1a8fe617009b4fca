"""What every ``guardvl`` command shares: exit statuses, errors, the guard options, verdicts.

Exit statuses: 0 done (allowed), 1 blocked (or a failed gate), 2 usage, input, data or
configuration error; 141 when the reader of the output went away.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from guardvl_sdk.guard import DEFAULT_MODEL
from guardvl_sdk.verdict import Label, Verdict

if TYPE_CHECKING:
    from guardvl_sdk.guard import Guard
    from guardvl_sdk.steps import OnError

__all__ = [
    "EXIT_ALLOWED",
    "EXIT_BLOCKED",
    "EXIT_PIPE",
    "EXIT_USAGE",
    "add_command",
    "add_guard_arguments",
    "load_guard",
    "model_or_default",
    "print_verdict",
    "quiet_hub_downloads",
    "usage_error",
]

EXIT_ALLOWED, EXIT_BLOCKED, EXIT_USAGE = 0, 1, 2
EXIT_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader went away


def usage_error(command: str, message: object) -> int:
    """Say on stderr why ``guardvl COMMAND`` stops; returns the usage exit status (2)."""
    print(f"guardvl {command}: {message}", file=sys.stderr)
    return EXIT_USAGE


def add_command(
    commands: Any, name: str, handler: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    """Add ``guardvl NAME``, run by ``handler``, and return its parser for the options.

    The handler's docstring is the command's text, as click does it: its first paragraph is the
    one-line help in ``guardvl --help``, the rest (if any) the description in ``guardvl NAME
    --help`` (argparse refills both, so line breaks in the docstring do not show). Under
    ``python -OO``, which strips docstrings, the commands still run, without their text.
    """
    summary, _, rest = inspect.cleandoc(handler.__doc__ or "").partition("\n\n")
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=_plain(summary),
        description=_plain(rest) or None,
    )
    parser.set_defaults(handler=handler)
    return parser


def _plain(text: str) -> str:
    """``text`` in one line, with argparse's ``%`` escaped (its help strings are %-formats)."""
    return " ".join(text.split()).replace("%", "%%")


def add_guard_arguments(parser: argparse.ArgumentParser) -> None:
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


def load_guard(
    args: argparse.Namespace,
    model: str,
    *,
    on_error: OnError = "block",
    batch_size: int | None = None,
) -> Guard:
    """The guard ``--server`` (else a model loaded here), ``--adapter``, ``--quantization``,
    ``--device`` and ``--max-new-tokens`` name, serving ``model``.

    Args:
        args: The parsed options.
        model: The model (with ``--server``: the served model's name).
        on_error: The decision when the guard cannot decide.
        batch_size: Checks per model call (None: the factory's default).
    """
    from guardvl_sdk.guard import Guard

    options: dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}
    if args.server:
        return Guard.from_server(
            args.server,
            model=model,
            api_key=os.environ.get("OPENAI_API_KEY"),
            max_new_tokens=args.max_new_tokens,
            on_error=on_error,
            **options,
        )
    quiet_hub_downloads()
    return Guard.from_pretrained(
        model,
        quantization=None if args.quantization == "none" else args.quantization,
        device=args.device,
        max_new_tokens=args.max_new_tokens,
        adapter=args.adapter,
        on_error=on_error,
        **options,
    )


def model_or_default(args: argparse.Namespace, command: str) -> str:
    """``--model``, or the default hub model, announced so a forgotten option is noticed."""
    if args.model is not None:
        return str(args.model)
    print(
        f"guardvl {command}: no --model given: using {DEFAULT_MODEL} "
        "(use --model demo for the offline demo guard)",
        file=sys.stderr,
    )
    return DEFAULT_MODEL


def quiet_hub_downloads() -> None:
    """No hub progress bars on the command line (when transformers is installed at all)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()


def print_verdict(verdict: Verdict) -> None:
    """A verdict as ``guardvl check`` and ``guardvl demo`` show it to a person."""
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
