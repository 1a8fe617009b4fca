"""Offline test helpers: a tiny Qwen2.5-VL built from nothing, a scripted backend, a fake server.

Nothing here downloads anything. :func:`build_tiny_model` writes a real (random, untrained)
Qwen2.5-VL checkpoint with a real processor to a directory in well under a second, so the same
``Guard.from_pretrained`` path users take can run in CI. Such a model emits noise; to test
*decisions*, use :class:`ScriptedBackend`, which returns generations you give it, or, through
``Guard.from_server``, :class:`FakeChatServer`, a loopback server that answers what you script.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from guardvl_sdk.backends.base import Generation, Prompt

__all__ = [
    "QWEN2_VL_CHAT_TEMPLATE",
    "FakeChatServer",
    "FakeReply",
    "ScriptedBackend",
    "build_tiny_model",
]

# The chat template Qwen2-VL and Qwen2.5-VL ship with (and GuardReasoner-VL inherits).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# A few merges so the format's tags are cheap to emit for a model trained on them.
_MERGE_WORDS = ("<think>", "</think>", "<result>", "</result>", "Request:", "Response:")


def _build_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 1024) -> Any:
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer

    vocab: dict[str, int] = {}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    merges: list[tuple[str, str]] = []
    for word in _MERGE_WORDS:
        current = word[0]
        for char in word[1:]:
            merged = current + char
            if merged not in vocab:
                merges.append((current, char))
                vocab[merged] = len(vocab)
            current = merged
    if corpus is not None:
        for pair in _learn_merges(corpus, vocab_size - len(vocab)):
            merged = pair[0] + pair[1]
            if merged not in vocab and pair[0] in vocab and pair[1] in vocab:
                merges.append(pair)
                vocab[merged] = len(vocab)
    # tokenizers wants (left, right) pairs; transformers' annotation says list[str].
    # eos is <|im_end|>, as in the Qwen2.5-VL-Instruct checkpoints GuardReasoner-VL starts from.
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>")  # type: ignore[arg-type]
    tokenizer.add_special_tokens({"additional_special_tokens": list(_SPECIAL_TOKENS[1:])})
    return tokenizer


def _learn_merges(corpus: Iterable[str], budget: int) -> list[tuple[str, str]]:
    """BPE merges learned from ``corpus`` with Qwen2's pre-tokenization, at most ``budget``."""
    import json

    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    if budget <= 0:
        return []
    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=len(alphabet) + budget, initial_alphabet=alphabet, show_progress=False
    )
    learner.train_from_iterator(corpus, trainer)
    learned = json.loads(learner.to_str())["model"]["merges"]
    return [(left, right) for left, right in learned]


def build_tiny_model(
    path: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    vision_depth: int = 2,
    min_pixels: int = 28 * 28,
    max_pixels: int = 56 * 56,
    initializer_range: float = 0.3,
    seed: int = 0,
    corpus: Iterable[str] | None = None,
    vocab_size: int = 1024,
) -> Path:
    """Write a tiny random Qwen2.5-VL checkpoint and processor to ``path``, offline.

    The result loads with ``AutoProcessor`` and ``AutoModelForImageTextToText`` like a released
    GuardReasoner-VL checkpoint (same classes, same chat template, same special tokens), so it
    exercises the real loading and generation code. Its weights are random: it emits noise.

    Args:
        path: Directory to write (created if missing).
        hidden_size: Text and vision hidden size; must be divisible by ``num_heads * 4``. At
            least 64 for 4-bit loading on CPU (bitsandbytes packs 64-value blocks).
        num_layers: Text decoder layers.
        num_heads: Attention heads (text and vision).
        num_kv_heads: Key/value heads of the text decoder.
        vision_depth: Vision transformer blocks.
        min_pixels: Image processor lower pixel bound.
        max_pixels: Image processor upper pixel bound (keeps image token counts tiny).
        initializer_range: Std of the random weights. Larger than a real model's 0.02 so the
            output depends on the input (a batch-vs-single test then means something).
        seed: Seed for the random weights.
        corpus: Texts to learn extra BPE merges from (Qwen2 pre-tokenization), so that text
            like them tokenizes into far fewer tokens than bytes. Without it the tokenizer is
            byte-level plus a few merges for the format's tags.
        vocab_size: Vocabulary size to learn merges up to, when ``corpus`` is given.

    Returns:
        The directory, as a ``Path``.
    """
    from guardvl_sdk.extras import require

    require("local", "building a tiny Qwen2.5-VL")
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    head_dim = hidden_size // num_heads
    if head_dim % 4 or hidden_size % num_heads:
        raise ValueError("hidden_size must be divisible by num_heads, with head_dim divisible by 4")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = _build_tokenizer(corpus, vocab_size)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in _SPECIAL_TOKENS}
    image_processor = Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )

    # mrope splits head_dim / 2 rotary frequencies over (time, height, width).
    half = head_dim // 2
    mrope_section = [half - 2 * (half // 4), half // 4, half // 4]
    vocab_size = -(-len(tokenizer) // 64) * 64
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": hidden_size,
            "intermediate_size": hidden_size * 2,
            "num_hidden_layers": num_layers,
            "num_attention_heads": num_heads,
            "num_key_value_heads": num_kv_heads,
            "max_position_embeddings": 32768,
            "initializer_range": initializer_range,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1_000_000.0,
                "mrope_section": mrope_section,
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": vision_depth,
            "hidden_size": hidden_size,
            "intermediate_size": hidden_size * 2,
            "num_heads": num_heads,
            "out_hidden_size": hidden_size,
            "fullatt_block_indexes": [vision_depth - 1],
            "initializer_range": initializer_range,
            "spatial_merge_size": image_processor.merge_size,
            "patch_size": image_processor.patch_size,
            "temporal_patch_size": image_processor.temporal_patch_size,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


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


@dataclass(frozen=True)
class FakeReply:
    """One scripted answer of a :class:`FakeChatServer`.

    Attributes:
        content: The assistant's text, sent as a chat completion.
        status: The HTTP status.
        finish_reason: ``"stop"`` or ``"length"`` (or anything a server may say).
        delay: Seconds to wait before answering (on top of the server's ``latency``).
        headers: Extra response headers, e.g. ``{"Retry-After": "1"}``.
        body: A raw response body to send instead of a chat completion (malformed JSON, an
            error document).
        logprobs: The ``choices[0].logprobs.content`` list to send, if any.
        drop: Close the connection without answering.
    """

    content: str = ""
    status: int = 200
    finish_reason: str = "stop"
    delay: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    logprobs: list[dict[str, Any]] | None = None
    drop: bool = False


FakeScript = (
    str | FakeReply | Sequence[str | FakeReply] | Callable[[dict[str, Any]], str | FakeReply]
)


class FakeChatServer:
    """An OpenAI-compatible chat completions server on loopback that answers what you script.

    It serves ``POST /v1/chat/completions`` (with ``stream: true``, as server-sent events: a chunk
    per word) from a thread per connection (keep-alive), until
    :meth:`close`, which also cuts open connections and wakes delayed answers, as a server that
    goes down would. Usable as a context manager::

        with FakeChatServer("<result>Request: harmful</result>", latency=0.05) as server:
            guard = Guard.from_server(server.url, model="fake")

    Args:
        script: A reply (a string is the assistant's text) for every request; a sequence of
            replies given in order, the last one repeating; or a callable that receives the
            request body and returns a reply.
        latency: Seconds every answer waits before it is sent.

    Attributes:
        url: The base URL to give ``Guard.from_server`` (``http://127.0.0.1:PORT/v1``).
        requests: The JSON body of every request received, in arrival order.
        headers: The HTTP headers of every request received, in the same order.
        max_in_flight: The most requests it was answering at the same time.
    """

    def __init__(self, script: FakeScript, *, latency: float = 0.0) -> None:
        self.latency = latency
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._script = script
        self._served = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = _HTTPServer(("127.0.0.1", 0), _FakeHandler)
        self._server.fake = self
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop listening and cut every open connection."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._server.cut_connections()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeChatServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _reply(self, body: dict[str, Any], headers: dict[str, str]) -> FakeReply:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            index = self._served
            self._served += 1
        script = self._script
        if callable(script):
            reply = script(body)
        elif isinstance(script, str | FakeReply):
            reply = script
        else:
            reply = script[min(index, len(script) - 1)]
        return FakeReply(content=reply) if isinstance(reply, str) else reply

    def _completion(self, body: dict[str, Any], reply: FakeReply) -> str:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": reply.content},
            "finish_reason": reply.finish_reason,
        }
        if reply.logprobs is not None:
            choice["logprobs"] = {"content": reply.logprobs}
        # Rough counts: a fake has no tokenizer.
        prompt_tokens = len(json.dumps(body.get("messages", []))) // 4
        completion_tokens = len(reply.content.split())
        completion = {
            "id": f"fake-{self._served}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return json.dumps(completion)

    def _events(self, body: dict[str, Any], reply: FakeReply) -> str:
        """The reply as a server-sent event stream: a chunk per word, then ``[DONE]``."""
        completion = json.loads(self._completion(body, reply))
        head = {k: completion[k] for k in ("id", "created", "model")}
        head["object"] = "chat.completion.chunk"
        words = reply.content.split(" ")
        deltas: list[dict[str, Any]] = [
            {"content": word if i == len(words) - 1 else word + " "} for i, word in enumerate(words)
        ]
        deltas[0]["role"] = "assistant"
        chunks = [{**head, "choices": [{"index": 0, "delta": d}]} for d in deltas]
        finish = {"index": 0, "delta": {}, "finish_reason": reply.finish_reason}
        chunks.append({**head, "choices": [finish]})
        return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 drops connections under concurrency
    fake: FakeChatServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        with self._connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)


class _FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm and delayed
        # ACKs hold the body back for tens of milliseconds.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/health", "/v1/models"):
            self._send(200, json.dumps({"status": "ok"}))
        else:
            self._send(404, json.dumps({"error": "not found"}))

    def do_POST(self) -> None:
        fake = self.server.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, json.dumps({"error": "not found"}))
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._send(400, json.dumps({"error": "request body is not JSON"}))
            return
        with fake._lock:
            fake._in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake._in_flight)
        try:
            reply = fake._reply(body, {k.lower(): v for k, v in self.headers.items()})
            if fake._closing.wait(fake.latency + reply.delay) or reply.drop:
                self.close_connection = True
                return
            if reply.body is None and reply.status == 200 and body.get("stream"):
                events = fake._events(body, reply)
                self._send(reply.status, events, reply.headers, content_type="text/event-stream")
                return
            payload = reply.body if reply.body is not None else fake._completion(body, reply)
            self._send(reply.status, payload, reply.headers)
        finally:
            with fake._lock:
                fake._in_flight -= 1

    def _send(
        self,
        status: int,
        payload: str,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        data = payload.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``FakeChatServer.requests`` instead."""
