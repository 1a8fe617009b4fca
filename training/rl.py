"""Online RL (REFERENCE.md §2 stage 2): GRPO with trl's ``GRPOTrainer`` and the paper's recipe.

One module over 400 lines on purpose: the RL stage's settings, data preparation and trl wiring
(shared parts: stage.py; trl patch: grpo_patch.py).

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from guardvl_sdk.errors import ConfigurationError
from guardvl_sdk.policy import Policy
from guardvl_sdk.records import Record, load_records

from .stage import (
    StageResult,
    StageSettings,
    jsonl_log,
    load_base,
    lora_config,
    resolve_policy,
    train_and_save,
    training_arguments,
)

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
class RLSettings(StageSettings):
    """Settings of one GRPO run. Every field is a ``guardvl train rl`` option."""

    LEARNING_RATES: ClassVar[tuple[float, float]] = (1e-6, 1e-5)
    AT_LEAST_ONE: ClassVar[tuple[str, ...]] = (
        *StageSettings.AT_LEAST_ONE,
        "max_completion_length",
        "num_iterations",
        "updates_per_rollout",
        "max_pixels",
    )

    data: str = field(metadata={"help": "JSONL policy data with labels (reasoning not needed)."})
    base: str = field(
        metadata={"help": "Starting guard: an R-SFT output or a released GuardReasoner-VL model."}
    )
    epochs: float = field(default=1.0, metadata={"help": "Passes over the RL data."})
    learning_rate: float | None = field(
        default=None,
        metadata={"help": "Learning rate. Default: 1e-6 for full (paper), 1e-5 for LoRA/QLoRA."},
    )
    lr_scheduler: str = field(default="constant", metadata={"help": "transformers LR schedule."})
    batch_size: int = field(
        default=16,
        metadata={
            "help": "Completions per device per forward pass (trl's per_device_train_batch_size)."
        },
    )
    logging_steps: int = field(default=1, metadata={"help": "Log rewards every N steps."})
    save_steps: int = field(default=50, metadata={"help": "Checkpoint every N steps."})
    resume: bool = field(
        default=False,
        metadata={"help": "Resume from the last checkpoint in OUTPUT, on its saved RL data."},
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
    weight_decay: float = field(default=1e-2, metadata={"help": "Weight decay (paper: 1e-2)."})
    max_pixels: int = field(
        default=768 * 768, metadata={"help": "Pixel budget of images and merged images."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.clip_schedule not in CLIP_SCHEDULES:
            raise ConfigurationError(
                f"clip_schedule must be one of {', '.join(CLIP_SCHEDULES)}, "
                f"not {self.clip_schedule!r}"
            )
        if self.rejection_keep not in ("all_wrong", "any_wrong"):
            raise ConfigurationError("rejection_keep must be all_wrong or any_wrong")
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
        from .rewards import ECO_BETA, STANDARD_BETA

        if self.length_cutoff is not None:
            return float(self.length_cutoff)
        return float(ECO_BETA if self.eco else STANDARD_BETA)


@dataclass(frozen=True)
class RLResult(StageResult):
    """What a finished GRPO run produced (see :class:`~guardvl_sdk.training.stage.StageResult`).

    Attributes:
        records: Labelled records read.
        hard: Records kept by rejection sampling (all of them when it is off).
        augmented: Concatenated items added.
        rejection: The rejection-sampling summary line, or None when it was off or resumed.
    """

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

    from .data import to_examples

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

    require("train", "guardvl train rl")

    policy = policy or resolve_policy(settings)
    output = Path(settings.output)
    saved = output / RL_DATA / "data.jsonl"
    args = _grpo_config(settings)  # before the model: under ZeRO-3 this makes loading shard
    model, processor = load_base(settings)

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

    trained = train_and_save(trainer, settings, policy, processor)
    return RLResult(
        output=output,
        model=trained.model,
        adapter=trained.adapter,
        steps=trained.outcome.global_step,
        seconds=trained.seconds,
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
    from .rewards import guard_rewards

    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"  # generation pads on the left

    def count_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    schedule = clip_callback(settings.clip_schedule, settings.clip_epsilon)
    from .grpo_patch import GuardGRPOTrainer

    rewards = guard_rewards(
        policy,
        max_length=settings.max_completion_length,
        count_tokens=count_tokens,
        beta=settings.length_beta,
    )
    trainer = GuardGRPOTrainer(
        model=model,
        # trl types a reward function's scores as list[float | None] (None: not applicable);
        # ours are all floats, which list's invariance cannot express.
        reward_funcs=cast("Any", rewards),
        args=args if args is not None else _grpo_config(settings),
        train_dataset=dataset,
        processing_class=processor,
        peft_config=lora_config(settings),
        callbacks=[schedule, jsonl_log(Path(settings.output) / RL_LOG), *callbacks],
    )
    schedule.trainer = trainer
    return trainer


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
    from trl.trainer.grpo_config import GRPOConfig

    return GRPOConfig(
        **training_arguments(settings),
        weight_decay=settings.weight_decay,
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
    )


def _rejection(
    settings: RLSettings, records: list[Record], policy: Policy, model: Any, processor: Any
) -> tuple[list[Record], str]:
    from .rejection import Keep, rejection_sample, sampling_backend

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
            keep=cast("Keep", settings.rejection_keep),  # checked by RLSettings.__post_init__
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
    from .augment import augment
    from .data import to_examples

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
