"""Conversation cost: the guard's cost of turn 20 of a growing chat against turn 1.

    python benchmarks/conversation.py [--turns 20] [--runs 3] [--tokens 32] [--no-baseline]

A chat with a photo in every user turn grows by one exchange per turn; each turn the app checks
the conversation before the VLM answers (``guard.check(messages=...)``) and the answer after
(``response=``), every default on. Parts judged in an earlier turn are not sent again, so turn N
should cost what is new in it: the target is turn 20 <= 1.5x turn 1.

Two costs are printed per turn, as medians over ``--runs`` fresh guards: wall time of the two
checks on the benchmark model (random weights, the real loading and generation code, exactly
``--tokens`` generated tokens per check; its answers are replaced by a well-formed allowed
verdict, as an allowed conversation is what grows), and the prompt tokens the released
GuardReasoner-VL would read, counted with the real Qwen2.5 tokenizer (data/qwen2.5-tokenizer)
plus Qwen2.5-VL's image tokens for each image as the guard sends it (768x768 pixel budget).
The baseline (``conversation_memory=0``) is the same conversation re-checked from scratch every
turn, for comparison; the shipped guard is never changed.
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from _common import bench_model, force_tokens

from guardvl_sdk import Generation, Guard, InvalidInputError, Prompt

# The shared data folder beside the checkout (or beside its parent, for a worktree).
TOKENIZER = next(
    (
        folder / "shared" / "data" / "qwen2.5-tokenizer" / "tokenizer.json"
        for folder in Path(__file__).resolve().parents
        if (folder / "shared" / "data" / "qwen2.5-tokenizer").is_dir()
    ),
    None,
)
ALLOWED = {
    "request": "<think>\nA photo.\n</think>\n<result>\nRequest: unharmful\nResponse: None\n"
    "</result>",
    "response": "<think>\nFine.\n</think>\n<result>\nRequest: unharmful\nResponse: unharmful\n"
    "</result>",
}


class Counted:
    """Runs the real model (its full cost), answers allowed, and counts real-Qwen prompt tokens."""

    def __init__(self, backend: Any, tokenizer: Any) -> None:
        self.backend = backend
        self.model_id = backend.model_id
        self.tokenizer = tokenizer
        self.tokens = 0

    def generate(self, prompts: Sequence[Prompt]) -> list[Generation]:
        for prompt in prompts:
            self.tokens += real_tokens(self.tokenizer, prompt)
        return [
            replace(g, text=ALLOWED[p.score_label])
            for p, g in zip(prompts, self.backend.generate(prompts), strict=True)
        ]


def real_tokens(tokenizer: Any, prompt: Prompt) -> int:
    """Prompt tokens of the released model: chat-template text plus each image's vision tokens."""
    text = ""
    for message in prompt.messages:
        content = message["content"]
        parts = [content] if isinstance(content, str) else content
        body = "".join(
            p if isinstance(p, str) else p.get("text", "<|vision_start|><|vision_end|>")
            for p in parts
        )
        text += f"<|im_start|>{message['role']}\n{body}<|im_end|>\n"
    text += "<|im_start|>assistant\n"
    vision = sum(_vision_tokens(image.width, image.height) for image in prompt.images)
    return len(tokenizer.encode(text).ids) + vision


def _vision_tokens(width: int, height: int, factor: int = 28) -> int:
    """Qwen2.5-VL's smart_resize (its default bounds) then one token per 28x28 block."""
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > 12845056:
        beta = math.sqrt(height * width / 12845056)
        h, w = (
            math.floor(height / beta / factor) * factor,
            math.floor(width / beta / factor) * factor,
        )
    return (h // factor) * (w // factor)


def photo(turn: int) -> str:
    """A distinct 640x480 photo-like PNG per turn, as a data: URL (what a chat client sends)."""
    import base64

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(turn)
    base = rng.integers(0, 255, size=(3,))
    pixels = (base + rng.normal(0, 40, size=(480, 640, 3))).clip(0, 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def user_turn(turn: int) -> dict[str, Any]:
    question = (
        f"Turn {turn}: here is another photo from our trip. Can you tell me what is in it, "
        "where it might have been taken, and suggest one thing to do nearby next time?"
    )
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": question},
            {"type": "image_url", "image_url": {"url": photo(turn)}},
        ],
    }


def answer(turn: int) -> str:
    return (
        f"In photo {turn} I can see a street with old stone buildings and a small market. "
        "The light suggests late afternoon, and the architecture looks Mediterranean, perhaps "
        "a coastal town in southern Europe. Next time you could visit the harbour nearby, "
        "try the local seafood, and walk up to the old fortress for the view at sunset."
    )


def run(guard: Guard, counted: Counted, turns: int) -> list[tuple[float, int]]:
    """One conversation; per turn: (seconds of the two checks, real prompt tokens).

    Stops early when the guard refuses a turn (the baseline's per-check image budget).
    """
    messages: list[dict[str, Any]] = []
    costs = []
    for turn in range(1, turns + 1):
        messages.append(user_turn(turn))
        counted.tokens = 0
        began = time.perf_counter()
        try:
            verdict = guard.check(messages=messages)
        except InvalidInputError as exc:
            print(f"  turn {turn} refused: {exc}")
            return costs
        assert verdict.allowed
        reply = answer(turn)
        assert guard.check(messages=messages, response=reply).allowed
        costs.append((time.perf_counter() - began, counted.tokens))
        messages.append({"role": "assistant", "content": reply})
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()

    from tokenizers import Tokenizer

    if TOKENIZER is None:
        parser.error("the real Qwen2.5 tokenizer (shared/data/qwen2.5-tokenizer) was not found")
    tokenizer = Tokenizer.from_file(str(TOKENIZER))
    model = Guard.from_pretrained(bench_model(), batch_window_ms=None).backend
    force_tokens(model, args.tokens)

    configs = {"shipped (defaults)": {}}
    if not args.no_baseline:
        configs["baseline: conversation_memory=0"] = {"conversation_memory": 0}
    print(
        f"conversation cost, {args.turns} turns (a 640x480 photo each), input + output check per "
        f"turn, {args.tokens} generated tokens per check, medians of {args.runs} runs"
    )
    for name, options in configs.items():
        runs = []
        for _ in range(args.runs):
            counted = Counted(model, tokenizer)
            runs.append(run(Guard(counted, **options), counted, args.turns))
        done = min(len(r) for r in runs)
        seconds = [statistics.median(r[t][0] for r in runs) for t in range(done)]
        tokens = [runs[0][t][1] for t in range(done)]
        last = done - 1
        print(f"\n{name}")
        print(f"  turn  1: {seconds[0] * 1000:7.0f} ms  {tokens[0]:6d} real prompt tokens")
        print(
            f"  turn {done:2d}: {seconds[last] * 1000:7.0f} ms  {tokens[last]:6d} real "
            "prompt tokens"
        )
        print(
            f"  turn {done} / turn 1: time {seconds[last] / seconds[0]:.2f}x, "
            f"prompt tokens {tokens[last] / tokens[0]:.2f}x (target <= 1.5x for shipped)"
        )


if __name__ == "__main__":
    main()
