"""The local backend: a guard model loaded in this process with transformers.

One module over 400 lines on purpose: one job, generating in this process (encode, batch, generate,
score), sync and async.

Loading (device, dtype, quantization, adapter) is :mod:`guardvl_sdk.backends.loading`; the
instruction-prefix cache is :mod:`guardvl_sdk.backends.prefix_cache`; this module generates.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardvl_sdk.backends.base import DEFAULT_MAX_TIME, DEFAULT_TIMEOUT, Generation, Prompt
from guardvl_sdk.backends.loading import Quantization, load_model
from guardvl_sdk.backends.prefix_cache import (
    InstructionPrefix,
    cache_argument,
    forget_rope_deltas,
)
from guardvl_sdk.backends.scoring import STOP_STRINGS, label_side, label_token_index
from guardvl_sdk.errors import BackendTimeoutError, ConfigurationError

__all__ = ["DEFAULT_MAX_TIME", "DEFAULT_TIMEOUT", "LocalBackend", "Quantization"]


class LocalBackend:
    """Greedy generation with a transformers image-text-to-text model (Qwen2.5-VL).

    A call with several prompts runs them as one left-padded batch. Concurrent callers (threads,
    or asyncio tasks through :meth:`agenerate`) are batched dynamically: prompts arriving while
    the model is busy, or within ``batch_window_ms`` of each other, run together in one
    ``generate`` (up to ``max_batch_size`` prompts), and each caller gets its own outputs as soon
    as its row has ended (see :mod:`guardvl_sdk.backends.batching`). One ``generate`` runs at a
    time on the model; the processor work of the next prompts runs meanwhile on their callers'
    threads.

    Every check starts with the same tokens: the chat template's system turn holding the
    policy's instruction. Their key/value cache is computed once per instruction and reused
    (``prefix_cache``): each prompt's own tokens (images, transcript) are padded on the left of
    themselves, *after* the shared prefix, so a batch of any lengths reuses it too. Greedy output
    is the same, token for token, with and without reuse (tested).

    Args:
        model: A loaded ``PreTrainedModel`` with ``generate``.
        processor: Its ``ProcessorMixin`` (chat template, tokenizer, image processor).
        model_id: Reported in verdicts.
        max_new_tokens: Generation bound; an output that reaches it is ``truncated``. 4096, as in
            the authors' decoding.
        max_time: Seconds one ``generate`` call may take; outputs cut by it are ``truncated``
            (so the guard's failure policy decides). Default :data:`DEFAULT_MAX_TIME`; None: no
            time limit.
        timeout: Seconds a caller waits for its outputs, waiting for other callers' generations
            included; past it the caller gets :class:`~guardvl_sdk.errors.BackendTimeoutError`
            (so the guard fails closed) and the others are served as the model frees up.
            Default :data:`DEFAULT_TIMEOUT`; None: wait as long as it takes.
        batch_window_ms: How long a burst of concurrent callers is gathered into one batch,
            when others already wait behind the first (a lone caller does not wait). None: no
            dynamic batching; concurrent calls run one after another.
        max_batch_size: Most prompts one dynamic batch gathers.
        prefix_cache: Reuse the shared instruction prefix's key/value cache.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        model_id: str,
        max_new_tokens: int = 4096,
        max_time: float | None = DEFAULT_MAX_TIME,
        timeout: float | None = DEFAULT_TIMEOUT,
        batch_window_ms: float | None = 5.0,
        max_batch_size: int = 16,
        prefix_cache: bool = True,
    ) -> None:
        from transformers import GenerationConfig, StoppingCriteriaList, StopStringCriteria

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
        # (temperature, repetition penalty) the checkpoint ships with. The stop strings are not
        # in it: transformers would build their checker on every generate, and building it
        # scans the whole vocabulary (about 0.3 s with Qwen2.5's 151,665 tokens). It is built
        # once here and handed to every generate.
        self.generation_config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos_ids,
            pad_token_id=pad_id,
            max_time=max_time,
        )
        self._stopping = StoppingCriteriaList(
            [StopStringCriteria(tokenizer=tokenizer, stop_strings=list(STOP_STRINGS))]
        )
        self._lock = threading.Lock()
        self.timeout = timeout
        self._label_ids = _label_token_ids(tokenizer)
        self.prefix_cache = prefix_cache
        self._prefixes: dict[str, InstructionPrefix | None] = {}
        self._pad_id = pad_id
        self._batcher: Batcher[_Encoded, Generation] | None = None
        if batch_window_ms is not None:
            self._batcher = Batcher(
                self._generate_now,
                window=batch_window_ms / 1000,
                max_batch_size=max_batch_size,
                early=True,
                timeout=timeout,
            )

    @classmethod
    def load(cls, model_id: str | Path, **options: Any) -> LocalBackend:
        """Load a model with :func:`~guardvl_sdk.backends.loading.load_model` and serve it.

        Args:
            model_id: A Hugging Face model id or a local directory.
            **options: The options of :class:`LocalBackend` (``max_new_tokens``, ``max_time``,
                ``timeout``, ``batch_window_ms``, ``max_batch_size``, ``prefix_cache``) go to
                it; the rest say how the model is loaded (``quantization``, ``device``,
                ``dtype``, ``revision``, ``trust_remote_code``, ``adapter`` and any option of
                the model's ``from_pretrained``) and go to
                :func:`~guardvl_sdk.backends.loading.load_model` (it raises its errors).
        """
        serving = {name: options.pop(name) for name in list(options) if name in _SERVING}
        model, processor, name = load_model(model_id, **options)
        return cls(model, processor, model_id=name, **serving)

    @property
    def device(self) -> Any:
        """The device of the model's inputs."""
        return self.model.device

    def generate(self, prompts: Sequence[Prompt]) -> list[Generation]:
        """Generate greedily for ``prompts``, batched with those of concurrent callers.

        The processor work (chat template, tokenizing, image preprocessing) runs here, on the
        caller's thread, so it overlaps the batch the model is generating meanwhile.
        """
        if not prompts:
            return []
        encoded = self._encode(prompts)
        if self._batcher is None:
            return self._generate_now(encoded)
        return self._batcher(encoded)

    async def agenerate(self, prompts: Sequence[Prompt]) -> list[Generation]:
        """Like :meth:`generate`, awaiting the model without blocking the event loop.

        Cancelling the awaiting task withdraws prompts that have not started generating.
        """
        import asyncio

        if not prompts:
            return []
        encoded = await asyncio.to_thread(self._encode, prompts)
        if self._batcher is None:
            return await asyncio.to_thread(self._generate_now, encoded)
        return await self._batcher.asubmit(encoded)

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
        config.max_new_tokens, config.min_new_tokens = 1, None
        recorder = self._run(self._encode(prompts, continuation=continuation), config)[2]
        table = recorder.table()
        if table is None:
            return [None] * len(prompts)
        return [_share(*table[row, 0].tolist()) for row in range(len(prompts))]

    def _encode(self, prompts: Sequence[Prompt], *, continuation: str = "") -> list[_Encoded]:
        """Each prompt through the chat template and the processor, alone (unpadded)."""
        encoded = []
        for prompt in prompts:
            text = self.processor.apply_chat_template(
                prompt.messages, tokenize=False, add_generation_prompt=True
            )
            features = self.processor(
                text=[text + continuation], images=list(prompt.images) or None, return_tensors="pt"
            )
            encoded.append(_Encoded(prompt, dict(features)))
        return encoded

    def _generate_now(
        self, encoded: Sequence[_Encoded], deliver: Callable[[int, Generation], None] | None = None
    ) -> list[Generation]:
        """Generate greedily for ``encoded`` as one left-padded batch, now.

        With ``deliver``, each row's generation is handed to it as soon as the row has ended
        (end of sequence or the stop string), while longer rows go on generating.
        """
        prompts = [item.prompt for item in encoded]
        early = None if deliver is None else _EarlyRows(self, prompts, deliver)
        new_tokens, prompt_lengths, recorder = self._run(encoded, self.generation_config, early)
        return [
            self._to_generation(
                tokens,
                int(length),
                score_label=prompt.score_label,
                label_logits=recorder.row(row),
            )
            for row, (tokens, length, prompt) in enumerate(
                zip(new_tokens, prompt_lengths, prompts, strict=True)
            )
        ]

    @contextlib.contextmanager
    def _model_turn(self) -> Iterator[None]:
        """Hold the model, waiting at most ``timeout`` for a call in progress (one may hang)."""
        if not self._lock.acquire(timeout=-1 if self.timeout is None else self.timeout):
            raise BackendTimeoutError(
                f"the model stayed busy for {self.timeout} s (a generation may be stuck): "
                "failing closed"
            )
        try:
            yield
        finally:
            self._lock.release()

    def _run(
        self, encoded: Sequence[_Encoded], config: Any, early: _EarlyRows | None = None
    ) -> tuple[list[list[int]], list[int], _LabelLogits]:
        """One ``generate`` call: new tokens, prompt lengths, the label logits recorder."""
        import torch

        prompts = [item.prompt for item in encoded]
        with self._model_turn(), torch.inference_mode():
            inputs = _collate([item.features for item in encoded], self._pad_id)
            extra: dict[str, Any] = {}
            prefix = self._prefix(prompts) if self.prefix_cache else None
            if prefix is not None and prefix.starts(inputs):
                inputs = prefix.move_padding(inputs)
                extra[cache_argument(self.model)] = prefix.cache_for(len(prompts))
            inputs = {name: value.to(self.device) for name, value in inputs.items()}
            shared = self._vision_once([image for p in prompts for image in p.images], inputs)
            if shared is not None:
                del inputs["pixel_values"]
                extra["mm_encoder_outputs"] = shared
            forget_rope_deltas(self.model)
            recorder = _LabelLogits(*self._label_ids, device=self.device)
            stopping = self._stopping
            if early is not None:
                lengths = inputs["attention_mask"].sum(dim=1).tolist()
                early.start(inputs["input_ids"].shape[1], lengths, recorder)
                stopping = type(stopping)([*stopping, early])
            output = self.model.generate(
                **inputs,
                **extra,
                generation_config=config,
                stopping_criteria=stopping,
                logits_processor=[recorder],
            )
        new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()
        prompt_lengths = [int(n) for n in inputs["attention_mask"].sum(dim=1).tolist()]
        return new_tokens, prompt_lengths, recorder

    def _vision_once(self, images: list[Any], inputs: dict[str, Any]) -> dict[str, Any] | None:
        """The vision encoder's output for a batch whose prompts share images, each distinct
        image encoded once (the windows of one long check send the same image objects); None
        when no image repeats or the model takes no precomputed vision output.

        ``generate`` takes it as ``mm_encoder_outputs`` (transformers >= 5) in place of
        ``pixel_values``; the image grids stay, for the multimodal rope positions.
        """
        first: dict[int, int] = {}
        slots = [first.setdefault(id(image), index) for index, image in enumerate(images)]
        if len(first) == len(slots) or "image_grid_thw" not in inputs:
            return None
        supports = getattr(self.model, "_supports_mm_encoder_outputs", None)
        if supports is None or not supports() or "pixel_values" not in inputs:
            return None
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        grids = inputs["image_grid_thw"]
        patches = torch.split(inputs["pixel_values"], grids.prod(-1).tolist())
        distinct = list(first.values())
        encoded = self.model.get_image_features(
            pixel_values=torch.cat([patches[i] for i in distinct]),
            image_grid_thw=grids[distinct],
            return_dict=True,
        ).pooler_output
        by_first = dict(zip(distinct, encoded, strict=True))
        shared = tuple(by_first[slot] for slot in slots)
        # A tuple per image, as get_image_features itself returns it (the annotation says Tensor).
        return {"image": BaseModelOutputWithPooling(pooler_output=shared)}  # type: ignore[arg-type]

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


_SERVING = frozenset(
    p.name
    for p in inspect.signature(LocalBackend.__init__).parameters.values()
    if p.kind is p.KEYWORD_ONLY and p.name != "model_id"
)
"""The options of :class:`LocalBackend` itself (how it serves a loaded model)."""


@dataclass(frozen=True)
class _Encoded:
    """One prompt as the processor gave it: a batch of one, unpadded."""

    prompt: Prompt
    features: dict[str, Any]


def _collate(rows: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Batch processor outputs of one prompt each, as ``processor(..., padding=True)`` would.

    Tensors laid out per token are left-padded (ids with ``pad_id``, the rest with 0); the
    images' tensors (patches, grids) are concatenated in prompt order.
    """
    import torch

    if len(rows) == 1:
        return dict(rows[0])
    width = max(row["input_ids"].shape[1] for row in rows)
    names = list(dict.fromkeys(name for row in rows for name in row))
    batch: dict[str, Any] = {}
    for name in names:
        values = [row[name] for row in rows if name in row]
        if name in _PER_TOKEN:
            fill = pad_id if name == "input_ids" else 0
            values = [
                torch.nn.functional.pad(value, (width - value.shape[1], 0), value=fill)
                for value in values
            ]
        batch[name] = torch.cat(values)
    return batch


_PER_TOKEN = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


class _EarlyRows:
    """Hands each row's generation out as soon as the row ends; never stops anything itself.

    ``generate`` calls stopping criteria after every step with the ids so far; a row has ended
    when its last token is an end token or the stop string checker fires for it. The rest of the
    batch goes on (transformers pads ended rows), but that caller already has its verdict.
    """

    def __init__(
        self,
        backend: LocalBackend,
        prompts: Sequence[Prompt],
        deliver: Callable[[int, Generation], None],
    ) -> None:
        self._backend = backend
        self._prompts = list(prompts)
        self._deliver = deliver
        self._done: set[int] = set()
        self._width = 0
        self._recorder: _LabelLogits | None = None
        self._lengths: list[int] = []

    def start(self, width: int, lengths: list[int], recorder: _LabelLogits) -> None:
        """Called once the batch is laid out: its width, each row's prompt length, the scores."""
        self._width, self._lengths, self._recorder = width, lengths, recorder

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        (checker,) = self._backend._stopping
        ended = checker(input_ids, scores).tolist()
        last = input_ids[:, -1].tolist()
        end_ids = self._backend._end_ids
        for row, prompt in enumerate(self._prompts):
            if row in self._done or not (ended[row] or last[row] in end_ids):
                continue
            self._done.add(row)
            assert self._recorder is not None
            generation = self._backend._to_generation(
                input_ids[row, self._width :].tolist(),
                int(self._lengths[row]),
                score_label=prompt.score_label,
                label_logits=self._recorder.row(row),
            )
            self._deliver(row, generation)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


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

    def row(self, row: int) -> Any:
        """A ``(steps, 2)`` CPU tensor of one row's log-sum-exps, or None."""
        import torch

        if not self._steps:
            return None
        logits = torch.stack([step[row] for step in self._steps]).float().cpu()
        harmful = logits[:, : self._harmful].logsumexp(-1)
        unharmful = logits[:, self._harmful :].logsumexp(-1)
        return torch.stack([harmful, unharmful], dim=-1)

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
