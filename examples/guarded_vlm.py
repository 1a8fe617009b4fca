"""Guard a VLM function with @guarded and guard.session(), offline.

    python examples/guarded_vlm.py                      # the offline demo guard
    python examples/guarded_vlm.py --model DIR_OR_ID    # a real GuardReasoner-VL checkpoint

Small functions stand in for the VLM. The demo guard (trained on synthetic data on first use,
then cached; a demo, not a safety model) blocks a picture of a face under its made-up policy, so
you see the blocking paths; with a real checkpoint you see its decisions.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from PIL import Image

from guardvl_sdk import Guard, GuardBlocked, GuardEvent, guarded
from guardvl_sdk.training.demo import demo_image


def vlm(prompt: str, image: Image.Image) -> str:
    """Stand-in VLM: answers a question about an image."""
    return f"A {image.width}x{image.height} picture, mostly one flat colour."


def vlm_stream(prompt: str, image: Image.Image) -> Iterator[str]:
    """Stand-in VLM that streams its answer word by word."""
    for word in vlm(prompt, image).split(" "):
        yield word + " "


def print_event(event: GuardEvent) -> None:
    decision = "blocked" if event.verdict.blocked else "allowed"
    print(f"  [{event.function}] {event.stage} check {decision} ({event.elapsed_ms:.0f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="model id or directory (default: demo)")
    args = parser.parse_args()
    guard = Guard.from_pretrained(args.model, max_new_tokens=1024)
    photo = demo_image(face=True)  # the demo policy's "faces" category
    question = "What is in this picture?"

    # In an app these are decorators: @guarded(guard) above `def vlm(...)`.
    describe = guarded(guard, on_verdict=print_event)(vlm)
    print("describe(): request checked, then the answer in its context")
    try:
        print(f"  answer: {describe(question, photo)!r}")
    except GuardBlocked as blocked:
        print(f"  BLOCKED at {blocked.verdict.stage}: {blocked.verdict.summary()}")
        if blocked.blocked_output is not None:
            print(f"  withheld answer: {blocked.blocked_output!r}")

    stream = guarded(
        guard,
        check="output",  # judge only the answer (with its request as context)
        on_block="refuse",  # a blocked stream ends with the refusal instead of raising
        buffered=True,  # release nothing before the whole answer has passed
        stream_every=40,
        on_verdict=print_event,
    )(vlm_stream)
    print("stream(): streamed answer, buffered")
    print(f"  received: {''.join(stream(question, photo))!r}")

    print("session: explicit before/after hooks")
    with guard.session(on_block="return", on_verdict=print_event) as session:
        verdict = session.before(question, photo)
        if verdict.blocked:
            print(f"  BLOCKED at input: {verdict.summary()}")
        else:
            verdict = session.after(vlm(question, photo))
            print(f"  answer {'BLOCKED' if verdict.blocked else 'allowed'}: {verdict.summary()}")


if __name__ == "__main__":
    main()
