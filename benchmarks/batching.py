"""Dynamic batching: 16 concurrent callers against the same 16 checks one at a time.

    python benchmarks/batching.py [--callers 16] [--rounds 3] [--tokens 96]

The guard runs as shipped (every default on: the ``</result>`` stop string, the batch window,
prefix reuse). The benchmark model, on the real Qwen2.5 vocabulary, ends its outputs after a
number of tokens that varies with the input (printed: min-max), as a guard's reasoning does.
Each round checks the same distinct inputs three ways, in an order that alternates from round to
round: one at a time (each call's latency is a lone call's), from ``--callers`` threads at once,
and from as many asyncio tasks at once. Prints per way the throughput over one-at-a-time
(target: at least 3x), the median (p50) latency of a caller over the median lone call (target:
at most 3x), and the tokens generated (equal work: the same on every way).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from _common import EOS_SCALE, bench_model, load

from guardvl_sdk import Guard


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=96, help="max_new_tokens")
    args = parser.parse_args()

    guard = Guard.from_pretrained(
        bench_model(eos_scale=EOS_SCALE), max_new_tokens=args.tokens, max_batch_size=args.callers
    )
    topics = ("bake bread", "pick a lock", "fix a bike", "write a poem")
    texts = [f"Request {i}: how do I {topics[i % 4]}?" for i in range(args.callers)]

    def timed(text: str) -> tuple[float, int]:
        began = time.perf_counter()
        tokens = guard.check(text).usage.completion_tokens
        return time.perf_counter() - began, tokens

    async def atimed(text: str) -> tuple[float, int]:
        began = time.perf_counter()
        tokens = (await guard.acheck(text)).usage.completion_tokens
        return time.perf_counter() - began, tokens

    async def tasks() -> list[tuple[float, int]]:
        return list(await asyncio.gather(*(atimed(t) for t in texts)))

    pool = ThreadPoolExecutor(args.callers)
    ways = {
        "one at a time": lambda: [timed(t) for t in texts],
        f"{args.callers} threads": lambda: list(pool.map(timed, texts)),
        f"{args.callers} asyncio tasks": lambda: asyncio.run(tasks()),
    }
    lengths = [tokens for _, tokens in ways["one at a time"]()]  # also the warm-up
    for way in list(ways.values())[1:]:
        way()
    walls: dict[str, list[float]] = {name: [] for name in ways}
    latencies: dict[str, list[float]] = {name: [] for name in ways}
    generated: dict[str, int] = dict.fromkeys(ways, 0)
    loads: list[float] = []
    items = list(ways.items())
    for turn in range(args.rounds):
        for name, way in items if turn % 2 == 0 else items[::-1]:
            began = time.perf_counter()
            results = way()
            walls[name].append(time.perf_counter() - began)
            latencies[name] += [seconds for seconds, _ in results]
            generated[name] += sum(tokens for _, tokens in results)
        loads.append(float(load().split()[1]))
    pool.shutdown()

    base_wall = statistics.median(walls["one at a time"])
    lone = statistics.median(latencies["one at a time"])
    print(
        f"{args.callers} callers, outputs of {min(lengths)}-{max(lengths)} tokens "
        f"(mean {statistics.mean(lengths):.0f}), {args.rounds} rounds; lone call p50 "
        f"{lone * 1000:.0f} ms; load {min(loads):.2f}-{max(loads):.2f}"
    )
    for name in ways:
        wall = statistics.median(walls[name])
        p50 = statistics.median(latencies[name])
        print(
            f"  {name:<18} {wall:6.2f} s per round   throughput x{base_wall / wall:5.2f}   "
            f"p50 latency {p50 * 1000:6.0f} ms = x{p50 / lone:5.2f} lone   "
            f"tokens generated {generated[name]}"
        )


if __name__ == "__main__":
    main()
