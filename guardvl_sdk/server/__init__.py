"""``guardvl serve``: the guard as an HTTP service (extra ``guardvl-sdk[server]``).

An OpenAI-compatible moderation API (``POST /v1/moderations``), the native check API
(``POST /v1/guard/check``), LiteLLM's Generic Guardrail API, ``/health``, ``/ready`` and
Prometheus ``/metrics``. See docs/serving.md.
"""

from __future__ import annotations

from guardvl_sdk.server.app import LITELLM_PATH, ServerSettings, create_app
from guardvl_sdk.server.run import serve, serve_in_thread

__all__ = ["LITELLM_PATH", "ServerSettings", "create_app", "serve", "serve_in_thread"]
