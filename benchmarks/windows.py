"""The vision encoder across the windows of one long check: encoded once, against once a window.

    python benchmarks/windows.py [--runs 5] [--tokens 16] [--windows 2]

A long request is checked in windows, each its own prompt with the request's images. The local
backend encodes each distinct image of a batch once and hands the result to every window
(``mm_encoder_outputs``). This benchmark generates the same windows (a 448x448 JPEG, decoded by
the guard's own loader) twice in alternating order: with the windows sharing the image, as a
check sends them, and with each window given its own copy of it, so the encoder runs once a
window (what every check paid before). Prints the medians, their ratio and the tokens each side
generated (equal work: the same inputs, the same greedy outputs).
"""

from __future__ import annotations

import argparse

from _common import alternating, bench_model, jpeg, load, median_ms

from guardvl_sdk import Guard
from guardvl_sdk.inputs import load_image


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--windows", type=int, default=2)
    args = parser.parse_args()

    guard = Guard.from_pretrained(bench_model(max_pixels=12845056), max_new_tokens=args.tokens)
    backend, policy = guard.backend, guard.policy
    image = load_image(jpeg(448, 448))
    texts = [f"Part {i} of a long request: what is in it?" for i in range(args.windows)]
    made = {"shared": 0, "copies": 0}

    def run(name: str) -> None:
        images = [image if name == "shared" else image.copy() for _ in texts]
        prompts = [policy.render(text, [own]) for text, own in zip(texts, images, strict=True)]
        made[name] += sum(g.completion_tokens for g in backend.generate(prompts))

    times = alternating(args.runs, shared=lambda: run("shared"), copies=lambda: run("copies"))
    shared, copies = median_ms(times["shared"]), median_ms(times["copies"])
    print(
        f"{args.windows} windows with one 448x448 image, up to {args.tokens} tokens, "
        f"{args.runs} runs\n  encoded once {shared:8.1f} ms   once a window {copies:8.1f} ms   "
        f"ratio {shared / copies:.3f}   tokens generated {made['shared']}/{made['copies']}"
        f"   {load()}"
    )


if __name__ == "__main__":
    main()
