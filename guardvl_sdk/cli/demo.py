"""``guardvl demo`` (train once and run the demo guard) and ``guardvl make-tiny-model`` (a tiny
random Qwen2.5-VL for tests).

Exit status: 0 done, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
from typing import Any

from guardvl_sdk.cli import common
from guardvl_sdk.errors import GuardVLError

__all__ = ["add_demo_parser", "add_tiny_model_parser"]


def add_tiny_model_parser(commands: Any) -> None:
    """``guardvl make-tiny-model``."""
    tiny = common.add_command(commands, "make-tiny-model", _make_tiny_model)
    tiny.add_argument("directory")
    tiny.add_argument(
        "--tokenizer",
        metavar="PATH",
        help="a real Qwen2.5 tokenizer.json (or its directory) instead of the byte-level toy one",
    )


def add_demo_parser(commands: Any) -> None:
    """``guardvl demo``."""
    demo = common.add_command(commands, "demo", _demo)
    demo.add_argument("--dir", help="cache directory (default: $GUARDVL_DEMO_DIR or ~/.cache)")
    demo.add_argument("--rebuild", action="store_true", help="train again even if cached")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")


def _make_tiny_model(args: argparse.Namespace) -> int:
    """write a tiny random Qwen2.5-VL (offline) for tests and demos; it emits noise"""
    from guardvl_sdk.testing import build_tiny_model

    try:
        path = build_tiny_model(args.directory, tokenizer=args.tokenizer)
    except ValueError as exc:
        return common.usage_error("make-tiny-model", exc)
    vocabulary = "the Qwen2.5 tokenizer" if args.tokenizer else "a byte-level toy tokenizer"
    print(f"wrote a tiny random Qwen2.5-VL with {vocabulary} to {path} (untrained: noise)")
    return common.EXIT_ALLOWED


def _demo(args: argparse.Namespace) -> int:
    """train (once, minutes on a CPU) and run the demo guard: a demo, not a safety model"""
    from guardvl_sdk.guard import Guard
    from guardvl_sdk.training import demo

    common.quiet_hub_downloads()
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
        return common.usage_error("demo", exc)
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
        common.print_verdict(verdict)
    return common.EXIT_ALLOWED
