"""A tiny random Qwen2.5-VL checkpoint, built offline in well under a second.

:func:`build_tiny_model` writes a real (random, untrained) Qwen2.5-VL checkpoint with a real
processor, so the same ``Guard.from_pretrained`` path users take can run in CI. Such a model
emits noise: test *decisions* with :class:`~guardvl_sdk.testing.ScriptedBackend` instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["QWEN2_VL_CHAT_TEMPLATE", "build_tiny_model"]

# The chat template Qwen2-VL and Qwen2.5-VL ship with (and GuardReasoner-VL inherits).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# A few merges so the format's tags are cheap to emit for a model trained on them.
_MERGE_WORDS = ("<think>", "</think>", "<result>", "</result>", "Request:", "Response:")


def _build_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 1024) -> Any:
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer

    vocab: dict[str, int] = {}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    merges: list[tuple[str, str]] = []
    for word in _MERGE_WORDS:
        current = word[0]
        for char in word[1:]:
            merged = current + char
            if merged not in vocab:
                merges.append((current, char))
                vocab[merged] = len(vocab)
            current = merged
    if corpus is not None:
        for pair in _learn_merges(corpus, vocab_size - len(vocab)):
            merged = pair[0] + pair[1]
            if merged not in vocab and pair[0] in vocab and pair[1] in vocab:
                merges.append(pair)
                vocab[merged] = len(vocab)
    # tokenizers wants (left, right) pairs; transformers' annotation says list[str].
    # eos is <|im_end|>, as in the Qwen2.5-VL-Instruct checkpoints GuardReasoner-VL starts from.
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>")  # type: ignore[arg-type]
    tokenizer.add_special_tokens({"additional_special_tokens": list(_SPECIAL_TOKENS[1:])})
    return tokenizer


def _load_tokenizer(path: Path) -> Any:
    """A real Qwen2.5 tokenizer from its ``tokenizer.json``, set up as the VL checkpoints are."""
    from tokenizers import Tokenizer
    from transformers import Qwen2Tokenizer

    file = path / "tokenizer.json" if path.is_dir() else path
    try:
        backend = Tokenizer.from_file(str(file))
    except Exception as exc:  # tokenizers raises a bare Exception for a missing or bad file
        raise ValueError(f"cannot read a tokenizer from {file}: {exc}") from exc
    missing = [t for t in _SPECIAL_TOKENS if backend.token_to_id(t) is None]
    if missing:
        raise ValueError(f"{file} lacks the Qwen2.5-VL special tokens {missing}")
    return Qwen2Tokenizer(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,  # type: ignore[arg-type]  # as in the released tokenizer_config
        bos_token=None,
    )


def _learn_merges(corpus: Iterable[str], budget: int) -> list[tuple[str, str]]:
    """BPE merges learned from ``corpus`` with Qwen2's pre-tokenization, at most ``budget``."""
    import json

    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    if budget <= 0:
        return []
    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=len(alphabet) + budget, initial_alphabet=alphabet, show_progress=False
    )
    learner.train_from_iterator(corpus, trainer)
    learned = json.loads(learner.to_str())["model"]["merges"]
    return [(left, right) for left, right in learned]


def build_tiny_model(
    path: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    vision_depth: int = 2,
    min_pixels: int = 28 * 28,
    max_pixels: int = 56 * 56,
    initializer_range: float = 0.3,
    seed: int = 0,
    corpus: Iterable[str] | None = None,
    vocab_size: int = 1024,
    tokenizer: Any = None,
) -> Path:
    """Write a tiny random Qwen2.5-VL checkpoint and processor to ``path``, offline.

    The result loads with ``AutoProcessor`` and ``AutoModelForImageTextToText`` like a released
    GuardReasoner-VL checkpoint (same classes, same chat template, same special tokens), so it
    exercises the real loading and generation code. Its weights are random: it emits noise.

    Args:
        path: Directory to write (created if missing).
        hidden_size: Text and vision hidden size; must be divisible by ``num_heads * 4``. At
            least 64 for 4-bit loading on CPU (bitsandbytes packs 64-value blocks).
        num_layers: Text decoder layers.
        num_heads: Attention heads (text and vision).
        num_kv_heads: Key/value heads of the text decoder.
        vision_depth: Vision transformer blocks.
        min_pixels: Image processor lower pixel bound.
        max_pixels: Image processor upper pixel bound (keeps image token counts tiny).
        initializer_range: Std of the random weights. Larger than a real model's 0.02 so the
            output depends on the input (a batch-vs-single test then means something).
        seed: Seed for the random weights.
        corpus: Texts to learn extra BPE merges from (Qwen2 pre-tokenization), so that text
            like them tokenizes into far fewer tokens than bytes. Without it the tokenizer is
            byte-level plus a few merges for the format's tags.
        vocab_size: Vocabulary size to learn merges up to, when ``corpus`` is given.
        tokenizer: A real Qwen2.5 ``tokenizer.json`` (or the directory holding it), or a Qwen2
            tokenizer object, to use instead of the byte-level toy one (e.g. the real Qwen2.5
            tokenizer: 151,665 tokens, so prompts tokenize as for a released guard; the
            checkpoint is then about 80 MB). It must have the chat template's special tokens.
            Not with ``corpus``.

    Returns:
        The directory, as a ``Path``.

    Raises:
        ValueError: Bad sizes, ``tokenizer`` together with ``corpus``, or a tokenizer without the
            Qwen2.5-VL special tokens.
    """
    from guardvl_sdk.extras import require

    require("local", "building a tiny Qwen2.5-VL")
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    head_dim = hidden_size // num_heads
    if head_dim % 4 or hidden_size % num_heads:
        raise ValueError("hidden_size must be divisible by num_heads, with head_dim divisible by 4")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)

    if isinstance(tokenizer, str | Path):
        if corpus is not None:
            raise ValueError("give a real tokenizer or a corpus to learn merges from, not both")
        text_tokenizer = _load_tokenizer(Path(tokenizer))
    elif tokenizer is not None:
        text_tokenizer = tokenizer
    else:
        text_tokenizer = _build_tokenizer(corpus, vocab_size)
    ids = {token: text_tokenizer.convert_tokens_to_ids(token) for token in _SPECIAL_TOKENS}
    image_processor = Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=text_tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )

    # mrope splits head_dim / 2 rotary frequencies over (time, height, width).
    half = head_dim // 2
    mrope_section = [half - 2 * (half // 4), half // 4, half // 4]
    vocab_size = -(-len(text_tokenizer) // 64) * 64
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": hidden_size,
            "intermediate_size": hidden_size * 2,
            "num_hidden_layers": num_layers,
            "num_attention_heads": num_heads,
            "num_key_value_heads": num_kv_heads,
            "max_position_embeddings": 32768,
            "initializer_range": initializer_range,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1_000_000.0,
                "mrope_section": mrope_section,
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": vision_depth,
            "hidden_size": hidden_size,
            "intermediate_size": hidden_size * 2,
            "num_heads": num_heads,
            "out_hidden_size": hidden_size,
            "fullatt_block_indexes": [vision_depth - 1],
            "initializer_range": initializer_range,
            "spatial_merge_size": image_processor.merge_size,
            "patch_size": image_processor.patch_size,
            "temporal_patch_size": image_processor.temporal_patch_size,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
