"""Overhead of `guard.check` / `guard.acheck` as shipped over the plain model-card code.

    python benchmarks/overhead.py [--runs 15] [--tokens 64]

The baseline is what a user would write from the model card: decode the JPEG with PIL,
processor.apply_chat_template, processor(...), model.generate (greedy), a regex on the decoded
text. The guard runs with every default on (the ``</result>`` stop string, dynamic batching with
its window, prefix reuse), on the same JPEG bytes. The benchmark model uses the real Qwen2.5
vocabulary and ends its outputs after a varying number of tokens; both sides generate greedily
from the same prompt, and the tokens each side generated are printed to show the work is equal.
Targets: check at most 1.05x the baseline (text, text + a 1024x768 JPEG); a lone check or acheck
at most 1.02x (no batch window wait).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import re

import torch
from _common import EOS_SCALE, alternating, bench_model, jpeg, load, median_ms
from PIL import Image

from guardvl_sdk import Guard
from guardvl_sdk.inputs import DEFAULT_MAX_PIXELS


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--tokens", type=int, default=64, help="max_new_tokens, both sides")
    parser.add_argument("--kinds", default="text,text+jpeg")
    args = parser.parse_args()

    guard = Guard.from_pretrained(bench_model(eos_scale=EOS_SCALE), max_new_tokens=args.tokens)
    model, processor = guard.backend.model, guard.backend.processor  # type: ignore[attr-defined]
    label = re.compile(r"Request:\s*(harmful|unharmful)", re.IGNORECASE)
    photo = jpeg(1024, 768)
    made = {"baseline": 0, "check": 0, "acheck": 0}
    loop = asyncio.new_event_loop()

    def plain(text: str, data: bytes | None) -> str | None:
        image = None
        if data:  # decoded and fitted to the same 768^2 budget the guard was trained with
            image = Image.open(io.BytesIO(data)).convert("RGB")
            scale = min(1.0, math.sqrt(DEFAULT_MAX_PIXELS / (image.width * image.height)))
            size = (int(image.width * scale), int(image.height * scale))
            image = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
        prompt = guard.policy.render(text, [image] if image else [])
        chat = processor.apply_chat_template(
            prompt.messages, tokenize=False, add_generation_prompt=True
        )
        inputs = processor(text=[chat], images=list(prompt.images) or None, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=args.tokens, do_sample=False)
        new = out[0, inputs["input_ids"].shape[1] :]
        made["baseline"] += int((new != processor.tokenizer.pad_token_id).sum())
        match = label.search(processor.decode(new, skip_special_tokens=True))
        return match.group(1) if match else None

    def check(text: str, data: bytes | None) -> None:
        made["check"] += guard.check(text, image=data).usage.completion_tokens

    def acheck(text: str, data: bytes | None) -> None:
        verdict = loop.run_until_complete(guard.acheck(text, image=data))
        made["acheck"] += verdict.usage.completion_tokens

    print(f"guard as shipped vs model-card code, up to {args.tokens} tokens, {args.runs} runs")
    for kind, text, data in [
        ("text", "How do I pick a lock?", None),
        ("text+jpeg", "What is in this picture?", photo),
    ]:
        if kind not in args.kinds.split(","):
            continue
        for key in made:
            made[key] = 0
        times = alternating(
            args.runs,
            baseline=lambda t=text, d=data: plain(t, d),
            check=lambda t=text, d=data: check(t, d),
            acheck=lambda t=text, d=data: acheck(t, d),
        )
        base = median_ms(times["baseline"])
        ours, aours = median_ms(times["check"]), median_ms(times["acheck"])
        print(
            f"  {kind:<10} baseline {base:7.1f} ms   check {ours:7.1f} ms (ratio {ours / base:.3f})"
            f"   acheck {aours:7.1f} ms (ratio {aours / base:.3f})   tokens generated "
            f"baseline/check/acheck {made['baseline']}/{made['check']}/{made['acheck']}   {load()}"
        )
    loop.close()


if __name__ == "__main__":
    main()
