"""Loading a guard model with transformers: device, dtype, quantization, adapter.

The one place that turns a model id and loading options into a model and its processor;
:class:`~guardvl_sdk.backends.local.LocalBackend` and training's base loading both use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from guardvl_sdk.errors import ConfigurationError, ModelLoadError

__all__ = [
    "Quantization",
    "load_model",
    "quantization_config",
    "resolve_device",
    "resolve_dtype",
]

Quantization = Literal["auto", "4bit", "8bit"] | None


def resolve_device(device: str | None) -> Any:
    """``device`` as a ``torch.device``; default: CUDA when available, else CPU."""
    import torch

    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def load_model(
    model_id: str | Path,
    *,
    quantization: Quantization = "auto",
    device: str | None = None,
    dtype: str | Any | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    adapter: str | Path | None = None,
    **model_kwargs: Any,
) -> tuple[Any, Any, str]:
    """Load a model and its processor with ``AutoProcessor`` / ``AutoModelForImageTextToText``.

    Args:
        model_id: A Hugging Face model id or a local directory.
        quantization: ``"auto"`` (4-bit nf4 on CUDA, none elsewhere), ``"4bit"``, ``"8bit"``
            (bitsandbytes) or None.
        device: ``"cuda"``, ``"cuda:1"``, ``"cpu"``...; default: CUDA when available.
        dtype: Weights (and 4-bit compute) dtype; default bfloat16 on CUDA, float32 on CPU.
        revision: A branch, tag or commit of the model repository.
        trust_remote_code: Run code shipped with the checkpoint. Off unless you ask.
        adapter: A PEFT (LoRA) adapter to apply on top of the model (needs ``peft``).
        **model_kwargs: Passed on to ``from_pretrained`` of the model.

    Returns:
        The model (in eval mode), its processor, and the name to report
        (``"model+adapter"`` with an adapter).

    Raises:
        ConfigurationError: An unknown dtype or quantization.
        ModelLoadError: The model, processor or adapter could not be loaded.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target)
    quantization = quantization_config(quantization, target, torch_dtype)
    name = str(model_id)
    common = {"revision": revision, "trust_remote_code": trust_remote_code}
    try:
        processor = AutoProcessor.from_pretrained(name, **common)
        model = AutoModelForImageTextToText.from_pretrained(
            name,
            dtype=torch_dtype,
            device_map={"": str(target)},
            quantization_config=quantization,
            use_safetensors=True,
            **common,
            **model_kwargs,
        )
        if adapter is not None:
            model.load_adapter(str(adapter))  # revision applies to the base model only
            name = f"{name}+{adapter}"
    except (OSError, ValueError, ImportError, RuntimeError) as exc:
        raise ModelLoadError(
            f"could not load guard model {name!r}: {exc}. A hub id needs network access or a "
            "local cache (HF_HUB_OFFLINE=1 forbids downloads); a directory must hold "
            "safetensors weights and the processor files."
        ) from exc
    model.eval()
    return model, processor, name


def resolve_dtype(dtype: str | Any | None, device: Any) -> Any:
    """``dtype`` as a ``torch.dtype``; default bfloat16 on CUDA, float32 elsewhere."""
    import torch

    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype):
        raise ConfigurationError(f"unknown dtype {dtype!r}: use e.g. 'bfloat16' or 'float32'")
    return resolved


def quantization_config(quantization: Quantization, device: Any, dtype: Any) -> Any:
    """The ``BitsAndBytesConfig`` for ``quantization`` on ``device``, or None for none."""
    if quantization == "auto":
        quantization = "4bit" if device.type == "cuda" else None
    if quantization is None:
        return None
    if quantization not in ("4bit", "8bit"):
        raise ConfigurationError(
            f"unknown quantization {quantization!r}: use 'auto', '4bit', '8bit' or None"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise ModelLoadError(f"{quantization} quantization needs bitsandbytes: {exc}") from exc
    from transformers import BitsAndBytesConfig

    # The vision tower stays in `dtype`: it is small, and quantizing it costs accuracy.
    skip = ["model.visual", "visual", "lm_head"]  # the prefix form is what transformers 5 matches
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_use_double_quant=True,
        llm_int8_skip_modules=skip,
    )
