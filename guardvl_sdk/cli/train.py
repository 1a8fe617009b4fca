"""``guardvl train sft`` and ``guardvl train rl``: one option per field of the stage's settings.

Exit status: 0 done, 2 usage, data or configuration error.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from guardvl_sdk.cli import common
from guardvl_sdk.errors import GuardVLError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from guardvl_sdk.training.stage import StageResult

__all__ = ["add_train_parser"]

Settings = TypeVar("Settings", bound="DataclassInstance")
Result = TypeVar("Result", bound="StageResult")


def add_train_parser(commands: Any) -> None:
    """``guardvl train`` and its two methods."""
    train = commands.add_parser("train", help="fine-tune a guard on policy data")
    # dest `method` is overwritten by --method lora|qlora|full: the handler tells the stages apart
    methods = train.add_subparsers(dest="method", required=True, metavar="METHOD")
    from guardvl_sdk.training.rl import RLSettings
    from guardvl_sdk.training.sft import SFTSettings

    _add_dataclass_arguments(common.add_command(methods, "sft", _train_sft), SFTSettings)
    _add_dataclass_arguments(common.add_command(methods, "rl", _train_rl), RLSettings)


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


def _train_sft(args: argparse.Namespace) -> int:
    """reasoning SFT (LoRA, QLoRA or full) with trl

    Reasoning SFT on JSONL policy data. Multi-GPU: run it under `accelerate launch -m
    guardvl_sdk train sft ...` (see docs/training.md).
    """
    from guardvl_sdk.training.sft import SFTResult, SFTSettings, train_sft

    def report(result: SFTResult) -> None:
        print(
            f"trained on {result.examples} examples: {result.steps} steps in "
            f"{result.seconds:.0f} s, mean loss {result.train_loss:.4f}; loss log in "
            f"{result.output / 'loss_log.jsonl'}"
        )
        if result.teacher_dropped:
            print(f"the teacher's reasoning was dropped for {result.teacher_dropped} records")

    return _run_stage("train sft", SFTSettings, train_sft, args, report)


def _train_rl(args: argparse.Namespace) -> int:
    """online RL (GRPO) with the paper's recipe, on labels alone

    GRPO with rejection sampling, safety-aware concatenation, dynamic clipping and the
    length-aware reward (--eco: beta 1/6). See docs/rl.md.
    """
    from guardvl_sdk.training.rl import RLResult, RLSettings, train_rl

    def report(result: RLResult) -> None:
        if result.rejection:
            print(result.rejection)
        print(
            f"trained on {result.items} RL items ({result.hard} kept of {result.records} "
            f"records, {result.augmented} concatenated): {result.steps} steps in "
            f"{result.seconds:.0f} s; rewards and clip range in {result.output / 'rl_log.jsonl'}"
        )

    return _run_stage("train rl", RLSettings, train_rl, args, report)


def _run_stage(
    command: str,
    settings_type: type[Settings],
    train: Callable[[Settings], Result],
    args: argparse.Namespace,
    report: Callable[[Result], None],
) -> int:
    """Train a stage on the settings the options give, report, and say how to load the guard."""
    try:
        settings = _dataclass_from_arguments(settings_type, args)
        result = train(settings)
    except GuardVLError as exc:
        return common.usage_error(command, exc)
    report(result)
    if result.model is not None:
        print(f"load it with: Guard.from_pretrained({str(result.model)!r})")
    if result.adapter is not None:
        adapter = str(result.adapter)
        print(f"load it with: Guard.from_pretrained({args.base!r}, adapter={adapter!r})")
    return common.EXIT_ALLOWED
