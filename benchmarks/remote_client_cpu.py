"""Client CPU per remote check: text, and text + a 1024x768 JPEG given as bytes.

    python benchmarks/remote_client_cpu.py [--n 40]

A fake OpenAI-compatible guard server (guardvl_sdk.testing.FakeChatServer) runs in its own
process on loopback, so this process's CPU time (``time.process_time``, all its threads) is the
client's alone: input checks, image decoding and resizing, encoding, HTTP, parsing. Prints the
median-free mean over ``--n`` sequential checks for text, text + JPEG (images sent as JPEG, the
default, and as PNG), a 768x576 JPEG within the pixel budget (sent as its own bytes, not
encoded again), and a long text (two windows) + JPEG, where the image is encoded once.
Targets: under 1 ms per text check, under 10 ms per check with the JPEG.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

from _common import jpeg, load

from guardvl_sdk import Guard
from guardvl_sdk.backends.remote import RemoteBackend

REPLY = "<think>\nA benchmark.\n</think>\n<result>\nRequest: unharmful\nResponse: None\n</result>"


def serve() -> None:
    """Run the fake server until stdin closes; print its URL first."""
    from guardvl_sdk.testing import FakeChatServer

    with FakeChatServer(REPLY) as server:
        print(server.url, flush=True)
        sys.stdin.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        run(server.stdout.readline().strip(), args.n)
    finally:
        server.terminate()
        server.wait(timeout=10)


def run(url: str, n: int) -> None:
    photo = jpeg(1024, 768)
    small = jpeg(768, 576)  # within the 768^2 budget: decoded and hashed, sent as its own bytes
    long_text = "Tell me about this picture. " * 250  # 7000 characters: two windows
    guards = {
        fmt: Guard(RemoteBackend(url, model="fake", image_format=fmt)) for fmt in ("jpeg", "png")
    }
    cases: list[tuple[str, str, str, Any]] = [
        ("text", "jpeg", "How do I pick a lock?", None),
        ("text + 1024x768 JPEG, sent as JPEG", "jpeg", "What is in this picture?", photo),
        ("text + 768x576 JPEG (within budget)", "jpeg", "What is in this picture?", small),
        ("text + 1024x768 JPEG, sent as PNG", "png", "What is in this picture?", photo),
        ("7000-char text (2 windows) + JPEG", "jpeg", long_text, photo),
    ]
    print(f"client CPU per remote check, {n} sequential checks each")
    for name, fmt, text, image in cases:
        guard = guards[fmt]
        verdict = guard.check(text, image=image)  # warm-up
        assert verdict.status.value == "ok", verdict
        began, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            guard.check(text, image=image)
        cpu_ms = (time.process_time() - cpu) * 1000 / n
        wall_ms = (time.perf_counter() - began) * 1000 / n
        print(f"  {name:<36} CPU {cpu_ms:6.2f} ms/check   wall {wall_ms:6.2f} ms   {load()}")


if __name__ == "__main__":
    main()
