"""What the two training stages share: settings, base loading, LoRA, the JSONL log, train/save.

R-SFT (:mod:`~guardvl_sdk.training.sft`) and GRPO (:mod:`~guardvl_sdk.training.rl`) differ in
their data and their trl trainer. Everything around the trainer is the same and lives here:
:class:`StageSettings` (the options both ``guardvl train`` commands take), resolving the policy,
loading the base (4-bit for QLoRA), the LoRA configuration, the ``transformers`` arguments, the
callback that appends every log line to a JSONL file, and running, resuming, saving and merging.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from guardvl_sdk.errors import ConfigurationError, ModelLoadError
from guardvl_sdk.policy import GUARDREASONER_VL, Policy

__all__ = [
    "LANGUAGE_MODEL_LINEAR",
    "METHODS",
    "StageResult",
    "StageSettings",
    "Trained",
    "jsonl_log",
    "load_base",
    "lora_config",
    "merge_adapter",
    "resolve_policy",
    "train_and_save",
    "training_arguments",
]

LANGUAGE_MODEL_LINEAR = (
    r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
)
"""LoRA targets: every linear layer of the text decoder, none of the vision tower."""

METHODS = ("lora", "qlora", "full")
"""Training methods: a LoRA adapter, the same on a 4-bit base, or every weight."""


@dataclass
class StageSettings:
    """Options every training stage takes. Every field is a ``guardvl train`` option.

    A stage's settings subclass this, add their own fields and override the defaults that
    differ (a redefined field keeps its place).
    """

    LEARNING_RATES: ClassVar[tuple[float, float]] = (5e-5, 2e-4)
    """The default peak learning rate for ``full`` and for the adapter methods."""

    AT_LEAST_ONE: ClassVar[tuple[str, ...]] = (
        "batch_size",
        "gradient_accumulation_steps",
        "lora_r",
        "logging_steps",
    )
    """Integer fields that must be 1 or more."""

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
            "choices": METHODS,
        },
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
    batch_size: int = field(default=4, metadata={"help": "Examples per device per step."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Steps accumulated per optimizer update."}
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
    logging_steps: int = field(default=10, metadata={"help": "Log every N steps."})
    save_steps: int = field(default=200, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept."})
    seed: int = field(default=42, metadata={"help": "Random seed."})
    resume: bool = field(
        default=False, metadata={"help": "Resume from the last checkpoint in OUTPUT."}
    )
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigurationError(f"method must be lora, qlora or full, not {self.method!r}")
        for name in self.AT_LEAST_ONE:
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1")
        if self.max_steps < 1 and self.epochs <= 0:
            raise ConfigurationError("give epochs > 0 or max_steps >= 1")

    @property
    def peak_learning_rate(self) -> float:
        """The learning rate, or the method's default (:attr:`LEARNING_RATES`)."""
        if self.learning_rate is not None:
            return self.learning_rate
        full, adapter = self.LEARNING_RATES
        return full if self.method == "full" else adapter


@dataclass(frozen=True)
class StageResult:
    """What a finished training run produced.

    Attributes:
        output: The output directory.
        model: What to pass to ``Guard.from_pretrained``: the output (full or merged), or None
            for an adapter (then ``Guard.from_pretrained(base, adapter=adapter)``).
        adapter: The adapter directory, for LoRA/QLoRA.
        steps: Optimizer steps run.
        seconds: Wall time of training (data preparation excluded).
    """

    output: Path
    model: Path | None
    adapter: Path | None
    steps: int
    seconds: float


def resolve_policy(settings: StageSettings) -> Policy:
    """``settings.policy``, else the policy saved with the base, else GuardReasoner-VL's."""
    if settings.policy:
        return Policy.load(settings.policy)
    return Policy.from_pretrained(settings.base) or GUARDREASONER_VL


def training_arguments(settings: StageSettings) -> dict[str, Any]:
    """The ``transformers.TrainingArguments`` both stages set the same way, as keywords."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "output_dir": settings.output,
        "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps,
        "learning_rate": settings.peak_learning_rate,
        "lr_scheduler_type": settings.lr_scheduler,
        "per_device_train_batch_size": settings.batch_size,
        "gradient_accumulation_steps": settings.gradient_accumulation_steps,
        "bf16": cuda if settings.bf16 is None else settings.bf16,
        "activation_checkpointing": settings.gradient_checkpointing,
        "logging_steps": settings.logging_steps,
        "save_strategy": "steps",
        "save_steps": settings.save_steps,
        "save_total_limit": settings.save_total_limit,
        "seed": settings.seed,
        "report_to": "none",
        "disable_tqdm": not settings.progress,
        "use_cpu": not cuda,
        "dataloader_pin_memory": cuda,
    }


def lora_config(settings: StageSettings) -> Any:
    """The ``peft.LoraConfig`` of an adapter method, or None for ``full``."""
    if settings.method == "full":
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=settings.lora_target_modules,
        task_type="CAUSAL_LM",
    )


def load_base(settings: StageSettings) -> tuple[Any, Any]:
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


def jsonl_log(path: Path) -> Any:
    """A ``TrainerCallback`` appending every log (loss, learning rate...) as a JSON line."""
    from transformers import TrainerCallback

    class JsonlLog(TrainerCallback):
        def on_log(
            self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any
        ) -> None:
            if not state.is_world_process_zero or not logs:
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as log:
                log.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    return JsonlLog()


@dataclass(frozen=True)
class Trained:
    """What :func:`train_and_save` returns: the trainer's outcome and where the guard is."""

    outcome: Any
    seconds: float
    model: Path | None
    adapter: Path | None


def train_and_save(
    trainer: Any, settings: StageSettings, policy: Policy, processor: Any
) -> Trained:
    """Train (resuming when asked), save model, processor and policy, and merge if asked.

    Raises:
        ConfigurationError: ``resume`` without a checkpoint in the output.
    """
    began = time.perf_counter()
    try:
        outcome = trainer.train(resume_from_checkpoint=True if settings.resume else None)
    except ValueError as exc:
        if settings.resume and "checkpoint" in str(exc).lower():
            raise ConfigurationError(f"cannot resume: {exc}") from exc
        raise
    seconds = time.perf_counter() - began

    output = Path(settings.output)
    trainer.save_model(str(output))
    processor.save_pretrained(str(output))
    policy.save(output)
    adapter = output if settings.method != "full" else None
    model: Path | None = output if settings.method == "full" else None
    if adapter is not None and settings.merge:
        model = merge_adapter(settings.base, adapter, output / "merged")
    return Trained(outcome=outcome, seconds=seconds, model=model, adapter=adapter)


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
