"""The ``guardvl`` command line: one module per command group, argument handling only (the work
is in the modules they call).

- :mod:`~guardvl_sdk.cli.check`: ``guardvl check`` and ``guardvl moderate``
- :mod:`~guardvl_sdk.cli.evaluate`: ``guardvl eval``
- :mod:`~guardvl_sdk.cli.train`: ``guardvl train sft|rl``
- :mod:`~guardvl_sdk.cli.serve`: ``guardvl serve``
- :mod:`~guardvl_sdk.cli.demo`: ``guardvl demo`` and ``guardvl make-tiny-model``
- :mod:`~guardvl_sdk.cli.common`: what they share (exit statuses, errors, guard options)

Exit status of ``guardvl check``: 0 allowed, 1 blocked, 2 usage or input error. ``guardvl train``
and ``guardvl demo``: 0 done, 2 usage, data or configuration error. Heavy dependencies are
imported by the handler that needs them, so ``guardvl --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from guardvl_sdk import __version__
from guardvl_sdk.cli.check import add_check_parser, add_moderate_parser
from guardvl_sdk.cli.common import EXIT_ALLOWED, EXIT_BLOCKED, EXIT_PIPE, EXIT_USAGE
from guardvl_sdk.cli.demo import add_demo_parser, add_tiny_model_parser
from guardvl_sdk.cli.evaluate import add_eval_parser
from guardvl_sdk.cli.serve import add_serve_parser
from guardvl_sdk.cli.train import add_train_parser

__all__ = ["EXIT_ALLOWED", "EXIT_BLOCKED", "EXIT_PIPE", "EXIT_USAGE", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``guardvl`` parser; each command sets ``handler``, the function that runs it."""
    parser = argparse.ArgumentParser(
        prog="guardvl", description="Guardrails for vision-language-model apps."
    )
    parser.add_argument("--version", action="version", version=f"guardvl-sdk {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        add_check_parser,
        add_tiny_model_parser,
        add_train_parser,
        add_demo_parser,
        add_eval_parser,
        add_serve_parser,
        add_moderate_parser,
    ):
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``guardvl`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`guardvl eval ... | head`): stop quietly, as Unix tools do.
        # Point stdout at /dev/null so the interpreter's own flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE
    return status
