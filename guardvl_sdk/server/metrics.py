"""The service's Prometheus metrics, on a registry of its own (one per app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from guardvl_sdk.verdict import Status, Verdict

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """Counters of checks, tokens, cache hits and failures; the check latency; checks in flight."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.checks = Counter(
            "guardvl_checks",
            "Checks answered, by API, stage (input/output), status and decision",
            ["api", "stage", "status", "decision"],
            registry=r,
        )
        self.latency = Histogram(
            "guardvl_check_seconds",
            "Time to answer one HTTP check request (all its checks)",
            ["api"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "guardvl_tokens", "Tokens of the guard's prompts and generations", ["kind"], registry=r
        )
        self.in_flight = Gauge(
            "guardvl_checks_in_flight", "Check requests waiting for the guard", registry=r
        )
        self.cache_hits = Counter("guardvl_cache_hits", "Verdicts from the cache", registry=r)
        self.backend_errors = Counter(
            "guardvl_backend_errors", "Checks the backend failed (answered fail-closed)", registry=r
        )
        self.refused = Counter(
            "guardvl_requests_refused",
            "HTTP requests refused before checking, by status code",
            ["code"],
            registry=r,
        )

    def observe(self, api: str, verdict: Verdict) -> None:
        """Count one verdict."""
        decision = "blocked" if verdict.blocked else "allowed"
        self.checks.labels(api, verdict.stage, verdict.status.value, decision).inc()
        self.tokens.labels("prompt").inc(verdict.usage.prompt_tokens)
        self.tokens.labels("completion").inc(verdict.usage.completion_tokens)
        if verdict.cached:
            self.cache_hits.inc()
        if verdict.status is Status.ERROR:
            self.backend_errors.inc()

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)
