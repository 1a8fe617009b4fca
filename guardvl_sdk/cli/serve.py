"""``guardvl serve``: a guard over HTTP, from a configuration file, flags on top.

Exit status: 0 after a clean shutdown, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from guardvl_sdk.cli import common
from guardvl_sdk.errors import ConfigurationError, GuardVLError

if TYPE_CHECKING:
    from guardvl_sdk.config import GuardConfig

__all__ = ["add_serve_parser", "serve_config"]


def add_serve_parser(commands: Any) -> None:
    """``guardvl serve``."""
    serve = common.add_command(commands, "serve", _serve)
    serve.add_argument("--config", help="a guard.yaml (see guardvl_sdk.config)")
    serve.add_argument("--model", help="model id or directory; with --server, the served name")
    serve.add_argument("--server", nargs="+", metavar="URL", help="inference server base URLs")
    serve.add_argument("--adapter", help="a LoRA adapter trained on --model")
    serve.add_argument("--quantization", choices=["auto", "4bit", "8bit", "none"])
    serve.add_argument("--device", help="e.g. cuda, cuda:1, cpu")
    serve.add_argument("--max-new-tokens", type=int)
    serve.add_argument("--on-error", choices=["block", "allow"], help="default: block")
    serve.add_argument("--host", help="default 127.0.0.1")
    serve.add_argument("--port", type=int, help="default 8080")
    serve.add_argument("--api-key-file", help="accepted API keys, one per line")
    serve.add_argument(
        "--api-key",
        action="append",
        default=[],
        help="an accepted API key (repeatable; prefer --api-key-file or $GUARDVL_API_KEY)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])


def serve_config(args: argparse.Namespace) -> GuardConfig:
    """The configuration ``guardvl serve`` runs: the file's, with the flags on top."""
    from guardvl_sdk.config import GuardConfig, load_config

    data: dict[str, Any] = {}
    if args.config:
        data = load_config(args.config).model_dump(exclude_unset=True)
    if args.server:
        if not args.model:
            raise ConfigurationError("--server needs --model, the served model's name")
        data["backend"] = {"type": "server", "base_url": args.server, "model": args.model}
    elif args.model:
        data["backend"] = {"type": "local", "model": args.model}
    backend = data.get("backend")
    if backend is None:
        raise ConfigurationError("give --config, --model, or --server URL... --model NAME")
    quantization = None if args.quantization == "none" else args.quantization
    local = {"adapter": args.adapter, "device": args.device, "quantization": quantization}
    for key, value in {**local, "max_new_tokens": args.max_new_tokens}.items():
        if value is not None and (backend["type"] == "local" or key == "max_new_tokens"):
            backend[key] = value
    if args.on_error:
        data.setdefault("guard", {})["on_error"] = args.on_error
    server = data.setdefault("server", {})
    for key in ("host", "port", "api_key_file"):
        if getattr(args, key) is not None:
            server[key] = getattr(args, key)
    return GuardConfig.model_validate(data)


def _serve(args: argparse.Namespace) -> int:
    """serve a guard over HTTP: moderation API, native checks, LiteLLM guardrail

    Serve a guard over HTTP (extra guardvl-sdk[server]); see docs/serving.md. Give --config FILE,
    or --model (a model in this process) or --server URL... --model NAME (inference servers).
    Flags override the file.
    """
    try:
        from guardvl_sdk.server import ServerSettings, serve
    except ImportError as exc:
        print(f"guardvl serve needs the server extra: pip install 'guardvl-sdk[server]' ({exc})")
        return common.EXIT_USAGE
    try:
        config = serve_config(args)
        keys = [*args.api_key, *filter(None, [os.environ.get("GUARDVL_API_KEY")])]
        section = config.server
        settings = ServerSettings(
            api_keys=(*keys, *section.api_keys()),
            max_body_bytes=section.max_body_bytes,
            max_images=section.max_images,
            timeout=section.timeout,
            shutdown_grace=section.shutdown_grace,
        )
        from guardvl_sdk.guard import Guard

        guard = Guard.from_config(config)
    except (GuardVLError, ValidationError) as exc:
        return common.usage_error("serve", exc)
    serve(
        guard, settings, host=config.server.host, port=config.server.port, log_level=args.log_level
    )
    return common.EXIT_ALLOWED
