"""Conversation cost: the guard's cost of turn 20 of a growing chat against turn 1.

    python benchmarks/conversation.py [--turns 20] [--runs 5] [--tokens 32] [--no-baseline]

A chat with a photo in every user turn grows by one exchange per turn; each turn the app checks
the conversation before the VLM answers (``guard.check(messages=...)``) and the answer after
(``response=``), every default on. Parts judged in an earlier turn are not sent again, so turn N
should cost what is new in it: the target is turn 20 <= 1.5x turn 1.

Two costs are printed. The prompt tokens the released GuardReasoner-VL would read, counted with
the real Qwen2.5 tokenizer (data/qwen2.5-tokenizer) plus Qwen2.5-VL's image tokens for each image
as the guard sends it (768x768 pixel budget), turn 1 and turn 20 of the growing conversation.
And the wall time of turn 20's two checks against turn 1's, medians of ``--runs`` interleaved
runs, on the benchmark model (random weights, the real loading and generation code, exactly
``--tokens`` generated tokens per check; its answers are replaced by a well-formed allowed
verdict, as an allowed conversation is what grows), with the tokens of each printed as proof of
the work done. The baseline (``conversation_memory=0``) is the same conversation re-checked
from scratch every turn, for comparison (tokens only); the shipped guard is never changed.
"""

from __future__ import annotations

import argparse
import io
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from _common import bench_model, force_tokens, interleaved, load, median_ms

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


def grow(guard: Guard, counted: Counted, turns: int) -> list[int]:
    """Check a conversation turn by turn (input, then output check); real prompt tokens per turn.

    Stops early when the guard refuses a turn (the baseline's per-check image budget).
    """
    messages: list[dict[str, Any]] = []
    tokens = []
    for turn in range(1, turns + 1):
        messages.append(user_turn(turn))
        counted.tokens = 0
        try:
            turn_checks(guard, messages, turn)
        except InvalidInputError as exc:
            print(f"  turn {turn} refused: {exc}")
            return tokens
        tokens.append(counted.tokens)
        messages.append({"role": "assistant", "content": answer(turn)})
    return tokens


def turn_checks(guard: Guard, messages: list[dict[str, Any]], turn: int) -> None:
    """One turn as an app runs it: the conversation before the VLM answers, then the answer."""
    assert guard.check(messages=messages).allowed
    assert guard.check(messages=messages, response=answer(turn)).allowed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()

    from tokenizers import Tokenizer

    if TOKENIZER is None:
        parser.error("the real Qwen2.5 tokenizer (shared/data/qwen2.5-tokenizer) was not found")
    tokenizer = Tokenizer.from_file(str(TOKENIZER))
    model = Guard.from_pretrained(bench_model(), batch_window_ms=None).backend
    force_tokens(model, args.tokens)
    n = args.turns
    print(
        f"conversation cost, {n} turns (a 640x480 photo each), an input and an output check per "
        f"turn, {args.tokens} generated tokens per check"
    )

    # Prompt tokens of every turn, as the conversation grows.
    configs: dict[str, dict[str, Any]] = {"shipped (defaults)": {}}
    if not args.no_baseline:
        configs["baseline, re-checked from scratch (conversation_memory=0)"] = {
            "conversation_memory": 0
        }
    for name, options in configs.items():
        counted = Counted(model, tokenizer)
        tokens = grow(Guard(counted, **options), counted, n)
        last = len(tokens)
        print(f"{name}: real prompt tokens, turn 1 {tokens[0]}, turn {last} {tokens[-1]} "
              f"({tokens[-1] / tokens[0]:.2f}x)")  # fmt: skip

    # Wall time of turn N against turn 1 on the shipped guard, interleaved so drift hits both:
    # the guard at turn N remembers turns 1..N-1 (re-running turn N sends the same parts).
    counted_n, counted_1 = Counted(model, tokenizer), Counted(model, tokenizer)
    at_n, at_1 = Guard(counted_n), Guard(counted_1)
    grow(at_n, counted_n, n - 1)
    history = [m for t in range(1, n) for m in (user_turn(t), {"role": "assistant",
               "content": answer(t)})] + [user_turn(n)]  # fmt: skip
    first = [user_turn(1)]
    times = interleaved(
        args.runs,
        turn_1=lambda: turn_checks(at_1, first, 1),
        turn_n=lambda: turn_checks(at_n, history, n),
    )
    counted_1.tokens = counted_n.tokens = 0
    turn_checks(at_1, first, 1)
    turn_checks(at_n, history, n)
    t1, tn = median_ms(times["turn_1"]), median_ms(times["turn_n"])
    print(
        f"shipped, wall time (median of {args.runs}, interleaved): turn 1 {t1:.0f} ms "
        f"({counted_1.tokens} real prompt tokens), turn {n} {tn:.0f} ms ({counted_n.tokens} "
        f"real prompt tokens): turn {n} / turn 1 = {tn / t1:.2f}x (target <= 1.5x), {load()}"
    )


if __name__ == "__main__":
    main()
