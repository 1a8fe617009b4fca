"""Long text: split into overlapping windows that each fit the guard's budget, and combine.

A text longer than the budget is never silently cut: every part of it is checked, and the
combined verdict is harmful if any window is harmful, ``ok`` only if every window is ``ok``.
"""

from __future__ import annotations

from collections.abc import Sequence

from guardvl_sdk.verdict import Label, Status, Usage, Verdict

__all__ = ["combine_windows", "split_windows"]


def split_windows(text: str, size: int, overlap: int, *, max_bytes: int | None = None) -> list[str]:
    """Cut ``text`` into windows of at most ``size`` characters, each overlapping the last.

    The overlap means a harmful phrase shorter than ``overlap`` characters is always whole in at
    least one window. Windows end at whitespace where possible, so words stay whole. With
    ``max_bytes``, a window also holds at most that many UTF-8 bytes: a safe proxy for tokens
    (a byte-level tokenizer never makes more tokens than bytes), so 6,000 emoji cannot become
    24,000 tokens in one window. A window shrunk by it keeps at most half of itself as overlap.
    """
    if size <= overlap:
        raise ValueError("window size must be larger than the overlap")
    if len(text) <= size and (max_bytes is None or _utf8_length(text) <= max_bytes):
        return [text]
    windows = []
    start = 0
    while True:
        end = min(start + size, len(text))
        if max_bytes is not None:
            end = _fit_bytes(text, start, end, max_bytes)
        room = end - start
        keep = overlap if room == size else min(overlap, room // 2)
        if end < len(text):
            cut = text.rfind(" ", start + room - keep // 2, end)
            end = cut if cut > start + keep else end
        windows.append(text[start:end])
        if end >= len(text):
            return windows
        start = end - keep


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _fit_bytes(text: str, start: int, end: int, max_bytes: int) -> int:
    """The largest ``end`` (at least ``start + 1``) whose window holds ``max_bytes`` or fewer."""
    if _utf8_length(text[start:end]) <= max_bytes:
        return end
    low, high = start + 1, end  # bytes(text[start:low]) <= max_bytes, by a 4-byte character
    while low < high:
        middle = (low + high + 1) // 2
        if _utf8_length(text[start:middle]) <= max_bytes:
            low = middle
        else:
            high = middle - 1
    return low


def _label(labels: Sequence[Label | None], all_ok: bool) -> Label | None:
    if Label.HARMFUL in labels:
        return Label.HARMFUL
    if all_ok and labels and all(label is Label.UNHARMFUL for label in labels):
        return Label.UNHARMFUL
    return None


def combine_windows(verdicts: Sequence[Verdict]) -> Verdict:
    """One verdict from the verdicts of a text's windows, in text order.

    The caller makes the decision (``blocked``) on the combined verdict.
    """
    if len(verdicts) == 1:
        return verdicts[0]
    all_ok = all(v.status is Status.OK for v in verdicts)
    deciding = next(
        (v for v in verdicts if v.harmful),
        next((v for v in verdicts if v.status is not Status.OK), verdicts[0]),
    )
    scores = [v.score for v in verdicts if v.score is not None]
    return deciding.model_copy(
        update={
            "request": _label([v.request for v in verdicts], all_ok),
            "response": _label([v.response for v in verdicts], all_ok)
            if deciding.stage == "output"
            else None,
            "status": Status.OK if all_ok else deciding.status,
            "score": max(scores) if scores else None,
            "usage": Usage(
                prompt_tokens=sum(v.usage.prompt_tokens for v in verdicts),
                completion_tokens=sum(v.usage.completion_tokens for v in verdicts),
            ),
            "latency_ms": max(v.latency_ms for v in verdicts),
            "windows": len(verdicts),
        }
    )
