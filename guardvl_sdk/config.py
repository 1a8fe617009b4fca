"""One configuration file for a guard and its service: ``Guard.from_config`` and ``guardvl serve``.

A YAML (or JSON) file with up to four sections, validated with pydantic; an error names the file
and the key::

    backend:                 # where the guard's output comes from (required)
      type: server           # or: local
      base_url: [http://gpu-1:8000/v1, http://gpu-2:8000/v1]
      model: GuardReasoner-VL-Eco-3B
      api_key_env: GUARD_API_KEY
    policy: ./my-policy      # a guardvl_policy.json (or its directory); default: the model's
    guard:                   # every Guard option
      on_error: block
      cache: {maxsize: 10000}
      audit: {path: audit.jsonl}
    server:                  # guardvl serve only
      port: 8080
      api_key_file: /run/secrets/guard-keys

Secrets are never written in the file: name an environment variable (``api_key_env``) or a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guardvl_sdk.backends.base import DEFAULT_MAX_TIME, DEFAULT_TIMEOUT
from guardvl_sdk.errors import ConfigurationError
from guardvl_sdk.inputs import DEFAULT_MAX_PIXELS

__all__ = [
    "AuditConfig",
    "CacheConfig",
    "GuardConfig",
    "GuardOptions",
    "LocalBackendConfig",
    "RemoteBackendConfig",
    "ServerConfig",
    "load_config",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalBackendConfig(_Section):
    """A model in this process: the arguments of :meth:`Guard.from_pretrained`."""

    type: Literal["local"]
    model: str = Field(default="yueliu1999/GuardReasoner-VL-Eco-3B", description="id or directory")
    quantization: Literal["auto", "4bit", "8bit"] | None = "auto"
    device: str | None = None
    dtype: str | None = None
    revision: str | None = None
    trust_remote_code: bool = False
    max_new_tokens: int = Field(default=1024, ge=1)
    max_time: float | None = Field(default=DEFAULT_MAX_TIME, gt=0)
    timeout: float | None = Field(
        default=DEFAULT_TIMEOUT, gt=0, description="the check deadline, queueing included"
    )
    adapter: str | None = None
    batch_window_ms: float | None = Field(default=5.0, ge=0)
    max_batch_size: int = Field(default=16, ge=1)


class RemoteBackendConfig(_Section):
    """Inference servers: the arguments of :meth:`Guard.from_server`."""

    type: Literal["server"]
    base_url: str | list[str]
    model: str
    api_key_env: str | None = Field(default=None, description="environment variable of the key")
    timeout: float = Field(default=30.0, gt=0)
    max_concurrency: int = Field(default=16, ge=1)
    max_retries: int = Field(default=2, ge=0)
    max_new_tokens: int = Field(default=1024, ge=1)
    logprobs: bool = True
    stop: bool = True
    extra_body: dict[str, Any] | None = None


class CacheConfig(_Section):
    """A :class:`~guardvl_sdk.cache.VerdictCache`."""

    maxsize: int = Field(default=10_000, ge=1)


class AuditConfig(_Section):
    """An audit log: JSON lines or SQLite, by the file's suffix (``.db``/``.sqlite``: SQLite)."""

    path: Path
    include_content: bool = False


class GuardOptions(_Section):
    """The options of :class:`~guardvl_sdk.guard.Guard` (same names, same meaning)."""

    on_error: Literal["block", "allow", "raise"] = "block"
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=28 * 28)
    batch_size: int | None = Field(default=None, ge=1)
    fetch_images: bool = False
    cache: CacheConfig | None = None
    audit: AuditConfig | None = None
    max_text_chars: int = Field(default=6000, ge=1)
    window_overlap: int = Field(default=500, ge=0)
    max_windows: int = Field(default=32, ge=1)
    threshold: float | None = Field(default=None, ge=0, le=1)
    triage: tuple[float, float] | None = None
    unreadable: Literal["raise", "block", "allow"] = "raise"
    conversation_memory: int = Field(default=50_000, ge=0)


class ServerConfig(_Section):
    """``guardvl serve``: where to listen and how to guard the service (see ServerSettings)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    api_key_env: str | None = None
    api_key_file: Path | None = Field(default=None, description="one key per line")
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1)
    max_images: int = Field(default=8, ge=0)
    timeout: float = Field(default=60.0, gt=0)
    shutdown_grace: float = Field(default=30.0, ge=0)

    def api_keys(self) -> list[str]:
        """The keys this section names (``api_key_env``, then every line of ``api_key_file``)."""
        keys = []
        if self.api_key_env:
            keys.append(_env(self.api_key_env, "server.api_key_env"))
        if self.api_key_file:
            keys += read_key_file(self.api_key_file)
        return keys


class GuardConfig(_Section):
    """The whole file: a backend, a policy, the guard's options and the service's."""

    backend: Annotated[LocalBackendConfig | RemoteBackendConfig, Field(discriminator="type")]
    policy: Path | None = None
    guard: GuardOptions = GuardOptions()
    server: ServerConfig = ServerConfig()

    def guard_arguments(self) -> dict[str, Any]:
        """The arguments of the :class:`~guardvl_sdk.guard.Guard` this configuration describes.

        ``Guard.from_config`` calls ``Guard(**config.guard_arguments())``; the backend is built
        (a local model is loaded) here.
        """
        from guardvl_sdk.audit import JsonlAuditLog, SqliteAuditLog
        from guardvl_sdk.cache import VerdictCache
        from guardvl_sdk.policy import Policy

        options = self.guard
        backend, batch_size, policy = self._backend()
        if self.policy is not None:
            policy = Policy.load(self.policy)
        audit: JsonlAuditLog | SqliteAuditLog | None = None
        if options.audit is not None:
            sqlite = options.audit.path.suffix in (".db", ".sqlite", ".sqlite3")
            kind = SqliteAuditLog if sqlite else JsonlAuditLog
            audit = kind(options.audit.path, include_content=options.audit.include_content)
        return dict(
            backend=backend,
            policy=policy,
            on_error=options.on_error,
            max_pixels=options.max_pixels,
            batch_size=options.batch_size or batch_size,
            audit=audit,
            fetch_images=options.fetch_images,
            cache=VerdictCache(options.cache.maxsize) if options.cache else None,
            max_text_chars=options.max_text_chars,
            window_overlap=options.window_overlap,
            max_windows=options.max_windows,
            threshold=options.threshold,
            triage=options.triage,
            unreadable=options.unreadable,
            conversation_memory=options.conversation_memory,
        )

    def _backend(self) -> tuple[Any, int, Any]:
        """The backend, its natural batch size, and the policy saved with its model."""
        config = self.backend
        if isinstance(config, RemoteBackendConfig):
            from guardvl_sdk.backends.remote import RemoteBackend

            api_key = (
                _env(config.api_key_env, "backend.api_key_env") if config.api_key_env else None
            )
            remote = RemoteBackend(
                config.base_url,
                model=config.model,
                api_key=api_key,
                timeout=config.timeout,
                max_concurrency=config.max_concurrency,
                max_retries=config.max_retries,
                max_new_tokens=config.max_new_tokens,
                logprobs=config.logprobs,
                stop=config.stop,
                extra_body=config.extra_body,
            )
            return remote, config.max_concurrency, None
        from guardvl_sdk.backends.local import LocalBackend
        from guardvl_sdk.policy import Policy

        local = LocalBackend.load(
            config.model,
            quantization=config.quantization,
            device=config.device,
            dtype=config.dtype,
            revision=config.revision,
            trust_remote_code=config.trust_remote_code,
            max_new_tokens=config.max_new_tokens,
            max_time=config.max_time,
            timeout=config.timeout,
            adapter=config.adapter,
            batch_window_ms=config.batch_window_ms,
            max_batch_size=config.max_batch_size,
        )
        saved = Policy.from_pretrained(config.adapter) if config.adapter else None
        return local, 8, saved or Policy.from_pretrained(config.model, revision=config.revision)


def _env(name: str, key: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigurationError(f"{key}: the environment variable {name} is not set")
    return value


def read_key_file(path: Path) -> list[str]:
    """API keys from a file, one per line (blank lines and ``#`` comments skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the API key file {path}: {exc}") from exc
    keys = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if not keys:
        raise ConfigurationError(f"the API key file {path} holds no key")
    return keys


def load_config(path: str | Path) -> GuardConfig:
    """Read and validate a configuration file (YAML, or JSON by a ``.json`` suffix).

    Relative paths in the file (policy, audit log, key file) are relative to the file's folder.

    Raises:
        ConfigurationError: The file cannot be read, or a key is unknown or has a bad value;
            the message names the file and every bad key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read the configuration file {path}: {exc}") from exc
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError or json.JSONDecodeError, with the position
        raise ConfigurationError(f"{path}: not valid {path.suffix or 'YAML'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: expected a mapping of sections at the top")
    try:
        config = GuardConfig.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(
            f"  {'.'.join(str(part) for part in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigurationError(f"{path}: invalid configuration\n{problems}") from exc
    return _relative_to(config, path.parent)


def _relative_to(config: GuardConfig, root: Path) -> GuardConfig:
    def resolve(value: Path | None) -> Path | None:
        return value if value is None or value.is_absolute() else root / value

    guard = config.guard
    if guard.audit is not None:
        audit = guard.audit.model_copy(update={"path": resolve(guard.audit.path)})
        guard = guard.model_copy(update={"audit": audit})
    server = config.server.model_copy(update={"api_key_file": resolve(config.server.api_key_file)})
    return config.model_copy(
        update={"policy": resolve(config.policy), "guard": guard, "server": server}
    )
