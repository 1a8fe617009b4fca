"""Reasoning SFT (R-SFT, REFERENCE.md §2 stage 1) with trl's ``SFTTrainer`` on Qwen2.5-VL.

The loss covers the assistant's tokens only: every example is a prompt-completion chat
(:mod:`guardvl_sdk.training.data`) and trl's vision collator masks the prompt, images included,
with ``-100``. Images go through the model's own processor. Three methods:

- ``lora``: a LoRA adapter (peft) on the language model's linear layers; the base stays frozen.
- ``qlora``: the same on a 4-bit nf4 base (bitsandbytes; meant for CUDA, also loads on CPU).
- ``full``: every weight is trained (the paper's setting).

The output directory holds the adapter (or the full model), the processor, the policy
(``guardvl_policy.json``), ``loss_log.jsonl`` and checkpoints for ``resume``. Load it with
``Guard.from_pretrained(base, adapter=output)`` or, for ``full`` and merged adapters,
``Guard.from_pretrained(output)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardvl_sdk.errors import ConfigurationError
from guardvl_sdk.policy import Policy
from guardvl_sdk.records import Record, load_records

from .stage import (
    LANGUAGE_MODEL_LINEAR,
    StageResult,
    StageSettings,
    jsonl_log,
    load_base,
    lora_config,
    merge_adapter,
    resolve_policy,
    train_and_save,
    training_arguments,
)

if TYPE_CHECKING:
    from datasets import Dataset
    from trl.trainer.sft_trainer import SFTTrainer

    from .teacher import Teacher

__all__ = [
    "LANGUAGE_MODEL_LINEAR",
    "SFTResult",
    "SFTSettings",
    "build_trainer",
    "load_base",
    "merge_adapter",
    "train_sft",
]

logger = logging.getLogger("guardvl_sdk")

LOSS_LOG = "loss_log.jsonl"


@dataclass
class SFTSettings(StageSettings):
    """Settings of one R-SFT run. Every field is a ``guardvl train sft`` option."""

    label_only: bool = field(
        default=False,
        metadata={"help": "Train records without reasoning on labels alone (empty <think>)."},
    )
    teacher_url: str | None = field(
        default=None,
        metadata={
            "help": "OpenAI-compatible API (e.g. http://host:8000/v1) that writes reasoning "
            "for records without it; replies that disagree with the labels are dropped."
        },
    )
    teacher_model: str | None = field(
        default=None, metadata={"help": "Model name to ask at --teacher-url."}
    )
    warmup: float = field(
        default=0.03, metadata={"help": "Warmup: a fraction of training below 1, else steps."}
    )
    max_length: int | None = field(
        default=2048,
        metadata={"help": "Token cut-off per example, images included (paper: 2048)."},
    )
    logging_steps: int = field(default=10, metadata={"help": "Log the loss every N steps."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.label_only and self.teacher_url:
            raise ConfigurationError("label_only and a teacher exclude each other")
        if bool(self.teacher_url) != bool(self.teacher_model):
            raise ConfigurationError("a teacher needs both teacher_url and teacher_model")


@dataclass(frozen=True)
class SFTResult(StageResult):
    """What a finished R-SFT run produced (see :class:`~guardvl_sdk.training.stage.StageResult`).

    Attributes:
        train_loss: Mean training loss.
        examples: Training examples used.
        teacher_dropped: Records dropped because the teacher's reply was unusable.
    """

    train_loss: float
    examples: int
    teacher_dropped: int = 0


def train_sft(
    settings: SFTSettings,
    *,
    policy: Policy | None = None,
    records: Sequence[Record] | None = None,
    teacher: Teacher | None = None,
    callbacks: Sequence[Any] = (),
) -> SFTResult:
    """Run R-SFT end to end: data, reasoning targets, training, saving.

    Args:
        settings: The run's settings.
        policy: Overrides ``settings.policy`` (and the base's saved policy).
        records: Use these instead of reading ``settings.data``.
        teacher: Writes reasoning for records without it; overrides ``settings.teacher_url``.
        callbacks: Extra ``transformers.TrainerCallback`` objects.

    Raises:
        InvalidDataError: Bad records (every one listed).
        ConfigurationError: Bad settings, records without reasoning and no way to get it, or
            ``resume`` without a checkpoint.
        ModelLoadError: The base model could not be loaded.
        MissingExtraError: The [train] extra is not installed.
    """
    from guardvl_sdk.extras import require

    from .data import as_dataset

    require("train", "guardvl train sft")

    policy = policy or resolve_policy(settings)
    if records is None:
        records = load_records(settings.data, skip_invalid=settings.skip_invalid)
    records, dropped = _with_reasoning(list(records), policy, settings, teacher)
    dataset = as_dataset(records, policy, label_only=settings.label_only)
    trainer = build_trainer(settings, dataset, callbacks=callbacks)
    processor = trainer.processing_class
    assert processor is not None
    trained = train_and_save(trainer, settings, policy, processor)
    return SFTResult(
        output=Path(settings.output),
        model=trained.model,
        adapter=trained.adapter,
        steps=trained.outcome.global_step,
        seconds=trained.seconds,
        train_loss=float(trained.outcome.training_loss),
        examples=len(dataset),
        teacher_dropped=dropped,
    )


def build_trainer(
    settings: SFTSettings, dataset: Dataset, *, callbacks: Sequence[Any] = ()
) -> SFTTrainer:
    """An ``SFTTrainer`` for ``dataset`` (from :func:`~guardvl_sdk.training.data.as_dataset`).

    Loads the base (4-bit for QLoRA), wraps it in LoRA for the adapter methods, and logs the
    loss to ``OUTPUT/loss_log.jsonl``. Its ``data_collator`` is what masks the prompt.
    """
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    # Built before the model: under DeepSpeed ZeRO-3 this is what makes from_pretrained shard.
    args = SFTConfig(
        **training_arguments(settings),
        warmup_steps=settings.warmup,
        max_length=settings.max_length,
        completion_only_loss=True,
        eos_token="<|im_end|>",
    )
    model, processor = load_base(settings)
    if "<|im_end|>" not in processor.tokenizer.get_vocab():
        raise ConfigurationError(
            f"{settings.base} has no <|im_end|> token: not a Qwen2.5-VL chat model"
        )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=lora_config(settings),
        callbacks=[jsonl_log(Path(settings.output) / LOSS_LOG), *callbacks],
    )
    if not settings.progress:
        # Without bars the trainer prints every log as a raw dict; the loss log has them.
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    return trainer


def _with_reasoning(
    records: list[Record], policy: Policy, settings: SFTSettings, teacher: Teacher | None
) -> tuple[list[Record], int]:
    """Fill missing reasoning from the teacher; drop the records it could not explain."""
    missing = [r for r in records if not (r.reasoning or "").strip()]
    if not missing or settings.label_only:
        return records, 0
    if teacher is None and settings.teacher_url and settings.teacher_model:
        from .teacher import Teacher

        with Teacher(settings.teacher_url, model=settings.teacher_model) as owned:
            return _with_reasoning(records, policy, settings, owned)
    if teacher is None:
        raise ConfigurationError(
            f"{len(missing)} of {len(records)} records have no reasoning (first: "
            f"{missing[0].id!r}): add it, ask a teacher (--teacher-url, --teacher-model), or "
            "train label-only (--label-only)"
        )
    taught = teacher.fill(records, policy)
    logger.warning("teacher reasoning: %s", taught.summary())
    return taught.records, taught.dropped
