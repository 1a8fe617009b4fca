"""The local backend: a guard model loaded in this process with transformers.

Loading (device, dtype, quantization, adapter) is :mod:`guardvl_sdk.backends.loading`; the
instruction-prefix cache is :mod:`guardvl_sdk.backends.prefix_cache`; this module generates.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guardvl_sdk.backends.base import Generation, Prompt
from guardvl_sdk.backends.loading import Quantization, load_model
from guardvl_sdk.backends.prefix_cache import InstructionPrefix, forget_rope_deltas
from guardvl_sdk.backends.scoring import STOP_STRINGS, label_side, label_token_index
from guardvl_sdk.errors import ConfigurationError

__all__ = ["LocalBackend", "Quantization"]


class LocalBackend:
    """Greedy generation with a transformers image-text-to-text model (Qwen2.5-VL).

    A call with several prompts runs them as one left-padded batch. Concurrent callers (threads,
    or asyncio tasks through :meth:`agenerate`) are batched dynamically: prompts arriving within
    ``batch_window_ms`` of each other, or while the model is busy, run together in one
    ``generate`` (up to ``max_batch_size`` prompts), and each caller gets its own outputs (see
    :mod:`guardvl_sdk.backends.batching`). One ``generate`` runs at a time on the model.

    Every check starts with the same tokens: the chat template's system turn holding the
    policy's instruction. Their key/value cache is computed once per instruction and reused
    (``prefix_cache``): each prompt's own tokens (images, transcript) are padded on the left of
    themselves, *after* the shared prefix, so a batch of any lengths reuses it too. Greedy output
    is the same, token for token, with and without reuse (tested).

    Args:
        model: A loaded ``PreTrainedModel`` with ``generate``.
        processor: Its ``ProcessorMixin`` (chat template, tokenizer, image processor).
        model_id: Reported in verdicts.
        max_new_tokens: Generation bound; an output that reaches it is ``truncated``.
        max_time: Seconds one ``generate`` call may take; outputs cut by it are ``truncated``
            (so the guard's failure policy decides). None: no time limit.
        batch_window_ms: How long the first of several concurrent callers waits for others to
            join its batch (a lone caller's added latency is at most this). None: no dynamic
            batching; concurrent calls run one after another.
        max_batch_size: Most prompts one dynamic batch gathers.
        prefix_cache: Reuse the shared instruction prefix's key/value cache.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        model_id: str,
        max_new_tokens: int = 1024,
        max_time: float | None = None,
        batch_window_ms: float | None = 5.0,
        max_batch_size: int = 16,
        prefix_cache: bool = True,
    ) -> None:
        from transformers import GenerationConfig

        from guardvl_sdk.backends.batching import Batcher

        if max_new_tokens < 1:
            raise ConfigurationError("max_new_tokens must be at least 1")
        if (batch_window_ms is not None and batch_window_ms < 0) or max_batch_size < 1:
            raise ConfigurationError("need batch_window_ms >= 0 (or None) and max_batch_size >= 1")
        self.model = model
        self.processor = processor
        self.model_id = model_id
        self.max_new_tokens = max_new_tokens
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "left"  # decoder-only batching pads on the left
        eos = model.generation_config.eos_token_id
        eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
            eos_ids.append(tokenizer.eos_token_id)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
        self._end_ids = set(eos_ids) | {pad_id}
        # A clean config: pure greedy as the authors decoded, whatever sampling defaults
        # (temperature, repetition penalty) the checkpoint ships with.
        self.generation_config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos_ids,
            pad_token_id=pad_id,
            stop_strings=list(STOP_STRINGS),
            max_time=max_time,
        )
        self._lock = threading.Lock()
        self._label_ids = _label_token_ids(tokenizer)
        self.prefix_cache = prefix_cache
        self._prefixes: dict[str, InstructionPrefix | None] = {}
        self._batcher: Batcher[Prompt, Generation] | None = None
        if batch_window_ms is not None:
            self._batcher = Batcher(
                self._generate_now, window=batch_window_ms / 1000, max_batch_size=max_batch_size
            )

    @classmethod
    def load(
        cls,
        model_id: str | Path,
        *,
        quantization: Quantization = "auto",
        device: str | None = None,
        dtype: str | Any | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        max_new_tokens: int = 1024,
        max_time: float | None = None,
        adapter: str | Path | None = None,
        batch_window_ms: float | None = 5.0,
        max_batch_size: int = 16,
        prefix_cache: bool = True,
        **model_kwargs: Any,
    ) -> LocalBackend:
        """Load a model and its processor with ``AutoProcessor`` / ``AutoModelForImageTextToText``.

        Args:
            model_id: A Hugging Face model id or a local directory.
            quantization: ``"auto"`` (4-bit nf4 on CUDA, none elsewhere), ``"4bit"``, ``"8bit"``
                (bitsandbytes) or None.
            device: ``"cuda"``, ``"cuda:1"``, ``"cpu"``...; default: CUDA when available.
            dtype: Weights (and 4-bit compute) dtype; default bfloat16 on CUDA, float32 on CPU.
            revision: A branch, tag or commit of the model repository.
            trust_remote_code: Run code shipped with the checkpoint. Off unless you ask.
            max_new_tokens: Generation bound.
            max_time: Seconds one ``generate`` call may take (see :class:`LocalBackend`).
            adapter: A PEFT (LoRA) adapter to apply on top of the model (needs ``peft``).
            batch_window_ms, max_batch_size: Dynamic batching (see :class:`LocalBackend`).
            prefix_cache: Reuse the instruction prefix's key/value cache (see
                :class:`LocalBackend`).
            **model_kwargs: Passed on to ``from_pretrained`` of the model.
        """
        model, processor, name = load_model(
            model_id,
            quantization=quantization,
            device=device,
            dtype=dtype,
            revision=revision,
            trust_remote_code=trust_remote_code,
            adapter=adapter,
            **model_kwargs,
        )
        return cls(
            model,
            processor,
            model_id=name,
            max_new_tokens=max_new_tokens,
            max_time=max_time,
            batch_window_ms=batch_window_ms,
            max_batch_size=max_batch_size,
            prefix_cache=prefix_cache,
        )

    @property
    def device(self) -> Any:
        """The device of the model's inputs."""
        return self.model.device

    def generate(self, prompts: Sequence[Prompt]) -> list[Generation]:
        """Generate greedily for ``prompts``, batched with those of concurrent callers."""
        if not prompts:
            return []
        if self._batcher is None:
            return self._generate_now(prompts)
        return self._batcher(prompts)

    async def agenerate(self, prompts: Sequence[Prompt]) -> list[Generation]:
        """Like :meth:`generate`, awaiting the model without blocking the event loop.

        Cancelling the awaiting task withdraws prompts that have not started generating.
        """
        import asyncio

        if not prompts:
            return []
        if self._batcher is None:
            return await asyncio.to_thread(self._generate_now, prompts)
        return await self._batcher.asubmit(prompts)

    def label_probability(
        self, prompts: Sequence[Prompt], *, continuation: str
    ) -> list[float | None]:
        """P(harmful) of the label token right after ``continuation``, in one forward pass.

        ``continuation`` is what the assistant has written before the label (for triage: an
        empty reasoning block and ``<result>\nRequest:``). Same definition as the score.
        """
        import copy

        if not prompts:
            return []
        config = copy.deepcopy(self.generation_config)
        config.max_new_tokens, config.min_new_tokens, config.stop_strings = 1, None, None
        _, _, _, table = self._run(prompts, config, continuation=continuation)
        if table is None:
            return [None] * len(prompts)
        return [_share(*table[row, 0].tolist()) for row in range(len(prompts))]

    def _generate_now(self, prompts: Sequence[Prompt]) -> list[Generation]:
        """Generate greedily for ``prompts`` as one left-padded batch, now."""
        new_tokens, prompt_lengths, _, label_logits = self._run(prompts, self.generation_config)
        return [
            self._to_generation(
                tokens,
                int(length),
                score_label=prompt.score_label,
                label_logits=None if label_logits is None else label_logits[row],
            )
            for row, (tokens, length, prompt) in enumerate(
                zip(new_tokens, prompt_lengths, prompts, strict=True)
            )
        ]

    def _run(
        self, prompts: Sequence[Prompt], config: Any, *, continuation: str = ""
    ) -> tuple[list[list[int]], list[int], Any, Any]:
        """One ``generate`` call: new tokens, prompt lengths, the output, the label logits."""
        import torch

        texts = [
            self.processor.apply_chat_template(
                p.messages, tokenize=False, add_generation_prompt=True
            )
            + continuation
            for p in prompts
        ]
        images = [image for p in prompts for image in p.images]
        with self._lock, torch.inference_mode():
            inputs = self.processor(
                text=texts, images=images or None, padding=True, return_tensors="pt"
            )
            extra: dict[str, Any] = {}
            prefix = self._prefix(prompts) if self.prefix_cache else None
            if prefix is not None and prefix.starts(inputs):
                inputs = prefix.move_padding(inputs)
                extra["past_key_values"] = prefix.cache_for(len(texts))
            inputs = inputs.to(self.device)
            forget_rope_deltas(self.model)
            recorder = _LabelLogits(*self._label_ids, device=self.device)
            output = self.model.generate(
                **inputs,
                **extra,
                generation_config=config,
                tokenizer=self.processor.tokenizer,
                logits_processor=[recorder],
            )
        new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()
        prompt_lengths = [int(n) for n in inputs["attention_mask"].sum(dim=1).tolist()]
        return new_tokens, prompt_lengths, output, recorder.table()

    def _prefix(self, prompts: Sequence[Prompt]) -> InstructionPrefix | None:
        """The shared prefix of these prompts (their common system turn), computed once."""
        import json

        systems = {json.dumps(p.messages[:1], sort_keys=True) for p in prompts}
        if len(systems) != 1 or not prompts[0].messages:
            return None
        key = systems.pop()
        if key not in self._prefixes:
            if len(self._prefixes) >= 8:  # a few policies per process at most; stay bounded
                self._prefixes.pop(next(iter(self._prefixes)))
            system = prompts[0].messages[0]
            self._prefixes[key] = InstructionPrefix.compute(self.model, self.processor, system)
        return self._prefixes[key]

    def _to_generation(
        self,
        tokens: list[int],
        prompt_tokens: int,
        *,
        score_label: str = "request",
        label_logits: Any = None,
    ) -> Generation:
        end = next((i for i, token in enumerate(tokens) if token in self._end_ids), None)
        kept = tokens if end is None else tokens[:end]
        tokenizer = self.processor.tokenizer
        text = tokenizer.decode(kept, skip_special_tokens=True)
        finished = end is not None or any(stop in text for stop in STOP_STRINGS)
        completion_tokens = len(kept) + (1 if end is not None else 0)
        score = None
        if label_logits is not None and score_label in text.lower():
            pieces = tokenizer.batch_decode([[token] for token in kept])
            index = label_token_index(pieces, score_label)
            if index is not None and index < len(label_logits):
                harmful, unharmful = label_logits[index].tolist()
                score = _share(harmful, unharmful)
        return Generation(
            text=text,
            finished=finished,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            score=score,
        )


class _LabelLogits:
    """A logits processor that keeps, at each step, the logits of the label alternatives only.

    One small gather per step from the logits the generation computes anyway, so the score costs
    no extra forward pass and no vocabulary-sized copies. Scores pass through unchanged.
    """

    def __init__(self, harmful: list[int], unharmful: list[int], *, device: Any) -> None:
        import torch

        self._ids = torch.tensor([*harmful, *unharmful], dtype=torch.long, device=device)
        self._harmful = len(harmful)
        self._enabled = bool(harmful) and bool(unharmful)
        self._steps: list[Any] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self._enabled:
            self._steps.append(scores.index_select(1, self._ids))
        return scores

    def table(self) -> Any:
        """A ``(batch, steps, 2)`` CPU tensor of log-sum-exps (harmful, unharmful), or None."""
        import torch

        if not self._steps:
            return None
        logits = torch.stack(self._steps, dim=1).float().cpu()
        harmful = logits[..., : self._harmful].logsumexp(-1)
        unharmful = logits[..., self._harmful :].logsumexp(-1)
        return torch.stack([harmful, unharmful], dim=-1)


def _share(harmful: float, unharmful: float) -> float | None:
    """exp(harmful) / (exp(harmful) + exp(unharmful)), from log-sum-exps; None if both are -inf."""
    import math

    top = max(harmful, unharmful)
    if top == -math.inf or math.isnan(top):
        return None
    h, u = math.exp(harmful - top), math.exp(unharmful - top)
    return h / (h + u)


def _label_token_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The vocabulary's harmful and unharmful label alternatives (see ``label_side``)."""
    import re

    harmful, unharmful = [], []
    for token, index in tokenizer.get_vocab().items():
        # Byte-level symbols stand for spaces and newlines: only decode plausible candidates.
        if re.sub(r"^[^a-z]+", "", token.lower())[:1] not in ("h", "u", "n"):
            continue
        side = label_side(tokenizer.convert_tokens_to_string([token]))
        if side is True:
            harmful.append(index)
        elif side is False:
            unharmful.append(index)
    return sorted(harmful), sorted(unharmful)
