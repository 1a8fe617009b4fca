"""The guard service's cost: HTTP round trip against the same Guard called in-process.

    python benchmarks/service.py [--runs 300] [--clients 64] [--requests 1024]

The service (``guardvl serve``'s app under uvicorn, every default on: key check, body and image
limits, metrics, JSON log line) runs in a child process around a ``Guard`` with a scripted
backend, so only the service's own work is measured; this process is the client (one keep-alive
``httpx`` connection, with ``TCP_NODELAY`` as any latency-minded client sets it: httpx writes a
request's headers and body separately, and Nagle's algorithm holds the body back until the
headers are acknowledged). In-process baseline: ``guard.check`` on an identical guard here.

Prints, for a text check: the median in-process check, the median ``POST /v1/guard/check`` and
``POST /v1/moderations`` round trip, and the added latency (target: under 2 ms); then the
throughput of ``--clients`` concurrent clients against the service and, as the baseline, the
same number of concurrent ``guard.acheck`` calls in-process. Equal work is shown by the backend
call counts and the verdicts printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import textwrap
import time

import httpx

from guardvl_sdk import Guard
from guardvl_sdk.testing import ScriptedBackend

ANSWER = (
    "<think>\nA cooking question.\n</think>\n"
    "<result>\nRequest: unharmful\nResponse: None\n</result>"
)
TEXT = "How long should I boil an egg for a soft yolk?"
KEY = "bench-key"
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]

CHILD = textwrap.dedent(
    """
    import sys
    from guardvl_sdk import Guard
    from guardvl_sdk.server import ServerSettings, serve
    from guardvl_sdk.testing import ScriptedBackend
    guard = Guard(ScriptedBackend({answer!r}))
    serve(guard, ServerSettings(api_keys=({key!r},)), port={port}, log_level="warning")
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_service() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    code = CHILD.format(answer=ANSWER, key=KEY, port=port)
    process = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/health", timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("the service did not start")


def http_client(url: str) -> httpx.Client:
    transport = httpx.HTTPTransport(socket_options=NODELAY)
    return httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {KEY}"}, transport=transport
    )


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_check(url: str, pid: int, runs: int) -> None:
    """CPU time per check: the service's process against the in-process guard.

    On a machine shared with other jobs, wall time mostly measures waiting for a core; CPU time
    is the work each side does.
    """
    guard = Guard(ScriptedBackend(ANSWER))
    began = time.process_time()
    for _ in range(runs):
        guard.check(TEXT)
    local = (time.process_time() - began) / runs
    with http_client(url) as client:
        before = cpu_seconds(pid)
        for _ in range(runs):
            client.post("/v1/guard/check", json={"text": TEXT})
        served = (cpu_seconds(pid) - before) / runs
    print(f"CPU time per text check, {runs} checks:")
    print(f"  in-process guard.check {local * 1000:7.3f} ms")
    print(
        f"  service process        {served * 1000:7.3f} ms  added {(served - local) * 1000:.3f} ms"
    )


def latency(url: str, runs: int) -> None:
    guard = Guard(ScriptedBackend(ANSWER))
    times: dict[str, list[float]] = {
        "in-process guard.check": [],
        "/v1/guard/check": [],
        "/v1/moderations": [],
    }
    verdicts: dict[str, object] = {}
    with http_client(url) as client:

        def native() -> object:
            return client.post("/v1/guard/check", json={"text": TEXT}).json()

        def moderation() -> object:
            return client.post("/v1/moderations", json={"input": TEXT}).json()["results"][0]

        calls = {"in-process guard.check": lambda: guard.check(TEXT), "/v1/guard/check": native,
                 "/v1/moderations": moderation}  # fmt: skip
        for name, call in calls.items():  # warm-up
            for _ in range(20):
                verdicts[name] = call()
        for _ in range(runs):  # interleaved, so drift hits all alike
            for name, call in calls.items():
                began = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - began)
        metrics = client.get("/metrics").text
    base = median_ms(times["in-process guard.check"])
    print(f"text check, {runs} runs each (median):")
    for name, values in times.items():
        added = (
            "" if name.startswith("in-process") else f"  added {median_ms(values) - base:.3f} ms"
        )
        print(f"  {name:24s} {median_ms(values):7.3f} ms{added}")
    print("  target: added < 2 ms")
    native_verdict = verdicts["/v1/guard/check"]
    assert isinstance(native_verdict, dict)
    print("  equal work: in-process backend calls", guard.backend.calls,  # type: ignore[attr-defined]
          "| service checks", _count(metrics), "| verdicts", guard.check(TEXT).summary(), "/",
          native_verdict["request"], native_verdict["status"],
          "blocked" if native_verdict["blocked"] else "allowed")  # fmt: skip


def _count(metrics: str) -> int:
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                   if line.startswith("guardvl_checks_total{")))  # fmt: skip


async def throughput(url: str, clients: int, requests: int) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=NODELAY)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, transport=transport, timeout=60
    ) as client:
        queue = iter(range(requests))

        async def worker() -> int:
            done = 0
            for _ in queue:
                answer = await client.post("/v1/guard/check", json={"text": TEXT})
                done += answer.status_code == 200 and json.loads(answer.content)["status"] == "ok"
            return done

        await asyncio.gather(*(client.get("/health") for _ in range(clients)))  # open connections
        began = time.perf_counter()
        ok = sum(await asyncio.gather(*(worker() for _ in range(clients))))
        service = time.perf_counter() - began
    guard = Guard(ScriptedBackend(ANSWER))
    began = time.perf_counter()
    semaphore = asyncio.Semaphore(clients)

    async def one() -> None:
        async with semaphore:
            await guard.acheck(TEXT)

    await asyncio.gather(*(one() for _ in range(requests)))
    local = time.perf_counter() - began
    print(f"throughput, {clients} concurrent clients, {requests} text checks:")
    print(f"  service    {requests / service:8.0f} checks/s  ({ok} answered ok)")
    print(f"  in-process {requests / local:8.0f} checks/s  (guard.acheck, {clients} at a time)")
    print(f"  service / in-process: {local / service:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=1024)
    args = parser.parse_args()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average before: {load} ({os.cpu_count()} cores)")
    process, url = start_service()
    try:
        latency(url, args.runs)
        cpu_per_check(url, process.pid, args.runs * 5)
        asyncio.run(throughput(url, args.clients, args.requests))
        print("load average after: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
