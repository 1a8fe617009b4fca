"""A backend that returns generations you script, for testing decisions without a model."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence

from guardvl_sdk.backends.base import Generation, Prompt

__all__ = ["Script", "ScriptedBackend"]

Script = str | Callable[[Prompt], str | Generation]


class ScriptedBackend:
    """A backend that returns generations you script, for testing decisions without a model.

    Args:
        script: One of: a single string returned for every prompt; an iterable of strings or
            :class:`Generation` objects returned in order (an exhausted script raises); or a
            callable that receives the rendered :class:`Prompt` and returns either.
        model_id: Reported as ``Verdict.model``.

    Every prompt the backend receives is kept in :attr:`prompts`, so tests can assert what the
    guard actually sent.
    """

    def __init__(
        self,
        script: str | Iterable[str | Generation] | Callable[[Prompt], str | Generation],
        *,
        model_id: str = "scripted",
    ) -> None:
        self.model_id = model_id
        self.prompts: list[Prompt] = []
        self.calls = 0
        self._lock = threading.Lock()
        self._fn: Callable[[Prompt], str | Generation] | None
        if isinstance(script, str):
            text = script
            self._fn = lambda _prompt: text
            self._queue: list[str | Generation] = []
        elif callable(script):
            self._fn = script
            self._queue = []
        else:
            self._fn = None
            self._queue = list(script)

    def generate(self, prompts: Sequence[Prompt]) -> list[Generation]:
        """Return the scripted generation for each prompt, in order."""
        with self._lock:
            self.calls += 1
            self.prompts.extend(prompts)
            outputs: list[Generation] = []
            for prompt in prompts:
                if self._fn is not None:
                    item = self._fn(prompt)
                elif self._queue:
                    item = self._queue.pop(0)
                else:
                    raise RuntimeError("ScriptedBackend: the script has no generations left")
                if isinstance(item, str):
                    item = Generation(text=item, finished=True, completion_tokens=len(item.split()))
                outputs.append(item)
            return outputs
