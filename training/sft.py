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

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardvl_sdk.errors import ConfigurationError, ModelLoadError
from guardvl_sdk.policy import GUARDREASONER_VL, Policy
from guardvl_sdk.records import Record, load_records

if TYPE_CHECKING:
    from datasets import Dataset
    from trl.trainer.sft_trainer import SFTTrainer

    from guardvl_sdk.training.teacher import Teacher

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

LANGUAGE_MODEL_LINEAR = (
    r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
)
"""LoRA targets: every linear layer of the text decoder, none of the vision tower."""

LOSS_LOG = "loss_log.jsonl"


@dataclass
class SFTSettings:
    """Settings of one R-SFT run. Every field is a ``guardvl train sft`` option."""

    data: str = field(metadata={"help": "JSONL policy data (see guardvl_sdk.records)."})
    base: str = field(metadata={"help": "Base model: a hub id or a local directory."})
    output: str = field(metadata={"help": "Directory for the trained guard and checkpoints."})
    policy: str | None = field(
        default=None,
        metadata={
            "help": "Policy JSON (Policy.save). Default: the base's saved policy, else "
            "GuardReasoner-VL's."
        },
    )
    method: str = field(
        default="lora",
        metadata={
            "help": "lora (adapter), qlora (adapter on a 4-bit base) or full fine-tuning.",
            "choices": ("lora", "qlora", "full"),
        },
    )
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
    skip_invalid: bool = field(
        default=False, metadata={"help": "Skip (and log) bad records instead of failing."}
    )
    epochs: float = field(default=3.0, metadata={"help": "Passes over the data."})
    max_steps: int = field(
        default=-1, metadata={"help": "Stop after this many optimizer steps (-1: use epochs)."}
    )
    learning_rate: float | None = field(
        default=None,
        metadata={"help": "Peak learning rate. Default: 2e-4 for LoRA/QLoRA, 5e-5 for full."},
    )
    lr_scheduler: str = field(default="cosine", metadata={"help": "transformers LR schedule."})
    warmup: float = field(
        default=0.03, metadata={"help": "Warmup: a fraction of training below 1, else steps."}
    )
    batch_size: int = field(default=4, metadata={"help": "Examples per device per step."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Steps accumulated per optimizer update."}
    )
    max_length: int | None = field(
        default=2048,
        metadata={"help": "Token cut-off per example, images included (paper: 2048)."},
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(
        default=LANGUAGE_MODEL_LINEAR,
        metadata={"help": "Regex of module names LoRA adapts (default: the text decoder)."},
    )
    merge: bool = field(
        default=False,
        metadata={"help": "Also write the adapter merged into the base to OUTPUT/merged."},
    )
    bf16: bool | None = field(
        default=None, metadata={"help": "bfloat16 mixed precision. Default: on with CUDA."}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Trade compute for memory (large models)."}
    )
    logging_steps: int = field(default=10, metadata={"help": "Log the loss every N steps."})
    save_steps: int = field(default=200, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept."})
    seed: int = field(default=42, metadata={"help": "Random seed."})
    resume: bool = field(
        default=False, metadata={"help": "Resume from the last checkpoint in OUTPUT."}
    )
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self) -> None:
        if self.method not in ("lora", "qlora", "full"):
            raise ConfigurationError(f"method must be lora, qlora or full, not {self.method!r}")
        if self.label_only and self.teacher_url:
            raise ConfigurationError("label_only and a teacher exclude each other")
        if bool(self.teacher_url) != bool(self.teacher_model):
            raise ConfigurationError("a teacher needs both teacher_url and teacher_model")
        for name in ("batch_size", "gradient_accumulation_steps", "lora_r", "logging_steps"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1")
        if self.max_steps < 1 and self.epochs <= 0:
            raise ConfigurationError("give epochs > 0 or max_steps >= 1")

    @property
    def peak_learning_rate(self) -> float:
        """The learning rate, or the method's default."""
        if self.learning_rate is not None:
            return self.learning_rate
        return 5e-5 if self.method == "full" else 2e-4


@dataclass(frozen=True)
class SFTResult:
    """What a finished run produced.

    Attributes:
        output: The output directory.
        model: What to pass to ``Guard.from_pretrained``: the output (full or merged) or None
            for an adapter (then ``Guard.from_pretrained(base, adapter=adapter)``).
        adapter: The adapter directory, for LoRA/QLoRA.
        steps: Optimizer steps run.
        train_loss: Mean training loss.
        seconds: Wall time of training.
        examples: Training examples used.
        teacher_dropped: Records dropped because the teacher's reply was unusable.
    """

    output: Path
    model: Path | None
    adapter: Path | None
    steps: int
    train_loss: float
    seconds: float
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
    from guardvl_sdk.training.data import as_dataset

    require("train", "guardvl train sft")

    policy = policy or _resolve_policy(settings)
    if records is None:
        records = load_records(settings.data, skip_invalid=settings.skip_invalid)
    records, dropped = _with_reasoning(list(records), policy, settings, teacher)
    dataset = as_dataset(records, policy, label_only=settings.label_only)
    trainer = build_trainer(settings, dataset, callbacks=callbacks)
    output = Path(settings.output)

    began = time.perf_counter()
    try:
        outcome = trainer.train(resume_from_checkpoint=True if settings.resume else None)
    except ValueError as exc:
        if settings.resume and "checkpoint" in str(exc).lower():
            raise ConfigurationError(f"cannot resume: {exc}") from exc
        raise
    seconds = time.perf_counter() - began

    trainer.save_model(str(output))
    processor = trainer.processing_class
    assert processor is not None
    processor.save_pretrained(str(output))
    policy.save(output)
    adapter = output if settings.method != "full" else None
    model: Path | None = output if settings.method == "full" else None
    if adapter is not None and settings.merge:
        model = merge_adapter(settings.base, adapter, output / "merged")
    return SFTResult(
        output=output,
        model=model,
        adapter=adapter,
        steps=outcome.global_step,
        train_loss=float(outcome.training_loss),
        seconds=seconds,
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
    import torch
    from peft import LoraConfig
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    cuda = torch.cuda.is_available()
    # Built before the model: under DeepSpeed ZeRO-3 this is what makes from_pretrained shard.
    args = SFTConfig(
        output_dir=settings.output,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        learning_rate=settings.peak_learning_rate,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        max_length=settings.max_length,
        completion_only_loss=True,
        eos_token="<|im_end|>",
        bf16=cuda if settings.bf16 is None else settings.bf16,
        activation_checkpointing=settings.gradient_checkpointing,
        logging_steps=settings.logging_steps,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        seed=settings.seed,
        report_to="none",
        disable_tqdm=not settings.progress,
        use_cpu=not cuda,
        dataloader_pin_memory=cuda,
    )
    model, processor = load_base(settings)
    if "<|im_end|>" not in processor.tokenizer.get_vocab():
        raise ConfigurationError(
            f"{settings.base} has no <|im_end|> token: not a Qwen2.5-VL chat model"
        )
    peft_config = None
    if settings.method != "full":
        peft_config = LoraConfig(
            r=settings.lora_r,
            lora_alpha=settings.lora_alpha,
            lora_dropout=settings.lora_dropout,
            target_modules=settings.lora_target_modules,
            task_type="CAUSAL_LM",
        )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config,
        callbacks=[_loss_log(Path(settings.output) / LOSS_LOG), *callbacks],
    )
    if not settings.progress:
        # Without bars the trainer prints every log as a raw dict; the loss log has them.
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    return trainer


def load_base(settings: SFTSettings) -> tuple[Any, Any]:
    """Load the base model (4-bit nf4 for QLoRA) and its processor, for training.

    Raises:
        ModelLoadError: The model or processor could not be loaded.
    """
    import torch
    from accelerate import PartialState
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from guardvl_sdk.backends.loading import quantization_config

    device = PartialState().device
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda and settings.method != "full" else torch.float32
    quantization = quantization_config(
        "4bit" if settings.method == "qlora" else None, device, dtype
    )
    try:
        processor = AutoProcessor.from_pretrained(settings.base)
        model = AutoModelForImageTextToText.from_pretrained(
            settings.base,
            dtype=dtype,
            quantization_config=quantization,
            # bitsandbytes places weights at load time; otherwise the Trainer places them.
            device_map={"": str(device)} if quantization is not None else None,
            use_safetensors=True,
        )
    except (OSError, ValueError, ImportError, RuntimeError) as exc:
        raise ModelLoadError(f"could not load base model {settings.base!r}: {exc}") from exc
    processor.tokenizer.padding_side = "right"
    return model, processor


def merge_adapter(base: str | Path, adapter: str | Path, output: str | Path) -> Path:
    """Merge a LoRA adapter into an unquantized copy of its base and save it for serving.

    The processor and the policy saved with the adapter are copied along, so
    ``Guard.from_pretrained(output)`` needs nothing else.
    """
    from peft import PeftModel

    from guardvl_sdk.backends.local import LocalBackend

    backend = LocalBackend.load(base, quantization=None)
    merged = PeftModel.from_pretrained(backend.model, str(adapter)).merge_and_unload()
    out = Path(output)
    merged.save_pretrained(out, safe_serialization=True)
    backend.processor.save_pretrained(out)
    saved = Policy.from_pretrained(adapter)
    if saved is not None:
        saved.save(out)
    return out


def _resolve_policy(settings: SFTSettings) -> Policy:
    if settings.policy:
        return Policy.load(settings.policy)
    return Policy.from_pretrained(settings.base) or GUARDREASONER_VL


def _with_reasoning(
    records: list[Record], policy: Policy, settings: SFTSettings, teacher: Teacher | None
) -> tuple[list[Record], int]:
    """Fill missing reasoning from the teacher; drop the records it could not explain."""
    missing = [r for r in records if not (r.reasoning or "").strip()]
    if not missing or settings.label_only:
        return records, 0
    if teacher is None and settings.teacher_url and settings.teacher_model:
        from guardvl_sdk.training.teacher import Teacher

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


def _loss_log(path: Path) -> Any:
    """A ``TrainerCallback`` appending every log (loss, learning rate...) as a JSON line."""
    from transformers import TrainerCallback

    class LossLog(TrainerCallback):
        def on_log(
            self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any
        ) -> None:
            if not state.is_world_process_zero or not logs:
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as log:
                log.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    return LossLog()
