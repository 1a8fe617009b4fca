"""A ``GRPOTrainer`` that trains on batches mixing text-only and image prompts (trl 1.16).

Patches trl 1.16 (written against and tested with trl 1.16.0, the version CI installs), where
two gaps break GRPO on Qwen2.5-VL when a batch mixes prompts with and without images:

- ``GRPOTrainer._generate`` returns None as a text-only prompt's images next to image prompts;
  the processor takes an empty list, not None. The override turns None into ``[]``.
- ``GRPOTrainer._get_per_token_logps_and_entropies`` sends a chunk of rows without any image to
  the vision tower with empty inputs, which fails. The override scores such chunks without
  vision inputs and slices the pixel rows of the others itself.

Both overrides read private trl methods (``_generate``'s 8-tuple with images at index 6, the
vision keywords of ``_get_per_token_logps_and_entropies``). On another trl version importing this
module logs a warning: check those two methods in trl's source and this module's tests
(``tests/test_rl_train.py``) before relying on it. Delete the module when trl handles mixed
batches itself.
"""

from __future__ import annotations

import logging
from itertools import accumulate
from typing import Any

import torch
import trl
from trl.trainer.grpo_trainer import GRPOTrainer

__all__ = ["PATCHED_TRL", "GuardGRPOTrainer"]

PATCHED_TRL = ("1.16",)
"""trl release lines whose private methods this module's overrides were written against."""

if not trl.__version__.startswith(PATCHED_TRL):
    logging.getLogger("guardvl_sdk").warning(
        "guardvl_sdk.training.grpo_patch was written for trl %s, not %s: check its overrides",
        " / ".join(PATCHED_TRL),
        trl.__version__,
    )


class GuardGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` that takes batches mixing prompts with and without images."""

    def _generate(self, prompts: list[Any]) -> Any:
        out = super()._generate(prompts)
        images = out[6]
        if images is not None:
            out = (*out[:6], [found or [] for found in images], *out[7:])
        return out

    def _get_per_token_logps_and_entropies(
        self,
        model: Any,
        input_ids: Any,
        attention_mask: Any,
        logits_to_keep: int,
        batch_size: int | None = None,
        compute_entropy: bool = False,
        compute_aux_loss: bool = False,
        **vision: Any,
    ) -> Any:

        parent = super()._get_per_token_logps_and_entropies
        counts = vision.get("num_images")
        grid = vision.get("image_grid_thw")
        pixels = vision.get("pixel_values")
        size = batch_size or input_ids.size(0)
        starts = range(0, input_ids.size(0), size)
        other = {"mm_token_type_ids", "token_type_ids", "num_images", "image_grid_thw"}
        if (
            counts is None
            or grid is None
            or pixels is None
            or any(v is not None for k, v in vision.items() if k not in other | {"pixel_values"})
            or all(sum(counts[s : s + size]) for s in starts)
        ):
            return parent(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size,
                compute_entropy,
                compute_aux_loss,
                **vision,
            )
        image_at = [0, *accumulate(counts)]
        row_at = [0, *accumulate(grid.prod(dim=-1).tolist())]
        logps, entropies, aux = [], [], []
        for start in starts:
            end = min(start + size, input_ids.size(0))
            first, last = image_at[start], image_at[end]
            chunk: dict[str, Any] = {
                key: vision[key][start:end]
                for key in ("mm_token_type_ids", "token_type_ids")
                if vision.get(key) is not None
            }
            if last > first:
                chunk["pixel_values"] = pixels[row_at[first] : row_at[last]]
                chunk["image_grid_thw"] = grid[first:last]
                chunk["num_images"] = counts[start:end]
            out = parent(
                model,
                input_ids[start:end],
                attention_mask[start:end],
                logits_to_keep,
                None,
                compute_entropy,
                compute_aux_loss,
                **chunk,
            )
            logps.append(out[0])
            entropies.append(out[1])
            aux.append(out[2])
        return (
            torch.cat(logps, dim=0),
            torch.cat(entropies, dim=0) if compute_entropy else None,
            torch.stack(aux).mean() if compute_aux_loss else None,
        )
