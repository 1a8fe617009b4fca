"""Online RL (REFERENCE.md §2 stage 2): GRPO with trl's ``GRPOTrainer`` and the paper's recipe.

:func:`train_rl` runs the whole stage on labelled records (no reasoning needed):

1. rejection sampling with the starting model (:mod:`~guardvl_sdk.training.rejection`): keep the
   items all ``k`` samples get wrong;
2. safety-aware concatenation (:mod:`~guardvl_sdk.training.augment`): merged items make up a
   fraction (0.2) of the RL data;
3. GRPO without a KL term: ``num_generations`` rollouts per prompt, rewarded by the length-aware
   reward (:mod:`~guardvl_sdk.training.rewards`; ``beta = 1``, or ``1/6`` with ``eco``), with the
   clip range set before every optimizer step by a schedule (:func:`clip_value`) and logged as
   ``clip_epsilon``.

The prepared RL data is written to ``OUTPUT/rl_data/`` before training, so ``resume`` continues
on the same items. Every log line goes to ``OUTPUT/rl_log.jsonl``. The output loads in ``Guard``
like an SFT output: ``Guard.from_pretrained(output)`` (full) or
``Guard.from_pretrained(base, adapter=output)`` (LoRA).

The clip range only matters for off-policy updates: the GRPO ratio is exactly 1 on the first
update after a rollout. ``updates_per_rollout`` (default 4) and ``num_iterations`` make later
updates off-policy, so the schedule acts.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardvl_sdk.errors import ConfigurationError
from guardvl_sdk.policy import GUARDREASONER_VL, Policy
from guardvl_sdk.records import Record, load_records

if TYPE_CHECKING:
    from datasets import Dataset
    from trl.trainer.grpo_trainer import GRPOTrainer

__all__ = [
    "CLIP_SCHEDULES",
    "RLResult",
    "RLSettings",
    "build_rl_trainer",
    "clip_callback",
    "clip_value",
    "rl_dataset",
    "train_rl",
]

logger = logging.getLogger("guardvl_sdk")

CLIP_SCHEDULES = ("paper", "linear", "cosine", "constant")
"""Names accepted by :func:`clip_value`."""

RL_LOG = "rl_log.jsonl"
RL_DATA = "rl_data"


def clip_value(schedule: str, step: int, total: int, epsilon: float) -> float:
    """The clip range for optimizer step ``step`` (0-based) of ``total``.

    - ``paper``: ``epsilon * prod_{i=1..step} (total - i) / total``, the paper's decaying schedule
      as read from a garbled formula (REFERENCE.md §2). It starts at ``epsilon`` and decays faster
      than exponentially: ``0.2`` over 10 steps gives 0.2, 0.18, 0.144, ... 0.0302 at step 5 and
      7.3e-5 at step 9, the last. It reaches 0 only at ``step == total``, after training.
    - ``linear``: ``epsilon * (1 - step / total)``: 0.2 ... 0.1 at the middle ... 0.02 last.
    - ``cosine``: ``epsilon * (1 + cos(pi * step / total)) / 2``.
    - ``constant``: ``epsilon`` (plain GRPO).

    Raises:
        ValueError: An unknown schedule, ``total < 1``, or ``step`` outside ``[0, total]``.
    """
    if total < 1 or not 0 <= step <= total:
        raise ValueError(f"step {step} of {total}: need 0 <= step <= total and total >= 1")
    if schedule == "constant":
        return epsilon
    if schedule == "linear":
        return epsilon * (total - step) / total
    if schedule == "cosine":
        return epsilon * (1.0 + math.cos(math.pi * step / total)) / 2.0
    if schedule == "paper":
        value = epsilon
        for i in range(1, step + 1):
            value *= (total - i) / total
        return value
    raise ValueError(f"unknown clip schedule {schedule!r}; known: {', '.join(CLIP_SCHEDULES)}")


@dataclass
class RLSettings:
    """Settings of one GRPO run. Every field is a ``guardvl train rl`` option."""

    data: str = field(metadata={"help": "JSONL policy data with labels (reasoning not needed)."})
    base: str = field(
        metadata={"help": "Starting guard: an R-SFT output or a released GuardReasoner-VL model."}
    )
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
            "help": "lora (adapter), qlora (adapter on a 4-bit base) or full (the paper's).",
            "choices": ("lora", "qlora", "full"),
        },
    )
    eco: bool = field(
        default=False,
        metadata={"help": "The Eco variant: length cut-off beta = 1/6 instead of 1."},
    )
    length_cutoff: float | None = field(
        default=None,
        metadata={"help": "Length cut-off beta in (0, 1]. Default: 1, or 1/6 with --eco."},
    )
    rejection_samples: int = field(
        default=4,
        metadata={"help": "Samples per item for rejection sampling (paper: 4); 0 skips it."},
    )
    rejection_keep: str = field(
        default="all_wrong",
        metadata={
            "help": "Keep items whose samples are all wrong (paper) or any wrong.",
            "choices": ("all_wrong", "any_wrong"),
        },
    )
    rejection_temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature of rejection sampling (paper: 1.0)."}
    )
    rejection_top_p: float = field(
        default=0.95, metadata={"help": "top_p of rejection sampling (paper: 0.95)."}
    )
    concat_fraction: float = field(
        default=0.2,
        metadata={"help": "Share of concatenated items in the RL data (paper: 0.2); 0 skips it."},
    )
    num_generations: int = field(
        default=16, metadata={"help": "Rollouts per prompt, the GRPO group size (paper: 16)."}
    )
    temperature: float = field(
        default=1.2, metadata={"help": "Rollout sampling temperature (paper: 1.2)."}
    )
    top_p: float = field(default=1.0, metadata={"help": "Rollout top_p."})
    max_completion_length: int = field(
        default=1024,
        metadata={
            "help": "Rollout token bound; also normalises the reasoning length in the reward."
        },
    )
    clip_epsilon: float = field(
        default=0.2, metadata={"help": "Base clip range epsilon of the schedule (paper: 0.2)."}
    )
    clip_schedule: str = field(
        default="paper",
        metadata={
            "help": "Clip range over training: paper (decaying product), linear, cosine, constant.",
            "choices": CLIP_SCHEDULES,
        },
    )
    num_iterations: int = field(
        default=1, metadata={"help": "Passes over each rollout batch (GRPO's mu)."}
    )
    updates_per_rollout: int = field(
        default=4,
        metadata={"help": "Optimizer updates per rollout batch; later ones are off-policy."},
    )
    batch_size: int = field(
        default=16,
        metadata={
            "help": "Completions per device per forward pass (trl's per_device_train_batch_size)."
        },
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Forward passes accumulated per optimizer update."}
    )
    epochs: float = field(default=1.0, metadata={"help": "Passes over the RL data."})
    max_steps: int = field(
        default=-1, metadata={"help": "Stop after this many optimizer steps (-1: use epochs)."}
    )
    learning_rate: float | None = field(
        default=None,
        metadata={"help": "Learning rate. Default: 1e-6 for full (paper), 1e-5 for LoRA/QLoRA."},
    )
    weight_decay: float = field(default=1e-2, metadata={"help": "Weight decay (paper: 1e-2)."})
    lr_scheduler: str = field(default="constant", metadata={"help": "transformers LR schedule."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    merge: bool = field(
        default=False,
        metadata={"help": "Also write the adapter merged into the base to OUTPUT/merged."},
    )
    max_pixels: int = field(
        default=768 * 768, metadata={"help": "Pixel budget of images and merged images."}
    )
    skip_invalid: bool = field(
        default=False, metadata={"help": "Skip (and log) bad records instead of failing."}
    )
    bf16: bool | None = field(
        default=None, metadata={"help": "bfloat16 mixed precision. Default: on with CUDA."}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Trade compute for memory (large models)."}
    )
    logging_steps: int = field(default=1, metadata={"help": "Log rewards every N steps."})
    save_steps: int = field(default=50, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept."})
    seed: int = field(default=42, metadata={"help": "Random seed."})
    resume: bool = field(
        default=False,
        metadata={"help": "Resume from the last checkpoint in OUTPUT, on its saved RL data."},
    )
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self) -> None:
        if self.method not in ("lora", "qlora", "full"):
            raise ConfigurationError(f"method must be lora, qlora or full, not {self.method!r}")
        if self.clip_schedule not in CLIP_SCHEDULES:
            raise ConfigurationError(
                f"clip_schedule must be one of {', '.join(CLIP_SCHEDULES)}, "
                f"not {self.clip_schedule!r}"
            )
        if self.rejection_keep not in ("all_wrong", "any_wrong"):
            raise ConfigurationError("rejection_keep must be all_wrong or any_wrong")
        for name in (
            "batch_size",
            "gradient_accumulation_steps",
            "max_completion_length",
            "num_iterations",
            "updates_per_rollout",
            "logging_steps",
            "lora_r",
            "max_pixels",
        ):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1")
        if self.num_generations < 2:
            raise ConfigurationError("num_generations must be at least 2 (GRPO compares a group)")
        if self.rejection_samples < 0:
            raise ConfigurationError("rejection_samples must be 0 (off) or more")
        if not 0.0 <= self.concat_fraction < 1.0:
            raise ConfigurationError("concat_fraction must be in [0, 1)")
        if self.length_cutoff is not None and not 0.0 < self.length_cutoff <= 1.0:
            raise ConfigurationError("length_cutoff must be in (0, 1]")
        if self.clip_epsilon < 0:
            raise ConfigurationError("clip_epsilon must be >= 0")
        if self.max_steps < 1 and self.epochs <= 0:
            raise ConfigurationError("give epochs > 0 or max_steps >= 1")
        rollout = self.batch_size * self.gradient_accumulation_steps * self.updates_per_rollout
        if rollout % self.num_generations:
            raise ConfigurationError(
                f"a rollout batch (batch_size x gradient_accumulation_steps x updates_per_rollout "
                f"= {rollout} completions per device) must hold whole groups of num_generations "
                f"= {self.num_generations}"
            )

    @property
    def length_beta(self) -> float:
        """The length cut-off: ``length_cutoff``, else 1/6 with ``eco``, else 1."""
        from guardvl_sdk.training.rewards import ECO_BETA, STANDARD_BETA

        if self.length_cutoff is not None:
            return float(self.length_cutoff)
        return float(ECO_BETA if self.eco else STANDARD_BETA)

    @property
    def peak_learning_rate(self) -> float:
        """The learning rate, or the method's default."""
        if self.learning_rate is not None:
            return self.learning_rate
        return 1e-6 if self.method == "full" else 1e-5


@dataclass(frozen=True)
class RLResult:
    """What a finished GRPO run produced.

    Attributes:
        output: The output directory.
        model: What to pass to ``Guard.from_pretrained``: the output (full or merged), or None
            for an adapter (then ``Guard.from_pretrained(base, adapter=adapter)``).
        adapter: The adapter directory, for LoRA/QLoRA.
        steps: Optimizer steps run.
        seconds: Wall time of training (data preparation excluded).
        records: Labelled records read.
        hard: Records kept by rejection sampling (all of them when it is off).
        augmented: Concatenated items added.
        rejection: The rejection-sampling summary line, or None when it was off or resumed.
    """

    output: Path
    model: Path | None
    adapter: Path | None
    steps: int
    seconds: float
    records: int
    hard: int
    augmented: int
    rejection: str | None = None

    @property
    def items(self) -> int:
        """RL items trained on: hard plus augmented."""
        return self.hard + self.augmented


def rl_dataset(records: Sequence[Record], policy: Policy) -> Dataset:
    """RL examples as a ``datasets.Dataset``: the SFT prompt plus the gold labels as columns.

    Columns: ``prompt`` and ``images`` exactly as :func:`~guardvl_sdk.training.data.as_dataset`
    builds them (what ``Guard`` sends), ``id``, ``request_label`` and ``response_label`` (None
    without a response), which trl forwards to the reward functions.

    Raises:
        InvalidDataError: Records without the labels they need (every one listed).
    """
    from datasets import Dataset, Image, List

    from guardvl_sdk.training.data import to_examples

    examples = to_examples(records, policy, label_only=True)
    rows = [
        {
            "prompt": example["prompt"],
            "images": example["images"],
            "id": example["id"],
            "request_label": record.request_label.value if record.request_label else None,
            "response_label": (
                record.response_label.value
                if record.response is not None and record.response_label
                else None
            ),
        }
        for example, record in zip(examples, records, strict=True)
    ]
    return Dataset.from_list(rows).cast_column("images", List(Image()))


def train_rl(
    settings: RLSettings,
    *,
    policy: Policy | None = None,
    records: Sequence[Record] | None = None,
    callbacks: Sequence[Any] = (),
) -> RLResult:
    """Run the RL stage end to end: rejection sampling, concatenation, GRPO, saving.

    Args:
        settings: The run's settings.
        policy: Overrides ``settings.policy`` (and the base's saved policy).
        records: Use these instead of reading ``settings.data``.
        callbacks: Extra ``transformers.TrainerCallback`` objects.

    Raises:
        InvalidDataError: Bad records (every one listed).
        ConfigurationError: Bad settings, no hard item left, or ``resume`` without a checkpoint.
        ModelLoadError: The base model could not be loaded.
        MissingExtraError: The [train] extra is not installed.
    """
    from guardvl_sdk.extras import require
    from guardvl_sdk.training.sft import merge_adapter

    require("train", "guardvl train rl")

    policy = policy or _resolve_policy(settings)
    output = Path(settings.output)
    saved = output / RL_DATA / "data.jsonl"
    args = _grpo_config(settings)  # before the model: under ZeRO-3 this makes loading shard
    model, processor = _load(settings)

    from accelerate import PartialState

    state = PartialState()
    fresh = not (settings.resume and saved.is_file())
    if fresh and state.is_main_process:  # one process prepares; every process reads the file
        if records is None:
            records = load_records(settings.data, skip_invalid=settings.skip_invalid)
        _prepare(settings, list(records), policy, model, processor, output / RL_DATA)
    state.wait_for_everyone()
    items = load_records(saved)
    summary = json.loads((output / RL_DATA / "summary.json").read_text(encoding="utf-8"))
    rejection: str | None = summary["rejection"] if fresh else None

    dataset = rl_dataset(items, policy)
    trainer = build_rl_trainer(
        settings, dataset, policy, model, processor, args=args, callbacks=callbacks
    )

    began = time.perf_counter()
    try:
        outcome = trainer.train(resume_from_checkpoint=True if settings.resume else None)
    except ValueError as exc:
        if settings.resume and "checkpoint" in str(exc).lower():
            raise ConfigurationError(f"cannot resume: {exc}") from exc
        raise
    seconds = time.perf_counter() - began

    trainer.save_model(str(output))
    processor.save_pretrained(str(output))
    policy.save(output)
    adapter = output if settings.method != "full" else None
    trained: Path | None = output if settings.method == "full" else None
    if adapter is not None and settings.merge:
        trained = merge_adapter(settings.base, adapter, output / "merged")
    return RLResult(
        output=output,
        model=trained,
        adapter=adapter,
        steps=outcome.global_step,
        seconds=seconds,
        records=summary["records"],
        hard=summary["hard"],
        augmented=summary["augmented"],
        rejection=rejection,
    )


def build_rl_trainer(
    settings: RLSettings,
    dataset: Dataset,
    policy: Policy,
    model: Any,
    processor: Any,
    *,
    args: Any = None,
    callbacks: Sequence[Any] = (),
) -> GRPOTrainer:
    """A ``GRPOTrainer`` with the recipe's rewards, no KL term, and the clip schedule.

    Rewards: the length-aware reward trains (weight 1); accuracy and format are logged beside it
    (weight 0) as ``rewards/accuracy_reward/mean`` and ``rewards/format_reward/mean``. The clip
    range is logged as ``clip_epsilon``; every log line is appended to ``OUTPUT/rl_log.jsonl``.
    """
    from peft import LoraConfig

    from guardvl_sdk.training.rewards import guard_rewards
    from guardvl_sdk.training.sft import LANGUAGE_MODEL_LINEAR, _loss_log

    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"  # generation pads on the left

    def count_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    peft_config = None
    if settings.method != "full":
        peft_config = LoraConfig(
            r=settings.lora_r,
            lora_alpha=settings.lora_alpha,
            lora_dropout=settings.lora_dropout,
            target_modules=LANGUAGE_MODEL_LINEAR,
            task_type="CAUSAL_LM",
        )
    schedule = clip_callback(settings.clip_schedule, settings.clip_epsilon)
    trainer = _trainer_class()(
        model=model,
        reward_funcs=guard_rewards(
            policy,
            max_length=settings.max_completion_length,
            count_tokens=count_tokens,
            beta=settings.length_beta,
        ),
        args=args if args is not None else _grpo_config(settings),
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config,
        callbacks=[schedule, _loss_log(Path(settings.output) / RL_LOG), *callbacks],
    )
    schedule.trainer = trainer
    return trainer


def _trainer_class() -> type[GRPOTrainer]:
    from trl.trainer.grpo_trainer import GRPOTrainer

    class GuardGRPOTrainer(GRPOTrainer):
        """``GRPOTrainer`` that takes batches mixing prompts with and without images.

        Two gaps of trl 1.16 with Qwen2.5-VL, closed here: a text-only prompt's images are None
        next to image prompts (the processor takes an empty list, not None), and a chunk of rows
        without any image is sent to the vision tower with empty inputs (it fails): such chunks
        are scored without vision inputs.
        """

        def _generate(self, prompts: list[Any]) -> Any:
            out = super()._generate(prompts)
            images = out[6]
            if images is not None:
                out = (*out[:6], [found or [] for found in images], *out[7:])
            return out

        def _get_per_token_logps_and_entropies(
            self,
            model: Any,
            input_ids: Any,
            attention_mask: Any,
            logits_to_keep: int,
            batch_size: int | None = None,
            compute_entropy: bool = False,
            compute_aux_loss: bool = False,
            **vision: Any,
        ) -> Any:
            import torch

            parent = super()._get_per_token_logps_and_entropies
            counts = vision.get("num_images")
            grid = vision.get("image_grid_thw")
            pixels = vision.get("pixel_values")
            size = batch_size or input_ids.size(0)
            starts = range(0, input_ids.size(0), size)
            other = {"mm_token_type_ids", "token_type_ids", "num_images", "image_grid_thw"}
            if (
                counts is None
                or grid is None
                or pixels is None
                or any(
                    v is not None for k, v in vision.items() if k not in other | {"pixel_values"}
                )
                or all(sum(counts[s : s + size]) for s in starts)
            ):
                return parent(
                    model,
                    input_ids,
                    attention_mask,
                    logits_to_keep,
                    batch_size,
                    compute_entropy,
                    compute_aux_loss,
                    **vision,
                )
            image_at = [0, *accumulate(counts)]
            row_at = [0, *accumulate(grid.prod(dim=-1).tolist())]
            logps, entropies, aux = [], [], []
            for start in starts:
                end = min(start + size, input_ids.size(0))
                first, last = image_at[start], image_at[end]
                chunk: dict[str, Any] = {
                    key: vision[key][start:end]
                    for key in ("mm_token_type_ids", "token_type_ids")
                    if vision.get(key) is not None
                }
                if last > first:
                    chunk["pixel_values"] = pixels[row_at[first] : row_at[last]]
                    chunk["image_grid_thw"] = grid[first:last]
                    chunk["num_images"] = counts[start:end]
                out = parent(
                    model,
                    input_ids[start:end],
                    attention_mask[start:end],
                    logits_to_keep,
                    None,
                    compute_entropy,
                    compute_aux_loss,
                    **chunk,
                )
                logps.append(out[0])
                entropies.append(out[1])
                aux.append(out[2])
            return (
                torch.cat(logps, dim=0),
                torch.cat(entropies, dim=0) if compute_entropy else None,
                torch.stack(aux).mean() if compute_aux_loss else None,
            )

    return GuardGRPOTrainer


def clip_callback(schedule: str, epsilon: float) -> Any:
    """A ``TrainerCallback`` that sets GRPO's clip range before every optimizer step.

    ``GRPOTrainer.compute_loss`` clamps the probability ratio to ``[1 - trainer.epsilon_low,
    1 + trainer.epsilon_high]``; the callback sets both to :func:`clip_value` of the step about
    to run (``state.global_step``, 0-based) out of ``state.max_steps``, records it in ``values``
    and logs it as ``clip_epsilon``. Set its ``trainer`` attribute to the trainer.
    """
    from transformers import TrainerCallback

    clip_value(schedule, 0, 1, epsilon)  # fails early on an unknown schedule

    class ClipSchedule(TrainerCallback):
        def __init__(self) -> None:
            self.trainer: Any = None
            self.values: list[tuple[int, float]] = []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.trainer is None:
                raise ConfigurationError("the clip callback's trainer is not set")
            value = clip_value(schedule, state.global_step, state.max_steps, epsilon)
            self.trainer.epsilon_low = self.trainer.epsilon_high = value
            self.values.append((state.global_step, value))
            # GRPOTrainer averages its _metrics into every log line (console, log_history, files).
            self.trainer._metrics["train"]["clip_epsilon"].append(value)

    return ClipSchedule()


def _grpo_config(settings: RLSettings) -> Any:
    import torch
    from trl.trainer.grpo_config import GRPOConfig

    cuda = torch.cuda.is_available()
    return GRPOConfig(
        output_dir=settings.output,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        learning_rate=settings.peak_learning_rate,
        weight_decay=settings.weight_decay,
        lr_scheduler_type=settings.lr_scheduler,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        steps_per_generation=settings.gradient_accumulation_steps * settings.updates_per_rollout,
        num_iterations=settings.num_iterations,
        num_generations=settings.num_generations,
        max_completion_length=settings.max_completion_length,
        temperature=settings.temperature,
        top_p=settings.top_p,
        top_k=0,
        beta=0.0,  # no KL term (the paper), so no reference model is loaded
        epsilon=settings.clip_epsilon,  # the schedule overrides it every step
        loss_type="grpo",
        scale_rewards="group",
        reward_weights=[1.0, 0.0, 0.0],  # train on the length-aware reward; log the others
        remove_unused_columns=False,
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


def _load(settings: RLSettings) -> tuple[Any, Any]:
    from guardvl_sdk.training.sft import SFTSettings, load_base

    loaded: tuple[Any, Any] = load_base(
        SFTSettings(
            data=settings.data, base=settings.base, output=settings.output, method=settings.method
        )
    )
    return loaded


def _rejection(
    settings: RLSettings, records: list[Record], policy: Policy, model: Any, processor: Any
) -> tuple[list[Record], str]:
    from guardvl_sdk.training.rejection import rejection_sample, sampling_backend

    backend = sampling_backend(
        loaded=(model, processor),
        temperature=settings.rejection_temperature,
        top_p=settings.rejection_top_p,
        max_new_tokens=settings.max_completion_length,
    )
    was_training = model.training
    model.eval()
    try:
        result = rejection_sample(
            records,
            backend,
            policy,
            k=settings.rejection_samples,
            keep=settings.rejection_keep,
            max_pixels=settings.max_pixels,
        )
    finally:
        model.train(was_training)
    summary = result.summary()
    logger.warning("%s", summary)
    if not result.kept:
        raise ConfigurationError(
            f"{summary}: nothing to train on. The model already answers every item right; "
            "use more or harder data, --rejection-keep any_wrong, a higher "
            "--rejection-temperature, or --rejection-samples 0"
        )
    return result.kept, summary


def _prepare(
    settings: RLSettings,
    records: list[Record],
    policy: Policy,
    model: Any,
    processor: Any,
    folder: Path,
) -> None:
    """Rejection sampling and concatenation; the RL items and their counts go to ``folder``."""
    from guardvl_sdk.training.augment import augment
    from guardvl_sdk.training.data import to_examples

    to_examples(records, policy, label_only=True)  # every bad record listed, before sampling
    hard, rejection = records, None
    if settings.rejection_samples > 0:
        hard, rejection = _rejection(settings, records, policy, model, processor)
    made = augment(
        hard,
        fraction=settings.concat_fraction,
        image_dir=folder / "images",
        seed=settings.seed,
        max_pixels=settings.max_pixels,
    )
    counts = {"records": len(records), "hard": len(hard), "augmented": len(made)}
    _save_items(folder, [*hard, *made], {**counts, "rejection": rejection})


def _save_items(folder: Path, items: Sequence[Record], summary: dict[str, Any]) -> None:
    """Write the RL items as JSONL (absolute image paths) and the counts, for ``resume``."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for item in items:
        row: dict[str, Any] = {
            "id": item.id,
            "request": item.request,
            "images": [str(p) for p in item.images],
            "request_label": item.request_label.value if item.request_label else None,
        }
        if item.response is not None:
            row["response"] = item.response
            row["response_label"] = item.response_label.value if item.response_label else None
        if item.categories:
            row["category"] = item.categories
        lines.append(json.dumps({k: v for k, v in row.items() if v is not None}))
    (folder / "data.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")


def _resolve_policy(settings: RLSettings) -> Policy:
    if settings.policy:
        return Policy.load(settings.policy)
    return Policy.from_pretrained(settings.base) or GUARDREASONER_VL
