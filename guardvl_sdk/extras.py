"""Optional extras: which feature needs which, checked before anything heavy is imported.

The core distribution is the light client (policy, verdicts, middleware, remote backend,
evaluation of prediction files, CLI). A feature that needs more calls :func:`require` first, so a
missing extra ends in a :class:`~guardvl_sdk.errors.MissingExtraError` naming the install line,
not in a ``ModuleNotFoundError`` deep inside an import.
"""

from __future__ import annotations

import importlib.util

from guardvl_sdk.errors import MissingExtraError

__all__ = ["EXTRAS", "require"]

EXTRAS: dict[str, tuple[str, ...]] = {
    "local": ("torch", "torchvision", "transformers", "accelerate"),
    "4bit": ("bitsandbytes",),
    "train": ("torch", "torchvision", "transformers", "accelerate", "trl", "peft", "datasets"),
    "openai": ("openai",),
    "langchain": ("langchain_core",),
    "eval": ("matplotlib",),
}
"""The importable modules each extra brings (its name in pyproject.toml's optional dependencies)."""


def require(extra: str, feature: str, *, modules: tuple[str, ...] | None = None) -> None:
    """Raise :class:`MissingExtraError` unless every module of ``extra`` can be imported.

    Args:
        extra: The extra's name, a key of :data:`EXTRAS`.
        feature: What needs it, for the message (e.g. ``"Guard.from_pretrained"``).
        modules: Only these of the extra's modules (default: all of them).
    """
    missing = [name for name in modules or EXTRAS[extra] if not _importable(name)]
    if missing:
        raise MissingExtraError(feature, extra, missing)


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package that is missing or broken
        return False
