"""Guard: checks requests and responses with a guard model and decides what may pass.

One module over 400 lines on purpose: ``Guard``'s documented options (and ``GuardOptions``, their
type for the factories that pass them on), its three factories and the check pipeline (cache,
memory, audit); the pure steps of a check are :mod:`guardvl_sdk.steps`. Most of its length is the
documentation of the options, beside the code that takes them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Unpack, overload

from guardvl_sdk import steps
from guardvl_sdk.audit import AuditRecord, AuditSink
from guardvl_sdk.backends.base import DEFAULT_MAX_TIME, DEFAULT_TIMEOUT, AsyncBackend, Backend
from guardvl_sdk.backends.options import RemoteOptions
from guardvl_sdk.cache import VerdictCache
from guardvl_sdk.checks import BatchItem, CheckInput
from guardvl_sdk.conversation import Message
from guardvl_sdk.errors import ConfigurationError, GuardVLError, InvalidInputError
from guardvl_sdk.fetch import ImageFetcher
from guardvl_sdk.hooks import GuardEvent, GuardSession
from guardvl_sdk.inputs import DEFAULT_MAX_PIXELS, ImageInput, without_lone_surrogates
from guardvl_sdk.inspection import ConversationMemory, Inspection, Unreadable
from guardvl_sdk.policy import GUARDREASONER_VL, Policy
from guardvl_sdk.redaction import redact
from guardvl_sdk.steps import Check, OnError, Outcome, Window
from guardvl_sdk.telemetry import record_check
from guardvl_sdk.verdict import Status, Verdict
from guardvl_sdk.windows import combine_windows

if TYPE_CHECKING:
    from guardvl_sdk.backends.base import Prompt
    from guardvl_sdk.config import GuardConfig
    from guardvl_sdk.integrations.langchain import GuardRunnable

__all__ = [
    "DEFAULT_MODEL",
    "DEMO_MODEL",
    "CheckInput",
    "Guard",
    "GuardOptions",
    "OnError",
    "ServerOptions",
    "Unreadable",
]

logger = logging.getLogger("guardvl_sdk")

DEFAULT_MODEL = "yueliu1999/GuardReasoner-VL-Eco-3B"
DEMO_MODEL = "demo"
"""The name that loads the offline demo guard (trained on first use, then cached)."""


class GuardOptions(TypedDict, total=False):
    """The keyword options of :class:`Guard` (documented there), for the factories that pass
    them on (tests/test_factories.py holds the two to the same names)."""

    policy: Policy | None
    on_error: OnError
    max_pixels: int | None
    batch_size: int
    audit: AuditSink | None
    fetch_images: bool | Callable[[str], bytes]
    cache: VerdictCache | None
    max_text_chars: int
    window_overlap: int
    max_windows: int
    threshold: float | None
    triage: tuple[float, float] | None
    conversation_memory: int
    unreadable: Unreadable


class ServerOptions(RemoteOptions, GuardOptions, total=False):
    """What :meth:`Guard.from_server` takes besides ``base_url`` and ``model``: the remote
    backend's options (:class:`~guardvl_sdk.backends.options.RemoteOptions`) and the guard's
    (:class:`GuardOptions`)."""


class Guard:
    """Checks requests (and responses, in context) and decides whether they may pass.

    Build one with :meth:`from_pretrained` (a model in this process), :meth:`from_server` (a
    model on inference servers) or around any :class:`~guardvl_sdk.backends.base.Backend`. A
    guard is safe to share between threads and asyncio tasks.

    Args:
        backend: What generates the guard's output.
        policy: The format the guard was trained on; default GuardReasoner-VL's.
        on_error: What happens when the guard cannot decide (backend failure, unreadable or
            truncated output): ``"block"`` (default, fail-closed), ``"allow"`` (fail-open), or
            ``"raise"`` (a :class:`~guardvl_sdk.errors.BackendError` or
            :class:`~guardvl_sdk.errors.GuardOutputError`). A harmful label always blocks.
        max_pixels: Images are downscaled to at most this many pixels before checking (768 x
            768, LLaMA-Factory's training budget). None hands them to the model's image
            processor at their own size, as the authors' evaluation did (docs/format.md).
        batch_size: Most prompts sent to the backend in one call by :meth:`check_batch`.
        audit: A sink that records every decision (see :mod:`guardvl_sdk.audit`). A failed
            write raises :class:`~guardvl_sdk.errors.AuditError` instead of returning the verdict.
        fetch_images: Fetch http(s) image URLs: ``True`` for an
            :class:`~guardvl_sdk.fetch.ImageFetcher` with its safe defaults, or your own
            fetcher. Off by default: URLs are refused.
        cache: A :class:`~guardvl_sdk.cache.VerdictCache` to reuse ``ok`` verdicts of identical
            checks (marked ``cached=True``). Off by default.
        max_text_chars: The text budget of one guard prompt, in characters and in UTF-8 bytes
            (a safe proxy for tokens: 6,000 emoji take 24,000 bytes). A longer request or
            response is checked in overlapping windows within it (harmful if any window is);
            never cut.
        window_overlap: Characters shared by consecutive windows.
        max_windows: Most windows one check may take; beyond it the check raises
            :class:`~guardvl_sdk.errors.InvalidInputError` (text too long).
        threshold: Decide the scored label (the request's, or the response's when a response
            is checked) by ``score >= threshold`` instead of the label the guard wrote, where
            the backend gives a score (see :attr:`~guardvl_sdk.verdict.Verdict.score`); ``raw``
            keeps what it wrote. Without a score (or with one that is not a finite probability)
            the written label stands, and a harmful written label always stands: the threshold
            can only tighten. None (default): the written labels decide.
        triage: ``(low, high)``: before reasoning, read P(harmful) of the request label right
            after an empty reasoning block, in one forward pass (backends with
            ``label_probability``, such as the local one); below ``low`` the request is
            unharmful, above ``high`` harmful, and only in between does the guard reason in
            full. Request checks only (a response check always reasons); a triaged verdict has
            empty reasoning. Off by default: the released guards were trained to reason first,
            so validate a band on your own data (the eval harness) before using it.
        conversation_memory: How many conversation parts (keyed by content hash, chained over
            the conversation so far) this guard remembers as judged allowed; a part remembered
            is not sent again when the same conversation grows (``check(messages=...)``), so
            turn N costs what is new in it. 0 turns it off (every check sends everything).
        unreadable: Content the guard cannot read (audio, files, image URLs it does not
            fetch): ``"raise"`` (default) an :class:`~guardvl_sdk.errors.InvalidInputError`;
            ``"block"``: check the rest, list it as ``not_inspected`` in the receipt and block;
            ``"allow"``: the same, but the guard's verdict on the rest decides.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        policy: Policy | None = None,
        on_error: OnError = "block",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        batch_size: int = 8,
        audit: AuditSink | None = None,
        fetch_images: bool | Callable[[str], bytes] = False,
        cache: VerdictCache | None = None,
        max_text_chars: int = 6000,
        window_overlap: int = 500,
        max_windows: int = 32,
        threshold: float | None = None,
        triage: tuple[float, float] | None = None,
        conversation_memory: int = 50_000,
        unreadable: Unreadable = "raise",
    ) -> None:
        if on_error not in ("block", "allow", "raise"):
            raise ConfigurationError(
                f"on_error must be 'block', 'allow' or 'raise', not {on_error!r}"
            )
        if batch_size < 1:
            raise ConfigurationError("batch_size must be at least 1")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ConfigurationError("threshold must be between 0 and 1")
        if triage is not None and not 0.0 <= triage[0] <= triage[1] <= 1.0:
            raise ConfigurationError("triage must be (low, high) with 0 <= low <= high <= 1")
        if unreadable not in ("raise", "block", "allow"):
            raise ConfigurationError(
                f"unreadable must be 'raise', 'block' or 'allow', not {unreadable!r}"
            )
        if conversation_memory < 0:
            raise ConfigurationError("conversation_memory must be 0 (off) or more")
        if max_pixels is not None and max_pixels < 28 * 28:
            raise ConfigurationError("max_pixels must be at least 784 (28 x 28)")
        if not 0 <= window_overlap < max_text_chars or max_windows < 1:
            raise ConfigurationError(
                "need 0 <= window_overlap < max_text_chars and max_windows >= 1"
            )
        self.backend = backend
        self.policy = policy or GUARDREASONER_VL
        self.on_error: OnError = on_error
        self.max_pixels = max_pixels
        self.batch_size = batch_size
        self.audit = audit
        self._fetch = ImageFetcher() if fetch_images is True else (fetch_images or None)
        self.cache = cache
        self.max_text_chars = max_text_chars
        self.window_overlap = window_overlap
        self.max_windows = max_windows
        self.threshold = threshold
        if triage is not None and self.policy.categories:
            raise ConfigurationError("triage names no categories: use it without categories")
        self.triage = triage
        self.unreadable: Unreadable = unreadable
        self.memory = ConversationMemory(conversation_memory) if conversation_memory else None

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path = DEFAULT_MODEL,
        *,
        quantization: Literal["auto", "4bit", "8bit"] | None = "auto",
        device: str | None = None,
        dtype: str | Any | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        max_new_tokens: int = 4096,
        max_time: float | None = DEFAULT_MAX_TIME,
        timeout: float | None = DEFAULT_TIMEOUT,
        adapter: str | Path | None = None,
        policy: Policy | None = None,
        on_error: OnError = "block",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        batch_size: int = 8,
        audit: AuditSink | None = None,
        cache: VerdictCache | None = None,
        threshold: float | None = None,
        batch_window_ms: float | None = 5.0,
        max_batch_size: int = 16,
        **model_kwargs: Any,
    ) -> Guard:
        """Load a guard model into this process (transformers).

        Args:
            model: A Hugging Face model id, a local directory with safetensors weights, or
                ``"demo"``: the offline demo guard (a tiny model trained on synthetic data, a
                demo and not a safety model), trained on first use (minutes on a CPU, needs
                ``guardvl-sdk[train]``) and cached (see ``guardvl_sdk.training.demo``). A
                directory named ``demo`` is ``"./demo"``.
            quantization: ``"auto"`` (4-bit nf4 with bfloat16 compute on CUDA, none on CPU),
                ``"4bit"``, ``"8bit"`` or None.
            device: Default CUDA when available, else CPU.
            dtype: Default bfloat16 on CUDA, float32 on CPU.
            revision: Branch, tag or commit of the model repository.
            trust_remote_code: Off unless you ask.
            max_new_tokens: Generation bound; an output that hits it is ``truncated``. 4096, as
                in the authors' decoding; ``max_time`` bounds a runaway generation.
            max_time: Seconds one generation may take; an output cut by it is ``truncated``
                (so the check fails closed). None: no limit.
            timeout: The check deadline: seconds a check waits for the model, waiting behind
                other callers included; past it the check fails closed (or raises
                :class:`~guardvl_sdk.errors.BackendTimeoutError` under ``on_error="raise"``),
                and the other callers are served as the model frees up. None: no deadline.
            adapter: A LoRA adapter (directory or hub id) trained on ``model`` with
                ``guardvl_sdk.training``, applied on top of it.
            policy: See :class:`Guard`. Default: the policy saved with the adapter or the model
                (``guardvl_policy.json``), else GuardReasoner-VL's.
            on_error, max_pixels, batch_size, audit, cache, threshold: See :class:`Guard`.
            batch_window_ms: Concurrent checks arriving within this many milliseconds (or
                while the model is busy) are generated as one batch; None turns dynamic
                batching off. See :class:`~guardvl_sdk.backends.local.LocalBackend`.
            max_batch_size: Most prompts in one dynamic batch.
            **model_kwargs: Any other option of :class:`Guard` (``fetch_images``, ``triage``,
                ``max_text_chars``, ``window_overlap``, ``max_windows``...) goes to the guard;
                the rest to the model's ``from_pretrained``.
        """
        from guardvl_sdk.backends.local import LocalBackend

        if model == DEMO_MODEL:
            from guardvl_sdk.training.demo import demo_guard_path

            model = demo_guard_path()
        options = _take(model_kwargs, GuardOptions.__optional_keys__)
        backend = LocalBackend.load(
            model,
            quantization=quantization,
            device=device,
            dtype=dtype,
            revision=revision,
            trust_remote_code=trust_remote_code,
            max_new_tokens=max_new_tokens,
            max_time=max_time,
            timeout=timeout,
            adapter=adapter,
            batch_window_ms=batch_window_ms,
            max_batch_size=max_batch_size,
            **model_kwargs,
        )
        if policy is None and adapter is not None:
            policy = Policy.from_pretrained(adapter)
        if policy is None:
            policy = Policy.from_pretrained(model, revision=revision)
        return cls(
            backend,
            policy=policy,
            on_error=on_error,
            max_pixels=max_pixels,
            batch_size=batch_size,
            audit=audit,
            cache=cache,
            threshold=threshold,
            **options,
        )

    @classmethod
    def from_server(
        cls, base_url: str | Sequence[str], *, model: str, **options: Unpack[ServerOptions]
    ) -> Guard:
        """Use a guard model served by an inference engine (vLLM, SGLang, TGI, transformers serve).

        Args:
            base_url: The OpenAI API base, e.g. ``http://gpu-1:8000/v1``, or a list of replicas:
                requests go round-robin to those that are up and fail over when one is down.
            model: The served model name.
            **options: Any option of :class:`~guardvl_sdk.backends.remote.RemoteBackend` (how
                the servers are asked; each documented there) and of :class:`Guard`. The
                backend's: ``api_key`` (sent as a bearer token), ``timeout`` (seconds per
                answer, default 30), ``max_concurrency`` (requests in flight, default 16),
                ``max_retries`` (default 2: after a connection error, a timeout, HTTP 408, 409,
                429 or 5xx, with exponential backoff and jitter, honouring ``Retry-After``),
                ``max_new_tokens`` (default 4096, as in the authors' decoding; an output that
                hits it is ``truncated``), ``logprobs`` (to fill ``Verdict.score``; default on),
                ``stop`` (send ``</result>`` as a stop string; default on, found refused once
                per server), ``extra_body``, ``headers``, ``cooldown``, ``image_format``,
                ``max_response_bytes``. The guard's: ``policy``, ``on_error``, ``max_pixels``,
                ``audit``, ``cache``, ``threshold``, ``fetch_images``, ``triage``,
                ``max_text_chars``, ``window_overlap``, ``max_windows``, ``conversation_memory``,
                ``unreadable``, and ``batch_size`` (prompts per backend call in
                :meth:`check_batch`; default ``max_concurrency``, so a batch keeps that many
                requests in flight).

        Raises:
            ConfigurationError: An option neither has, or a bad value.

        See :class:`~guardvl_sdk.backends.remote.RemoteBackend` for failures and retries.
        """
        from guardvl_sdk.backends.remote import RemoteBackend

        given: dict[str, Any] = dict(options)
        remote = _take(given, RemoteOptions.__optional_keys__)
        guard = _take(given, GuardOptions.__optional_keys__)
        if given:
            names = RemoteOptions.__optional_keys__ | GuardOptions.__optional_keys__
            raise ConfigurationError(
                f"Guard.from_server got unknown option(s) {sorted(given)}; its options: "
                f"{', '.join(sorted(names))}"
            )
        backend = RemoteBackend(base_url, model=model, **remote)
        batch_size = guard.pop("batch_size", None) or backend.max_concurrency
        return cls(backend, batch_size=batch_size, **guard)

    @classmethod
    def from_config(cls, config: str | Path | GuardConfig) -> Guard:
        """Build the guard a configuration file describes (backend, policy, every option).

        Args:
            config: A configuration file, or a :class:`~guardvl_sdk.config.GuardConfig`
                already loaded. See :mod:`guardvl_sdk.config` for the schema.

        Raises:
            ConfigurationError: The file is invalid; the message names the file and the key.
        """
        from guardvl_sdk.config import GuardConfig, load_config

        loaded = config if isinstance(config, GuardConfig) else load_config(config)
        return cls(**loaded.guard_arguments())

    @property
    def model_id(self) -> str:
        """Id of the guard model behind the backend."""
        return str(getattr(self.backend, "model_id", type(self.backend).__name__))

    def __repr__(self) -> str:
        return (
            f"Guard(model={self.model_id!r}, policy={self.policy.name!r}, "
            f"on_error={self.on_error!r})"
        )

    # -- checking ---------------------------------------------------------------------------

    def check(
        self,
        text: str | None = None,
        image: ImageInput | Sequence[ImageInput] | None = None,
        *,
        response: str | Message | None = None,
        messages: Sequence[Message] | None = None,
    ) -> Verdict:
        """Check a request, or with ``response`` the assistant's answer in its context.

        Args:
            text: The user's request.
            image: One image or a list (path, bytes, PIL image, numpy array or data: URL).
            response: The assistant's answer; when given the guard judges it (and the request).
                A str, or an assistant message (OpenAI format) whose tool calls are judged as
                part of the answer.
            messages: A whole conversation instead of ``text`` and ``image``: OpenAI-format
                chat messages, every role and part of which is judged (see
                :mod:`guardvl_sdk.conversation` for the layout). Parts already judged allowed
                earlier in the same conversation are not sent again (``conversation_memory``).

        Raises:
            InvalidInputError: The input cannot be checked (nothing to check, unreadable image,
                a message field or part the guard cannot read).
            BackendError, GuardOutputError: Only under ``on_error="raise"``.
        """
        return self.check_batch([CheckInput(text, image, response, messages)])[0]

    @overload
    def check_batch(
        self, items: Iterable[BatchItem], *, return_exceptions: Literal[False] = False
    ) -> list[Verdict]: ...

    @overload
    def check_batch(
        self, items: Iterable[BatchItem], *, return_exceptions: bool
    ) -> list[Verdict | GuardVLError]: ...

    def check_batch(
        self, items: Iterable[BatchItem], *, return_exceptions: bool = False
    ) -> list[Verdict] | list[Verdict | GuardVLError]:
        """Check several inputs, batched on the backend; verdicts come back in order.

        Each item is a :class:`CheckInput`, a mapping with the keys ``text``, ``image``,
        ``response`` and ``messages``, or a plain request string.

        Args:
            items: The checks.
            return_exceptions: Put an item's error (an unreadable input; under
                ``on_error="raise"`` a failed check) in its place in the list instead of
                raising it, so the other items are decided, each once (and audited once).
        """
        checks = self._prepare_all(items, return_exceptions)
        pending = [w.prompt for c in _ready(checks) if c.verdict is None for w in c.windows]
        triaged = steps.triage(self.backend, self.policy, pending, self.triage, self.batch_size)
        rest = [p for i, p in enumerate(pending) if i not in triaged]
        outcomes: list[Outcome] = []
        for start in range(0, len(rest), self.batch_size):
            chunk = rest[start : start + self.batch_size]
            began = time.perf_counter()
            results = steps.generate(self.backend.generate, chunk)
            outcomes += [Outcome(r, steps.ms_since(began)) for r in results]
        return self._finish_all(
            checks, steps.merge(triaged, outcomes, len(pending)), return_exceptions
        )

    async def acheck(
        self,
        text: str | None = None,
        image: ImageInput | Sequence[ImageInput] | None = None,
        *,
        response: str | Message | None = None,
        messages: Sequence[Message] | None = None,
    ) -> Verdict:
        """Like :meth:`check`, without blocking the event loop."""
        return (await self.acheck_batch([CheckInput(text, image, response, messages)]))[0]

    @overload
    async def acheck_batch(
        self, items: Iterable[BatchItem], *, return_exceptions: Literal[False] = False
    ) -> list[Verdict]: ...

    @overload
    async def acheck_batch(
        self, items: Iterable[BatchItem], *, return_exceptions: bool
    ) -> list[Verdict | GuardVLError]: ...

    async def acheck_batch(
        self, items: Iterable[BatchItem], *, return_exceptions: bool = False
    ) -> list[Verdict] | list[Verdict | GuardVLError]:
        """Like :meth:`check_batch`, without blocking the event loop."""
        backend = self.backend
        if not isinstance(backend, AsyncBackend):
            return await asyncio.to_thread(
                self.check_batch, list(items), return_exceptions=return_exceptions
            )
        checks = await asyncio.to_thread(self._prepare_all, list(items), return_exceptions)
        pending = [w.prompt for c in _ready(checks) if c.verdict is None for w in c.windows]
        triaged: dict[int, Outcome] = {}
        if self.triage:
            args = (backend, self.policy, pending, self.triage, self.batch_size)
            triaged = await asyncio.to_thread(steps.triage, *args)
        rest = [p for i, p in enumerate(pending) if i not in triaged]

        async def run(chunk: list[Prompt]) -> list[Outcome]:
            began = time.perf_counter()
            results = await steps.agenerate(backend.agenerate, chunk)
            return [Outcome(r, steps.ms_since(began)) for r in results]

        step = self.batch_size
        chunks = [rest[i : i + step] for i in range(0, len(rest), step)]
        results = await asyncio.gather(*(run(chunk) for chunk in chunks))
        outcomes = [outcome for chunk in results for outcome in chunk]
        return self._finish_all(
            checks, steps.merge(triaged, outcomes, len(pending)), return_exceptions
        )

    def session(
        self,
        *,
        on_block: Literal["raise", "return"] = "raise",
        on_verdict: Callable[[GuardEvent], Any] | None = None,
        name: str = "session",
    ) -> GuardSession:
        """Explicit pre-prompt and post-response hooks, for call sites you own.

        ``before(text, image)`` checks the request; ``after(answer)`` checks the answer in the
        context of that request. See :class:`~guardvl_sdk.hooks.GuardSession`.
        """
        return GuardSession(self, on_block=on_block, on_verdict=on_verdict, name=name)

    def as_runnable(
        self, *, stage: Literal["input", "output"] = "input", **options: Any
    ) -> GuardRunnable:
        """This guard as a LangChain ``Runnable`` step (extra ``guardvl-sdk[langchain]``).

        ``guard.as_runnable() | prompt | model | guard.as_runnable(stage="output")``; options as
        :class:`~guardvl_sdk.integrations.langchain.GuardRunnable`.
        """
        from guardvl_sdk.integrations.langchain import GuardRunnable

        return GuardRunnable(self, stage=stage, **options)

    # -- the one-way flow: inputs -> prompt -> generation -> parsed -> verdict -> decision -----

    def _prepare_all(
        self, items: Iterable[BatchItem], return_exceptions: bool = False
    ) -> list[Check | InvalidInputError]:
        items = list(items)
        checks: list[Check | InvalidInputError] = []
        for index, item in enumerate(items):
            try:
                checks.append(self._prepare(steps.as_check_input(item, index)))
            except InvalidInputError as exc:
                self._record_refusal(item, exc)  # a refusal is a decision: it is recorded
                if return_exceptions:
                    checks.append(exc)
                    continue
                if len(items) == 1:
                    raise
                raise InvalidInputError(f"batch item {index}: {exc}") from exc
        return checks

    def _record_refusal(self, item: object, error: InvalidInputError) -> None:
        if self.audit is None:
            return
        fields = item if isinstance(item, Mapping) else {"text": item}
        if isinstance(item, CheckInput):
            fields = {"text": item.text, "response": item.response}
        text, response = fields.get("text"), fields.get("response")
        self.audit.write(
            AuditRecord.refusal(
                redact(str(error)),
                text=without_lone_surrogates(text) if isinstance(text, str) else "",
                response=without_lone_surrogates(response) if isinstance(response, str) else None,
                model=self.model_id,
                policy=self.policy.name,
                include_content=self.audit.include_content,
            )
        )

    def _prepare(self, item: CheckInput) -> Check:
        began = time.perf_counter()
        content = steps.read_item(
            item,
            max_pixels=self.max_pixels,
            fetch=self._fetch,
            unreadable=self.unreadable,
            memory=self.memory,
        )
        key = None
        if self.cache is not None:
            # Images are keyed by their encoding (and the pixel budget), known before decoding:
            # a hit decodes, resizes and hashes nothing, and recalls the pixel hashes of its miss.
            key = VerdictCache.key(
                model=self.model_id,
                policy=f"{self.policy.model_dump_json()}\x00threshold={self.threshold}"
                f"\x00max_pixels={self.max_pixels}",
                text=content.text,
                response=content.response,
                images=content.image_keys,
            )
            hit = self.cache.lookup(key)
            if hit is not None:
                cached, seen = hit
                content = content.recall(seen)
                cached = cached.model_copy(update={"latency_ms": steps.ms_since(began)})
                return Check(content, [], key, verdict=self._receipted(content, cached))
        content = content.load()
        pairs = steps.text_windows(
            content.text,
            content.response,
            max_text_chars=self.max_text_chars,
            overlap=self.window_overlap,
            max_windows=self.max_windows,
        )
        windows = [
            Window(self.policy.render(request, content.images, answer), answer is not None)
            for request, answer in pairs
        ]
        return Check(content, windows, key)

    def _receipted(self, content: Inspection, verdict: Verdict) -> Verdict:
        """The verdict with its receipt, blocked when content went uninspected (unless allowed);
        an allowed conversation's parts are remembered as judged."""
        update: dict[str, Any] = {"inspected": content.receipt}
        if content.uninspected and self.unreadable == "block":
            listed = "; ".join(content.uninspected)
            update |= {"blocked": True, "error": f"not inspected: {listed}"}
        verdict = verdict.model_copy(update=update)
        if self.memory is not None and verdict.allowed and verdict.status is Status.OK:
            self.memory.add(content.keys)
        return verdict

    def _finish_all(
        self,
        checks: list[Check | InvalidInputError],
        outcomes: list[Outcome],
        return_exceptions: bool = False,
    ) -> list[Verdict | GuardVLError]:
        verdicts: list[Verdict | GuardVLError] = []
        position = 0
        for check in checks:
            if isinstance(check, InvalidInputError):  # refused (and recorded) when prepared
                verdicts.append(check)
                continue
            if check.verdict is not None:  # a cache hit
                self._record(check, check.verdict)
                verdicts.append(check.verdict)
                continue
            mine = outcomes[position : position + len(check.windows)]
            position += len(check.windows)
            try:
                verdicts.append(self._finish(check, mine))
            except GuardVLError as exc:  # on_error="raise"
                if not return_exceptions:
                    raise
                verdicts.append(exc)
        return verdicts

    def _finish(self, check: Check, outcomes: list[Outcome]) -> Verdict:
        model_id, threshold, on_error = self.model_id, self.threshold, self.on_error
        windows = [
            steps.window_verdict(
                window,
                outcome,
                policy=self.policy,
                model_id=model_id,
                threshold=threshold,
                on_error=on_error,
            )
            for window, outcome in zip(check.windows, outcomes, strict=True)
        ]
        combined = combine_windows(windows)
        blocked = steps.decide(combined.status, combined.harmful is True, self.on_error)
        verdict = combined.model_copy(update={"blocked": blocked})
        if self.cache is not None and check.key is not None:
            # the guard's own verdict on this content, with what it saw of the images
            self.cache.put(check.key, verdict, images=check.content.seen)
        verdict = self._receipted(check.content, verdict)
        self._record(check, verdict)
        if verdict.status is not Status.OK and self.on_error == "raise":
            raise steps.failure(verdict, outcomes)
        return verdict

    def _record(self, check: Check, verdict: Verdict) -> None:
        record_check(verdict)  # an OpenTelemetry span, when a tracer provider is set
        if self.audit is None:
            return
        self.audit.write(
            AuditRecord.from_check(
                verdict,
                text=check.content.text,
                response=check.content.response,
                image_sha256=[image.sha256 for image in check.content.seen],
                include_content=self.audit.include_content,
            )
        )


def _ready(checks: list[Check | InvalidInputError]) -> list[Check]:
    """The checks that were prepared (not refused)."""
    return [check for check in checks if isinstance(check, Check)]


def _take(options: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
    """Take the options named ``names`` out of ``options`` (what a factory passes on to one
    of the parts it builds)."""
    return {name: options.pop(name) for name in list(options) if name in names}
