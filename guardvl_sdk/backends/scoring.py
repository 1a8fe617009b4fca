"""The score: P(harmful) at the label token, one definition for every backend.

The label token is the one that starts the word after the last ``Request:`` (or ``Response:``)
before ``</result>``. Its alternatives are sorted into the harmful ones (``harmful`` or a prefix
of it, such as ``harm``) and the unharmful ones (``unharmful``, ``harmless``, ``none`` or their
prefixes, such as ``un``); the score is the harmful share of their probability. A remote backend
reads the alternatives from the server's top log probabilities, the local one from the logits of
its own generation step (no extra forward pass).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["RESULT_END", "STOP_STRINGS", "label_side", "label_token_index"]

RESULT_END = "</result>"
# Generation stops once the result block is closed: nothing after it is read.
STOP_STRINGS = (RESULT_END,)


def label_token_index(pieces: Sequence[str], label: str) -> int | None:
    """Index of the label token among generated token ``pieces``, or None when there is no label.

    Args:
        pieces: The generated tokens, each decoded alone, in order.
        label: ``"request"`` or ``"response"``.
    """
    text = "".join(pieces)
    end = text.find(RESULT_END)
    pattern = rf"\b{re.escape(label)}\s*:\s*\**\s*(?=\w)"
    matches = list(re.finditer(pattern, text[: end if end >= 0 else None], re.IGNORECASE))
    if not matches:
        return None
    word_start = matches[-1].end()
    offset = 0
    for index, piece in enumerate(pieces):
        if offset + len(piece) > word_start:
            return index
        offset += len(piece)
    return None


def label_side(token: str) -> bool | None:
    """True for the start of ``harmful``, False for that of an unharmful word, else None."""
    word = re.sub(r"^[\W_]+", "", token.lower())  # leading space, colon, markdown
    if not word:
        return None
    if word.startswith("harml") or any(
        w.startswith(word) or word.startswith(w) for w in ("unharmful", "none")
    ):
        return False
    # "harm" also starts "harmless", but the guard was trained to write harmful or unharmful.
    if "harmful".startswith(word) or word.startswith("harmful"):
        return True
    return None
