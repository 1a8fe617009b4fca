"""``guardvl check`` (one request, and optionally its response) and ``guardvl moderate`` (every
line of a JSONL file).

Exit status of both: 0 allowed, 1 blocked, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from guardvl_sdk.cli import common
from guardvl_sdk.errors import GuardVLError, InvalidInputError

__all__ = ["add_check_parser", "add_moderate_parser"]


def add_check_parser(commands: Any) -> None:
    """``guardvl check``."""
    check = common.add_command(commands, "check", _check)
    check.add_argument(
        "text", nargs="?", default=None, help="the user's request text ('-': read it from stdin)"
    )
    check.add_argument(
        "--image", action="append", default=[], metavar="PATH", help="an image (repeatable)"
    )
    check.add_argument("--response", help="the assistant's answer, checked in context")
    common.add_guard_arguments(check)
    check.add_argument("--json", action="store_true", help="print the verdict as JSON")


def add_moderate_parser(commands: Any) -> None:
    """``guardvl moderate``."""
    moderate = common.add_command(commands, "moderate", _moderate)
    moderate.add_argument("input", metavar="IN.jsonl", help="the lines to check")
    moderate.add_argument(
        "-o", "--output", required=True, metavar="OUT.jsonl", help="results (appended, resumable)"
    )
    common.add_guard_arguments(moderate)
    moderate.add_argument("--batch-size", type=int, default=8, help="lines per guard call")
    moderate.add_argument("--quiet", action="store_true", help="no progress bar")


def _check(args: argparse.Namespace) -> int:
    """check a request (and optionally a response) with a guard model

    Exit status: 0 allowed, 1 blocked, 2 usage or input error.
    """
    from guardvl_sdk.inputs import clean_text, load_images

    text = sys.stdin.read() if args.text == "-" else args.text
    try:
        # Inputs first: a typo in a path should not cost a model load.
        images = load_images(args.image)
        text = None if text is None else clean_text(text, what="text")
        response = None if args.response is None else clean_text(args.response, what="response")
        if not (text or "").strip() and not images:
            return common.usage_error("check", "give request text, --image, or both")
        guard = common.load_guard(
            args, common.model_or_default(args, "check"), on_error=args.on_error
        )
        verdict = guard.check(text, image=images or None, response=response)
    except GuardVLError as exc:
        return _input_error("check", exc)
    if args.json:
        print(json.dumps(verdict.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        common.print_verdict(verdict)
    return common.EXIT_BLOCKED if verdict.blocked else common.EXIT_ALLOWED


def _moderate(args: argparse.Namespace) -> int:
    """check every line of an unlabelled JSONL file; one verdict per line, resumable

    Each line: a JSON object with text (or request), image or images (paths relative to the
    input file, or data: URLs), response, or messages, and an optional id. Each output line:
    line, id, blocked, and the verdict (or the error of a line that cannot be checked, which
    counts as blocked). Run it again after an interruption: only lines without a result are
    checked. Exit status: 0 nothing blocked, 1 some blocked, 2 usage or input error.
    """
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
        model = common.model_or_default(args, "moderate")
        guard = common.load_guard(args, model, on_error=args.on_error, batch_size=args.batch_size)
        checked = moderate(guard, items, out, batch_size=args.batch_size, progress=not args.quiet)
    except GuardVLError as exc:
        return _input_error("moderate", exc)
    counts = tally(out)
    print(
        f"{counts.items} lines in {out} ({checked} checked by this run): {counts.blocked} "
        f"blocked, of which {counts.errors} could not be checked",
        file=sys.stderr,
    )
    return common.EXIT_BLOCKED if counts.blocked else common.EXIT_ALLOWED


def _input_error(command: str, exc: GuardVLError) -> int:
    """A usage error that names bad input as such."""
    invalid = isinstance(exc, InvalidInputError)
    return common.usage_error(command, f"invalid input: {exc}" if invalid else exc)
