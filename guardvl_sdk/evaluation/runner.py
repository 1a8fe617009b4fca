"""Running a guard over labelled records, batched, with a progress bar and a resume cache.

Every finished item is appended to ``generations.jsonl`` in the output folder, keyed by dataset,
item index and a hash of the item's content (images included), the guard's model id and its
policy. A rerun into the same folder skips the items already there, so an interrupted evaluation
resumes where it stopped; an item whose content, model or policy changed is checked again.
Generation settings (``max_new_tokens``, quantization) are not in the key: use a new folder when
you change them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardvl_sdk.errors import GuardOutputError, GuardVLError
from guardvl_sdk.evaluation.consistency import inconsistency, shown_reasoning
from guardvl_sdk.evaluation.datasets import discover
from guardvl_sdk.evaluation.metrics import Outcome, Task
from guardvl_sdk.evaluation.results import POSITIVE, DatasetResult, EvalResult
from guardvl_sdk.policy import Policy
from guardvl_sdk.records import Record, load_records
from guardvl_sdk.verdict import Label, Status, Verdict

if TYPE_CHECKING:
    from guardvl_sdk.guard import Guard

__all__ = ["CACHE_FILE", "evaluate_guard"]

logger = logging.getLogger("guardvl_sdk")

CACHE_FILE = "generations.jsonl"
"""The resume cache in the output folder: one finished item per line."""


@dataclass(frozen=True)
class _Item:
    dataset: str
    index: int
    record: Record
    key: str


def evaluate_guard(
    guard: Guard,
    data: str | Path,
    *,
    output: str | Path | None = None,
    progress: bool = True,
    limit: int | None = None,
    target_precision: float | None = None,
    target_recall: float | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> EvalResult:
    """Run ``guard`` over labelled JSONL records and measure it.

    Each record is one check: its request and images (or, for a multi-turn item, its
    conversation, judged alone), with its response when it has one (the guard then judges
    both). A record is scored on the request task when it has a ``request_label`` and on the
    response task when it has a ``response_label``.

    Args:
        guard: The guard to measure. Its ``batch_size`` items go to the backend at a time.
        data: A JSONL file of :class:`~guardvl_sdk.records.Record` objects, or a folder of them
            (one dataset per file, see :func:`~guardvl_sdk.evaluation.discover`).
        output: A folder for the resume cache (``generations.jsonl``); None keeps nothing.
        progress: Show a progress bar with an ETA (tqdm) on stderr.
        limit: Check only the first ``limit`` records of each dataset.
        target_precision: Report the score threshold that meets this precision.
        target_recall: Report the score threshold that meets this recall.
        resamples: Bootstrap resamples for the 95% intervals.
        seed: The bootstrap's seed (the same seed gives the same intervals).

    Raises:
        InvalidDataError: A data file has bad records (all listed by line).
        InvalidInputError: ``data`` holds no ``.jsonl`` file.
    """
    datasets = [
        (name, path, load_records(path, multi_turn=True)[:limit]) for name, path in discover(data)
    ]
    items = [
        _Item(name, index, record, _key(record, guard))
        for name, _, records in datasets
        for index, record in enumerate(records)
    ]
    cache_path = Path(output) / CACHE_FILE if output is not None else None
    done = _load_cache(cache_path)
    pending = [i for i in items if done.get((i.dataset, i.index), {}).get("key") != i.key]
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
    _run(guard, pending, done, cache_path, progress=progress, resumed=len(items) - len(pending))

    results = []
    for name, path, records in datasets:
        outcomes: dict[Task, list[Outcome]] = {}
        for index, record in enumerate(records):
            entry = done[(name, index)]
            golds: dict[Task, Label | None] = {
                "request": record.request_label,
                "response": record.response_label,
            }
            for task, gold in golds.items():
                if gold is not None:
                    outcomes.setdefault(task, []).append(
                        _outcome(entry, task, gold.value, record, guard.policy)
                    )
        results.append(DatasetResult(name, path, outcomes, resamples=resamples, seed=seed))
    notes = [f"model: {guard.model_id}, batch size {guard.batch_size}"]
    if guard.batch_size > 1:
        notes.append(
            "latency of an item is the wall time of the batch it was checked in (what a "
            "check_batch caller waits); use batch size 1 for per-request latency"
        )
    if len(items) - len(pending):
        notes.append(
            f"{len(items) - len(pending)} of {len(items)} items were resumed from {cache_path}"
        )
    return EvalResult(
        results,
        source="model",
        model=guard.model_id,
        notes=notes,
        target_precision=target_precision,
        target_recall=target_recall,
    )


def _run(
    guard: Guard,
    pending: list[_Item],
    done: dict[tuple[str, int], dict[str, Any]],
    cache_path: Path | None,
    *,
    progress: bool,
    resumed: int,
) -> None:
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(pending) + resumed,
        initial=resumed,
        desc="guardvl eval",
        unit="item",
        disable=not progress,
    )
    try:
        for start in range(0, len(pending), guard.batch_size):
            chunk = pending[start : start + guard.batch_size]
            verdicts = _check(guard, chunk)
            entries = [_entry(i, v, guard.policy) for i, v in zip(chunk, verdicts, strict=True)]
            for entry in entries:
                done[(entry["dataset"], entry["index"])] = entry
            if cache_path is not None:
                with cache_path.open("a", encoding="utf-8") as sink:
                    sink.writelines(
                        json.dumps(entry, ensure_ascii=False) + "\n" for entry in entries
                    )
            bar.update(len(chunk))
    finally:
        bar.close()


def _check(guard: Guard, chunk: list[_Item]) -> list[Verdict | str]:
    """Verdicts for a chunk; an item the guard refuses becomes its error message.

    One batch, each item checked (and audited) once: a failed item comes back in its place.
    """
    inputs = [_input(item.record) for item in chunk]
    results: list[Verdict | str] = []
    found = guard.check_batch(inputs, return_exceptions=True)
    for item, result in zip(chunk, found, strict=True):
        if isinstance(result, GuardOutputError):
            results.append(result.verdict)  # on_error="raise": the verdict is still the answer
        elif isinstance(result, GuardVLError):
            logger.warning("eval: %s item %d failed: %s", item.dataset, item.index, result)
            results.append(f"{type(result).__name__}: {result}")
        else:
            results.append(result)
    return results


def _input(record: Record) -> dict[str, Any]:
    if record.messages is not None:  # judged alone: no memory of other items
        return {"messages": record.messages, "response": record.response, "memory": False}
    return {
        "text": record.request,
        "image": list(record.images) or None,
        "response": record.response,
    }


def _entry(item: _Item, verdict: Verdict | str, policy: Policy) -> dict[str, Any]:
    """What the cache keeps of one check: each task's label and status, score, tokens, latency.

    A task's label is read from the generation with ``require=(task,)``, as for prediction
    files, so a response check is scored on its response label even when its request label is
    unreadable. A check of a long text in several windows keeps the guard's combined verdict.
    """
    base = {"dataset": item.dataset, "index": item.index, "key": item.key}
    if isinstance(verdict, str):
        return {**base, "status": Status.ERROR.value, "error": verdict}
    tasks: dict[str, tuple[str | None, str]] = {}
    for task in ("request", "response"):
        if task == "response" and verdict.stage == "input":
            continue
        if verdict.windows == 1 and verdict.status is not Status.ERROR:
            parsed = policy.parse(
                verdict.raw,
                has_response=verdict.stage == "output",
                finished=verdict.status is not Status.TRUNCATED,
                require=(task,),
            )
            status, label = parsed.status, getattr(parsed, task)
        else:
            status, label = verdict.status, getattr(verdict, task)
        ok = status is Status.OK and label is not None
        tasks[task] = (label.value if ok else None, status.value)
    return {
        **base,
        "status": verdict.status.value,
        "tasks": tasks,
        "score": verdict.score,
        "stage": verdict.stage,
        "output_tokens": verdict.usage.completion_tokens,
        "latency_ms": verdict.latency_ms,
        "error": verdict.error,
        "raw": verdict.raw,
        "reasoning": verdict.reasoning,
        "categories": verdict.categories,
    }


def _outcome(
    entry: dict[str, Any], task: Task, gold: str, record: Record, policy: Policy
) -> Outcome:
    label, status = entry.get("tasks", {}).get(task, (None, entry["status"]))
    score_task = "response" if entry.get("stage") == "output" else "request"
    raw = entry.get("raw") or ""
    categories = tuple(entry.get("categories") or ())
    shown = [f"[image {image.name}]" for image in record.images] + [record.request]
    if record.messages is not None:  # a multi-turn item: its turns, images by name only
        shown = [f"[{m.get('role')}] {_text_of(m.get('content'))}" for m in record.messages]
    if record.response is not None:
        shown.append(f"[response] {record.response}")
    return Outcome(
        gold=gold == POSITIVE[task],
        predicted=None if label is None else label == POSITIVE[task],
        status=status,
        score=entry.get("score") if task == score_task else None,
        output_tokens=entry.get("output_tokens"),
        latency_ms=entry.get("latency_ms"),
        ref=record.id,
        input="\n".join(shown),
        output=raw or entry.get("error"),
        reasoning=shown_reasoning(raw, entry.get("reasoning")) if raw else None,
        gold_categories=tuple(record.categories),
        categories=categories,
        inconsistent=inconsistency(
            raw,
            task,
            label,
            categories=categories,
            policy_categories=[c.name for c in policy.categories],
        )
        if raw
        else None,
    )


def _text_of(content: Any) -> str:
    """A chat message's content as text for the report (image parts as ``[image]``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", "")) if part.get("type") == "text" else "[image]"
            for part in content
            if isinstance(part, dict)
        )
    return ""


def _file_hash(value: object) -> str:
    """An image file inside a multi-turn item's messages, keyed by its content, not its path."""
    if isinstance(value, Path):
        return "sha256:" + hashlib.sha256(value.read_bytes()).hexdigest()
    raise TypeError(f"cannot key a {type(value).__name__}")


def _key(record: Record, guard: Guard) -> str:
    """A hash of the record's content, the guard's model id and its policy."""
    digest = hashlib.sha256()
    identity = [
        guard.model_id,
        guard.policy.model_dump_json(),
        record.request,
        record.response,
        *(
            [json.dumps(record.messages, sort_keys=True, default=_file_hash)]
            if record.messages is not None
            else []
        ),
    ]
    digest.update(json.dumps(identity).encode())
    for image in record.images:
        digest.update(hashlib.sha256(image.read_bytes()).digest())
    return digest.hexdigest()[:32]


def _load_cache(path: Path | None) -> dict[tuple[str, int], dict[str, Any]]:
    """Finished items from an earlier run; a torn last line (a crash mid-write) is ignored."""
    if path is None or not path.is_file():
        return {}
    done: dict[tuple[str, int], dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").split("\n"):
        try:
            entry = json.loads(line)
            done[(entry["dataset"], entry["index"])] = entry
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return done
