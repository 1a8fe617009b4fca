"""``guardvl serve``: the guard as an HTTP service (extra ``guardvl-sdk[server]``).

An OpenAI-compatible moderation API (``POST /v1/moderations``), the native check API
(``POST /v1/guard/check``), LiteLLM's Generic Guardrail API, ``/health``, ``/ready`` and
Prometheus ``/metrics``. See docs/serving.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guardvl_sdk.server.app import LITELLM_PATH, ServerSettings, create_app
    from guardvl_sdk.server.run import serve, serve_in_thread

__all__ = ["LITELLM_PATH", "ServerSettings", "create_app", "serve", "serve_in_thread"]


def __getattr__(name: str) -> Any:
    # Lazy, so the request reading in guardvl_sdk.server.parsing imports without the extra.
    if name in ("LITELLM_PATH", "ServerSettings", "create_app"):
        from guardvl_sdk.server import app

        return getattr(app, name)
    if name in ("serve", "serve_in_thread"):
        from guardvl_sdk.server import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
