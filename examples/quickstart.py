"""Check a request, an image and a response with a guard, offline.

    python examples/quickstart.py                      # the offline demo guard
    python examples/quickstart.py --model DIR_OR_ID    # a real GuardReasoner-VL checkpoint

The demo guard (a tiny model trained on synthetic data on first use, then cached; a demo of the
machinery, not a safety model) knows a few keywords and drawings of a made-up policy; with a real
checkpoint you see its labels and reasoning.
"""

from __future__ import annotations

import argparse

from guardvl_sdk import Guard
from guardvl_sdk.training.demo import demo_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="model id or directory (default: demo)")
    args = parser.parse_args()
    guard = Guard.from_pretrained(args.model, max_new_tokens=1024)

    checks = [
        {"text": "Can you help me bake bread?"},
        {"text": "What is in this picture?", "image": demo_image(face=True)},
        {"text": "How much codeine should I take?", "response": "Sorry, I can't help with that."},
    ]
    for check, verdict in zip(checks, guard.check_batch(checks), strict=True):
        print(f"{check['text']!r}: {verdict.summary()}")
        if verdict.reasoning:
            print(f"  reasoning: {verdict.reasoning[:200]}")


if __name__ == "__main__":
    main()
