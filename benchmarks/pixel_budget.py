"""Pixel budget: a 4000x3000 JPEG against a 448x448 one, each checked as bytes with the same text.

    python benchmarks/pixel_budget.py [--runs 7] [--tokens 16]

The guard runs as shipped (default budget ``DEFAULT_MAX_PIXELS`` = 768^2); the benchmark model's
image processor is left at Qwen2.5-VL's own bound (12845056 pixels), so the guard's budget is
what limits the photo. Prints the median check time of each, their ratio (target: at most 1.5x),
the prompt tokens of each and the tokens generated (the model as built writes up to
``--tokens``), in an order that alternates from run to run. A third candidate, a JPEG already
at the size the photo is fitted to, separates the image path (decoding and fitting the photo)
from the model's work on the image tokens the budget allows.
"""

from __future__ import annotations

import argparse

from _common import alternating, bench_model, jpeg, load, median_ms

from guardvl_sdk import Guard
from guardvl_sdk.inputs import DEFAULT_MAX_PIXELS, load_image


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=16)
    args = parser.parse_args()

    guard = Guard.from_pretrained(bench_model(max_pixels=12845056), max_new_tokens=args.tokens)
    small, photo = jpeg(448, 448), jpeg(4000, 3000, seed=1)
    fitted = jpeg(*load_image(photo).size, seed=1)  # the size the guard fits the photo to
    made = {"small": [0, 0], "photo": [0, 0], "fitted": [0, 0]}

    def check(name: str, data: bytes) -> None:
        usage = guard.check("What is in this picture?", image=data).usage
        made[name][0], made[name][1] = usage.prompt_tokens, made[name][1] + usage.completion_tokens

    times = alternating(
        args.runs,
        small=lambda: check("small", small),
        photo=lambda: check("photo", photo),
        fitted=lambda: check("fitted", fitted),
    )
    small_ms, photo_ms = median_ms(times["small"]), median_ms(times["photo"])
    fitted_ms = median_ms(times["fitted"])
    print(
        f"4000x3000 JPEG vs 448x448 JPEG, default budget {DEFAULT_MAX_PIXELS} pixels, "
        f"{args.runs} runs\n  448x448 {small_ms:7.1f} ms ({made['small'][0]} prompt tokens)   "
        f"4000x3000 {photo_ms:7.1f} ms ({made['photo'][0]} prompt tokens)   ratio "
        f"{photo_ms / small_ms:.2f}   tokens generated {made['small'][1]}/{made['photo'][1]}"
        f"   {load()}\n  fitted size {fitted_ms:7.1f} ms ({made['fitted'][0]} prompt tokens)   "
        f"4000x3000 over fitted {photo_ms / fitted_ms:.2f}   fitted over 448x448 "
        f"{fitted_ms / small_ms:.2f}   tokens generated {made['fitted'][1]}"
    )


if __name__ == "__main__":
    main()
