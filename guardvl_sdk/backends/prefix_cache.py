"""The instruction-prefix cache: the key/value cache of the tokens every check starts with.

Every check of one policy starts with the same tokens: the chat template's system turn holding
the policy's instruction. :class:`InstructionPrefix` finds them, runs them through the model
once, and lets a batch of prompts of any lengths reuse that cache: each row's left padding moves
to just after the prefix (prefix, padding, own tokens). Greedy output is the same, token for
token, with and without reuse (tested).
"""

from __future__ import annotations

from typing import Any

__all__ = ["InstructionPrefix", "cache_argument", "forget_rope_deltas"]


def cache_argument(model: Any) -> str:
    """The name ``generate`` takes a key/value cache under: ``cache`` (transformers >= 5.2x,
    where ``past_key_values`` warns it is deprecated) or ``past_key_values`` (older)."""
    import inspect

    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


class InstructionPrefix:
    """The token ids and key/value cache of the prefix every prompt of one policy starts with."""

    def __init__(self, ids: list[int], cache: Any) -> None:
        self.ids = ids
        self.cache = cache

    @classmethod
    def compute(
        cls, model: Any, processor: Any, system: dict[str, Any]
    ) -> InstructionPrefix | None:
        """Find the prefix (what the chat text is before any user content) and run it once."""
        import torch

        template = processor.apply_chat_template
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
        ids = processor.tokenizer(text)["input_ids"]
        if len(ids) < 2:
            return None
        with torch.inference_mode():
            forget_rope_deltas(model)
            output = model(input_ids=torch.tensor([ids], device=model.device), use_cache=True)
        cache = getattr(output, "cache", None)  # `past_key_values` before the rename
        return cls(list(ids), cache if cache is not None else output.past_key_values)

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


def forget_rope_deltas(model: Any) -> None:
    """Drop Qwen2-VL's remembered rope offsets, so positions are computed for this input.

    The model keeps them between calls to continue a generation; with a precomputed prefix cache
    it would otherwise apply the previous call's offsets to this one.
    """
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "rope_deltas"):
        inner.rope_deltas = None
