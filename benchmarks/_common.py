"""Shared setup for the benchmarks: a small random Qwen2.5-VL on the real Qwen2.5 vocabulary.

Every benchmark measures the SDK as it ships: every default on (the ``</result>`` stop string,
the batch window, prefix reuse), images given as JPEG bytes. Equal work is shown, not forced:
each script prints the tokens both sides generated.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _find_tokenizer() -> Path:
    """GUARDVL_BENCH_TOKENIZER, else ``shared/data/qwen2.5-tokenizer`` beside a parent folder."""
    if "GUARDVL_BENCH_TOKENIZER" in os.environ:
        return Path(os.environ["GUARDVL_BENCH_TOKENIZER"])
    for parent in Path(__file__).resolve().parents[1:]:
        candidate = parent / "shared" / "data" / "qwen2.5-tokenizer"
        if candidate.is_dir():
            return candidate
    return Path("../shared/data/qwen2.5-tokenizer")


REAL_TOKENIZER = _find_tokenizer()

EOS_SCALE = 2.0
"""The end-of-sequence row of the output layer is scaled by this, so the random model ends its
output after a varying number of tokens (tens, depending on the input) as a guard does."""


def real_tokenizer() -> Any:
    """The real Qwen2.5 tokenizer (151,665 tokens), or None with a message when it is absent."""
    path = REAL_TOKENIZER / "tokenizer.json"
    if not path.is_file():
        print(
            f"NOTE: {path} not found (set GUARDVL_BENCH_TOKENIZER to its folder): falling back to "
            "the byte-level test vocabulary, which hides per-vocabulary costs and makes prompts "
            "about 4x longer in tokens. Figures from this run are not comparable.",
            file=sys.stderr,
        )
        return None
    from tokenizers import Tokenizer
    from transformers import Qwen2TokenizerFast

    return Qwen2TokenizerFast(
        tokenizer_object=Tokenizer.from_file(str(path)),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
    )


def bench_model(
    hidden_size: int = 256, num_layers: int = 4, max_pixels: int = 112 * 112, eos_scale: float = 0.0
) -> Path:
    """Build the benchmark model: hidden 256, 4 layers, random weights, the real vocabulary.

    ``max_pixels`` is the image processor's own bound (Qwen2.5-VL's is 12845056); keep it small
    unless images are what is measured. ``eos_scale`` > 0 makes outputs end early (see
    ``EOS_SCALE``); 0 leaves the model as built (it then writes up to ``max_new_tokens``).
    """
    import torch
    from safetensors.torch import load_file, save_file

    from guardvl_sdk.testing import build_tiny_model

    # One torch thread unless GUARDVL_BENCH_THREADS says otherwise: on a machine shared with
    # other jobs, threads that outnumber the free cores spin against each other.
    torch.set_num_threads(int(os.environ.get("GUARDVL_BENCH_THREADS", "1")))
    path = Path(tempfile.mkdtemp(prefix="guardvl-bench-"))
    build_tiny_model(
        path, hidden_size=hidden_size, num_layers=num_layers, num_heads=8, num_kv_heads=4,
        max_pixels=max_pixels, tokenizer=real_tokenizer(),
    )  # fmt: skip
    if eos_scale:
        weights_file = path / "model.safetensors"
        weights = load_file(weights_file)
        name = next(k for k in weights if k.endswith("lm_head.weight"))
        eos = 151645  # <|im_end|>
        weights[name][eos] *= eos_scale
        save_file(weights, weights_file, metadata={"format": "pt"})
    return path


def jpeg(width: int, height: int, seed: int = 0, quality: int = 90) -> bytes:
    """A photo-like JPEG (smooth gradients plus noise) of the given size, as bytes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [128 + 100 * np.sin(x / 97 + seed), 128 + 100 * np.cos(y / 61), (x + y) % 256], axis=-1
    )
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def load() -> str:
    """The 1-minute load average, to print with each figure (the machine is shared)."""
    return f"load {os.getloadavg()[0]:.2f}"


def alternating(runs: int, **candidates: Callable[[], object]) -> dict[str, list[float]]:
    """Time each candidate ``runs`` times, in turns whose order alternates (A B, B A, ...).

    One warm-up call each first. Alternating the order spreads drift and any first-in-turn
    advantage over every candidate alike.
    """
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for fn in candidates.values():
        fn()
    items = list(candidates.items())
    for turn in range(runs):
        for name, fn in items if turn % 2 == 0 else items[::-1]:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def median_ms(values: list[float]) -> float:
    """Median in milliseconds."""
    return statistics.median(values) * 1000


def force_tokens(backend: object, n: int) -> None:
    """Make a LocalBackend generate exactly ``n`` tokens, on both sides of a comparison of two
    guard configurations (the stop checker stays on; it just never fires before ``n``)."""
    config = backend.generation_config  # type: ignore[attr-defined]
    config.max_new_tokens = n
    config.min_new_tokens = n


interleaved = alternating
