"""Running the service under uvicorn, with a graceful shutdown and JSON logs."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from guardvl_sdk.guard import Guard
from guardvl_sdk.server.app import ServerSettings, ServerState, create_app

__all__ = ["serve", "serve_in_thread"]

logger = logging.getLogger("guardvl_sdk.server")


class _DrainingServer(uvicorn.Server):
    """A uvicorn server whose first SIGTERM/SIGINT drains instead of stopping.

    Draining: ``/ready`` and new checks answer 503 (load balancers stop sending), checks in
    flight finish, then the server stops; at the latest after ``shutdown_grace`` seconds. A
    second signal stops at once.
    """

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state
        self.drain_deadline: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_deadline is not None:
            super().handle_exit(sig, frame)
            self.force_exit = True
            return
        self.state.draining = True
        self.drain_deadline = time.monotonic() + self.state.settings.shutdown_grace
        logger.info('{"event": "draining", "in_flight": %d}', self.state.in_flight)

    async def on_tick(self, counter: int) -> bool:
        if self.drain_deadline is not None and (
            self.state.in_flight == 0 or time.monotonic() > self.drain_deadline
        ):
            self.should_exit = True
        return await super().on_tick(counter)


class _JsonLines(logging.Formatter):
    """One JSON object per line: the service's own lines are JSON already; others are wrapped."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        message = record.getMessage()
        try:
            fields = json.loads(message) if message.startswith("{") else None
        except json.JSONDecodeError:
            fields = None
        if not isinstance(fields, dict):
            fields = {"event": "log", "message": message}
        return json.dumps(
            {
                "time": round(record.created, 3),
                "level": record.levelname,
                "logger": record.name,
                **fields,
            }
        )


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLines())
    for name in ("guardvl_sdk", "uvicorn.error"):
        log = logging.getLogger(name)
        log.handlers = [handler]
        log.setLevel(level.upper())
        log.propagate = False


def serve(
    guard: Guard,
    settings: ServerSettings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    log_level: str = "info",
) -> None:
    """Serve ``guard`` over HTTP until SIGTERM or SIGINT (then drain; see ``shutdown_grace``).

    Logs go to stderr as JSON lines, one per request, without request content.
    """
    settings = settings or ServerSettings()
    app = create_app(guard, settings)
    _configure_logging(log_level)
    grace = int(settings.shutdown_grace) + 1
    config = _uvicorn_config(app, host, port, log_level=log_level, timeout_graceful_shutdown=grace)
    _DrainingServer(config, app.state.guardvl).run()


def _uvicorn_config(
    app: Starlette,
    host: str,
    port: int,
    *,
    log_level: str | None = None,
    timeout_graceful_shutdown: int | None = None,
) -> uvicorn.Config:
    """uvicorn's config for either way of serving: no access log of its own (the app logs one
    JSON line per request, without content) and no logging config (ours, or the caller's)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        log_level=log_level,
        timeout_graceful_shutdown=timeout_graceful_shutdown,
    )


@contextlib.contextmanager
def serve_in_thread(
    guard: Guard, settings: ServerSettings | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[str]:
    """Serve ``guard`` from a background thread while the block runs; yields the base URL.

    For tests and benchmarks of apps that call the service: a real uvicorn server on ``host``
    (port 0: a free one), stopped (checks in flight finished) when the block exits.
    """
    app = create_app(guard, settings)
    config = _uvicorn_config(app, host, port)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="guardvl-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the guard service did not start")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
