"""The local backend: a guard model loaded in this process with transformers."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from guardvl_sdk.backends.base import Generation, Prompt
from guardvl_sdk.backends.scoring import RESULT_END, label_side, label_token_index
from guardvl_sdk.errors import ConfigurationError, ModelLoadError
from guardvl_sdk.extras import require

__all__ = ["LocalBackend", "Quantization", "check_model_source"]

Quantization = Literal["auto", "4bit", "8bit"] | None

STOP_STRINGS = (RESULT_END,)


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
        self._prefixes: dict[str, _Prefix | None] = {}
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
        require("local", "loading a guard model in this process (Guard.from_pretrained)")
        if adapter is not None:
            require("local", "a LoRA adapter (adapter=...)", modules=("peft",))
        name = str(model_id)
        is_directory = check_model_source(name, what="guard model")
        if adapter is not None:
            check_model_source(str(adapter), what="adapter")

        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch_dtype = _resolve_dtype(dtype, target)
        quantization_config = _quantization_config(quantization, target, torch_dtype)
        common = {"revision": revision, "trust_remote_code": trust_remote_code}
        try:
            processor = AutoProcessor.from_pretrained(name, **common)
            model = AutoModelForImageTextToText.from_pretrained(
                name,
                dtype=torch_dtype,
                device_map={"": str(target)},
                quantization_config=quantization_config,
                use_safetensors=True,
                **common,
                **model_kwargs,
            )
        except (OSError, ValueError, ImportError, RuntimeError) as exc:
            where = (
                "the directory must hold safetensors weights and the processor files"
                if is_directory
                else "a hub id needs network access or a local cache (HF_HUB_OFFLINE=1 forbids "
                "downloads)"
            )
            raise ModelLoadError(f"could not load guard model {name!r}: {exc}. {where}.") from exc
        if adapter is not None:
            try:
                model.load_adapter(str(adapter))  # revision applies to the base model only
            except (OSError, ValueError, ImportError, RuntimeError, KeyError) as exc:
                raise ModelLoadError(
                    f"could not load adapter {str(adapter)!r} on guard model {name!r}: {exc}. "
                    "An adapter directory holds adapter_config.json and adapter_model.safetensors "
                    "(guardvl train sft --method lora writes them), trained on this base model."
                ) from exc
            name = f"{name}+{adapter}"
        model.eval()
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
            _forget_rope_deltas(self.model)
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

    def _prefix(self, prompts: Sequence[Prompt]) -> _Prefix | None:
        """The shared prefix of these prompts (their common system turn), computed once."""
        import json

        systems = {json.dumps(p.messages[:1], sort_keys=True) for p in prompts}
        if len(systems) != 1 or not prompts[0].messages:
            return None
        key = systems.pop()
        if key not in self._prefixes:
            if len(self._prefixes) >= 8:  # a few policies per process at most; stay bounded
                self._prefixes.pop(next(iter(self._prefixes)))
            self._prefixes[key] = _Prefix.compute(self, prompts[0].messages[0])
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


class _Prefix:
    """The token ids and key/value cache of the prefix every prompt of one policy starts with."""

    def __init__(self, ids: list[int], cache: Any) -> None:
        self.ids = ids
        self.cache = cache

    @classmethod
    def compute(cls, backend: LocalBackend, system: dict[str, Any]) -> _Prefix | None:
        """Find the prefix (what the chat text is before any user content) and run it once."""
        import torch

        template = backend.processor.apply_chat_template
        probes = [
            template(
                [system, {"role": "user", "content": [{"type": "text", "text": marker}]}],
                tokenize=False,
                add_generation_prompt=True,
            )
            for marker in ("\x01", "\x02")
        ]
        first, second = probes
        same = next(
            (i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b), len(first)
        )
        text = first[:same]
        ids = backend.processor.tokenizer(text)["input_ids"]
        if len(ids) < 2:
            return None
        with torch.inference_mode():
            _forget_rope_deltas(backend.model)
            output = backend.model(
                input_ids=torch.tensor([ids], device=backend.device), use_cache=True
            )
        return cls(list(ids), output.past_key_values)

    def starts(self, inputs: Any) -> bool:
        """Whether every (left-padded) row of ``inputs`` starts with the prefix, and goes on."""
        size = len(self.ids)
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        lengths = mask.sum(dim=1).tolist()
        width = ids.shape[1]
        return all(
            length > size and ids[row, width - length : width - length + size].tolist() == self.ids
            for row, length in enumerate(lengths)
        )

    def move_padding(self, inputs: Any) -> Any:
        """Move each row's left padding to just after the prefix (prefix, padding, own tokens).

        Every tensor laid out per token (ids, attention mask, multimodal token types) is permuted
        alike; positions follow the attention mask, so each row's own tokens keep theirs.
        """
        import torch

        ids = inputs["input_ids"]
        batch, width = ids.shape
        size = len(self.ids)
        order = []
        for length in inputs["attention_mask"].sum(dim=1).tolist():
            pad = width - int(length)
            order.append([*range(pad, pad + size), *range(pad), *range(pad + size, width)])
        index = torch.tensor(order, dtype=torch.long)
        for name, value in inputs.items():
            if isinstance(value, torch.Tensor) and tuple(value.shape[:2]) == (batch, width):
                inputs[name] = value.gather(1, index)
        return inputs

    def cache_for(self, batch: int) -> Any:
        """A fresh copy of the prefix cache for ``batch`` rows (generation extends it)."""
        import copy

        cache = copy.deepcopy(self.cache)
        if batch > 1:
            cache.batch_repeat_interleave(batch)
        return cache


def _forget_rope_deltas(model: Any) -> None:
    """Drop Qwen2-VL's remembered rope offsets, so positions are computed for this input.

    The model keeps them between calls to continue a generation; with a precomputed prefix cache
    it would otherwise apply the previous call's offsets to this one.
    """
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "rope_deltas"):
        inner.rope_deltas = None


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


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9]")


def check_model_source(source: str, *, what: str) -> bool:
    """Say early what is wrong with a model argument; True for a local directory.

    An existing path must be a directory. Anything else is read as a hub id only when it looks
    like one (``owner/name``, not ``./x``, ``/x``, ``~/x`` or ``x\\y``); otherwise it names a
    directory that does not exist.

    Raises:
        ModelLoadError: The path is a file, or names no directory and is no hub id.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return True
    if path.exists():
        raise ModelLoadError(f"{what} {source!r} is a file: give the model's directory")
    if _HUB_ID.fullmatch(source) is None or source.startswith((".", "~")):
        raise ModelLoadError(
            f"{what} {source!r}: no such directory (and not a hub id of the form owner/name)"
        )
    return False


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


def _resolve_dtype(dtype: str | Any | None, device: Any) -> Any:
    import torch

    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype):
        raise ConfigurationError(f"unknown dtype {dtype!r}: use e.g. 'bfloat16' or 'float32'")
    return resolved


def _quantization_config(quantization: Quantization, device: Any, dtype: Any) -> Any:
    if quantization == "auto":
        quantization = "4bit" if device.type == "cuda" else None
    if quantization is None:
        return None
    if quantization not in ("4bit", "8bit"):
        raise ConfigurationError(
            f"unknown quantization {quantization!r}: use 'auto', '4bit', '8bit' or None"
        )
    require("4bit", f"{quantization} quantization")
    from transformers import BitsAndBytesConfig

    # The vision tower stays in `dtype`: it is small, and quantizing it costs accuracy.
    skip = ["model.visual", "visual", "lm_head"]  # the prefix form is what transformers 5 matches
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_use_double_quant=True,
        llm_int8_skip_modules=skip,
    )
