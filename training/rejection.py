"""Rejection sampling (REFERENCE.md §2): keep the items the current model gets wrong.

Each record is rendered by the policy (the prompt ``Guard`` sends), sampled ``k`` times by a
backend, and each sample is judged with :func:`~guardvl_sdk.training.rewards.safety_score`: a
sample is right when it is in format and both labels are right (``r_safety == 1``). By default an
item is kept when all ``k`` samples are wrong (the paper's "hard" items); ``keep="any_wrong"``
keeps it when at least one is.

Read from the paper: 4 samples per item at temperature 1.0 and top_p 0.95, keeping the items all
4 get wrong. Inferred: "wrong" means anything short of a fully right, well-formed answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from guardvl_sdk.backends.base import Backend, Prompt
from guardvl_sdk.errors import ConfigurationError
from guardvl_sdk.inputs import DEFAULT_MAX_PIXELS, load_images
from guardvl_sdk.policy import Policy
from guardvl_sdk.records import Record

from .rewards import safety_score

__all__ = ["Keep", "RejectionResult", "rejection_sample", "sampling_backend"]

Keep = Literal["all_wrong", "any_wrong"]


@dataclass(frozen=True)
class RejectionResult:
    """What rejection sampling kept.

    Attributes:
        kept: The kept records, in their original order.
        total: Records sampled.
        k: Samples per record.
        keep: The rule used (``all_wrong`` or ``any_wrong``).
        right: Per record (all of them, in order), how many of its ``k`` samples were right.
    """

    kept: list[Record]
    total: int
    k: int
    keep: str
    right: list[int]

    def summary(self) -> str:
        """One line: how many items were kept, by which rule."""
        share = len(self.kept) / self.total if self.total else 0.0
        return (
            f"rejection sampling kept {len(self.kept)} of {self.total} items ({share:.1%}; "
            f"{self.keep.replace('_', ' ')} of {self.k} samples)"
        )


def rejection_sample(
    records: Sequence[Record],
    backend: Backend,
    policy: Policy,
    *,
    k: int = 4,
    keep: Keep = "all_wrong",
    batch_size: int = 8,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> RejectionResult:
    """Sample ``k`` outputs per record with ``backend`` and keep the hard records.

    Args:
        records: Labelled records (a request label each; a response label with each response).
        backend: Generates with sampling, e.g. :func:`sampling_backend`. Any
            :class:`~guardvl_sdk.backends.base.Backend` works.
        policy: Renders the prompts and parses the samples.
        k: Samples per record.
        keep: ``"all_wrong"`` (the paper) or ``"any_wrong"``.
        batch_size: Records per backend call (each call holds ``batch_size * k`` prompts).
        max_pixels: Image pixel budget, as at inference.

    Raises:
        ConfigurationError: ``k < 1``, ``batch_size < 1``, an unknown ``keep`` rule, or a record
            without the labels it needs.
    """
    if k < 1 or batch_size < 1:
        raise ConfigurationError("k and batch_size must be at least 1")
    if keep not in ("all_wrong", "any_wrong"):
        raise ConfigurationError(f"keep must be all_wrong or any_wrong, not {keep!r}")
    for record in records:
        if record.request_label is None or (
            record.response is not None and record.response_label is None
        ):
            raise ConfigurationError(
                f"record {record.id!r}: rejection sampling needs a request label, and a response "
                "label with a response"
            )
    right: list[int] = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        prompts = [_prompt(r, policy, max_pixels) for r in chunk for _ in range(k)]
        generations = backend.generate(prompts)
        for index, record in enumerate(chunk):
            count = 0
            for generation in generations[index * k : (index + 1) * k]:
                if generation.error is not None or not generation.finished:
                    continue
                assert record.request_label is not None  # every record was checked above
                formatted, accuracy, _ = safety_score(
                    generation.text,
                    record.request_label,
                    record.response_label if record.response is not None else None,
                    policy=policy,
                )
                count += formatted * accuracy == 1.0
            right.append(count)
    kept = [
        record
        for record, count in zip(records, right, strict=True)
        if (count == 0 if keep == "all_wrong" else count < k)
    ]
    return RejectionResult(kept=kept, total=len(records), k=k, keep=keep, right=right)


def sampling_backend(
    model: str | Path | None = None,
    *,
    loaded: tuple[Any, Any] | None = None,
    temperature: float = 1.0,
    top_p: float = 0.95,
    max_new_tokens: int = 4096,
    device: str | None = None,
) -> Any:
    """A local backend that samples (the paper's rejection-sampling decoding by default).

    Args:
        model: A model directory or hub id to load (unquantized), or None with ``loaded``.
        loaded: An already loaded ``(model, processor)`` pair, e.g. the one about to be trained.
        temperature, top_p: Sampling settings (paper: 1.0 and 0.95).
        max_new_tokens: Generation bound; a sample that reaches it counts as wrong.
        device: For ``model``: where to load it.

    Returns:
        A :class:`~guardvl_sdk.backends.local.LocalBackend` whose generation samples.
    """
    from transformers import GenerationConfig

    from guardvl_sdk.backends.local import LocalBackend

    if (model is None) == (loaded is None):
        raise ConfigurationError("give either a model to load or a loaded (model, processor)")
    if loaded is not None:
        backend = LocalBackend(
            loaded[0], loaded[1], model_id="rejection-sampler", max_new_tokens=max_new_tokens
        )
    else:
        backend = LocalBackend.load(
            str(model), quantization=None, device=device, max_new_tokens=max_new_tokens
        )
    greedy = backend.generation_config
    backend.generation_config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        top_k=0,
        eos_token_id=greedy.eos_token_id,
        pad_token_id=greedy.pad_token_id,
        stop_strings=greedy.stop_strings,
    )
    return backend


def _prompt(record: Record, policy: Policy, max_pixels: int) -> Prompt:
    images = load_images([str(p) for p in record.images], max_pixels=max_pixels)
    return policy.render(record.request, images, response=record.response)
