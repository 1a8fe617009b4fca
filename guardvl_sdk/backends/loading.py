"""Loading a guard model with transformers: device, dtype, quantization, adapter.

The one place that turns a model id and loading options into a model and its processor;
:class:`~guardvl_sdk.backends.local.LocalBackend` and training's base loading both use it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from guardvl_sdk.errors import ConfigurationError, ModelLoadError
from guardvl_sdk.extras import require

__all__ = [
    "Quantization",
    "check_model_source",
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
        ModelLoadError: The model, processor or adapter could not be loaded, or the model or
            adapter names no directory and no hub id.
        MissingExtraError: The [local] extra (or peft, for an adapter) is not installed.
    """
    require("local", "loading a guard model in this process (Guard.from_pretrained)")
    if adapter is not None:
        require("local", "a LoRA adapter (adapter=...)", modules=("peft",))
    name = str(model_id)
    is_directory = check_model_source(name, what="guard model")
    if adapter is not None:
        check_model_source(str(adapter), what="adapter")

    from transformers import AutoModelForImageTextToText, AutoProcessor

    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target)
    quantization = quantization_config(quantization, target, torch_dtype)
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
    except (OSError, ValueError, ImportError, RuntimeError) as exc:
        where = (
            "the directory must hold safetensors weights and the processor files"
            if is_directory
            else "a hub id needs network access or a local cache (HF_HUB_OFFLINE=1 forbids "
            "downloads)"
        )
        raise ModelLoadError(f"could not load guard model {name!r}: {exc}. {where}.") from exc
    if adapter is not None:
        try:
            model.load_adapter(str(adapter))  # revision applies to the base model only
        except (OSError, ValueError, ImportError, RuntimeError, KeyError) as exc:
            raise ModelLoadError(
                f"could not load adapter {str(adapter)!r} on guard model {name!r}: {exc}. "
                "An adapter directory holds adapter_config.json and adapter_model.safetensors "
                "(guardvl train sft --method lora writes them), trained on this base model."
            ) from exc
        name = f"{name}+{adapter}"
    model.eval()
    return model, processor, name


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9]")


def check_model_source(source: str, *, what: str) -> bool:
    """Say early what is wrong with a model argument; True for a local directory.

    An existing path must be a directory. Anything else is read as a hub id only when it looks
    like one (``owner/name``, not ``./x``, ``/x`` or ``~/x``); otherwise it names a directory
    that does not exist.

    Raises:
        ModelLoadError: The path is a file, or names no directory and is no hub id.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return True
    if path.exists():
        raise ModelLoadError(f"{what} {source!r} is a file: give the model's directory")
    if _HUB_ID.fullmatch(source) is None or source.startswith((".", "~")):
        raise ModelLoadError(
            f"{what} {source!r}: no such directory (and not a hub id of the form owner/name)"
        )
    return False


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
    require("4bit", f"{quantization} quantization")
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
