"""An OpenAI-compatible server on loopback that answers what you script.

One module over 400 lines on purpose: the one fake of the OpenAI wire format (chat and Responses,
streamed or not), so every test speaks the same one.

It serves chat completions and the Responses API, each streamed too, with text, reasoning and
tool calls: what a VLM app's client meets, to test the guard around it offline.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeChatServer", "FakeReply", "FakeScript"]


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
        close: Answer, then close the connection a moment later without having said so (no
            ``Connection: close``), as uvicorn does after an application error: a client that
            sends its next request on the kept-alive connection at once gets it reset.
        tool_calls: Function calls the assistant makes, each ``{"name": ..., "arguments": ...}``
            (a chat completion's ``tool_calls``, a response's ``function_call`` items); streamed,
            their arguments come in pieces of a few characters.
        reasoning: The assistant's reasoning text (a chat message's ``reasoning_content``, a
            response's ``reasoning`` item with it as its summary).
        extra: Fields the answer carries besides the known ones, as a hostile or newer server
            may send them: in the chat message (streamed: in its first delta) and in the
            response's message item (streamed: in the events that carry the item).
    """

    content: str = ""
    status: int = 200
    finish_reason: str = "stop"
    delay: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    logprobs: list[dict[str, Any]] | None = None
    drop: bool = False
    close: bool = False
    tool_calls: Sequence[Mapping[str, str]] = ()
    reasoning: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


FakeScript = (
    str | FakeReply | Sequence[str | FakeReply] | Callable[[dict[str, Any]], str | FakeReply]
)


class FakeChatServer:
    """An OpenAI-compatible server on loopback that answers what you script.

    It serves ``POST /v1/chat/completions`` and ``POST /v1/responses`` (with ``stream: true``, as
    server-sent events: a chunk per word) from a thread per connection (keep-alive), until
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
        message: dict[str, Any] = {"role": "assistant", "content": reply.content, **reply.extra}
        if reply.reasoning is not None:
            message["reasoning_content"] = reply.reasoning
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function", "function": dict(call)}
                for i, call in enumerate(reply.tool_calls)
            ]
        choice: dict[str, Any] = {
            "index": 0,
            "message": message,
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
        deltas: list[dict[str, Any]] = []
        if reply.reasoning is not None:
            deltas += [{"reasoning_content": word} for word in _words(reply.reasoning)]
        deltas += [{"content": word} for word in _words(reply.content)]
        for i, call in enumerate(reply.tool_calls):
            first = {"index": i, "id": f"call_{i}", "type": "function"}
            first["function"] = {"name": call["name"], "arguments": ""}
            deltas.append({"tool_calls": [first]})
            deltas += [
                {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}
                for piece in _pieces(call["arguments"])
            ]
        deltas[0].update(role="assistant", **reply.extra)
        chunks = [{**head, "choices": [{"index": 0, "delta": d}]} for d in deltas]
        finish = {"index": 0, "delta": {}, "finish_reason": reply.finish_reason}
        chunks.append({**head, "choices": [finish]})
        return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"

    def _response(self, body: dict[str, Any], reply: FakeReply, status: str = "completed") -> str:
        """The reply as a Responses API ``Response``: reasoning, message, function calls."""
        output: list[dict[str, Any]] = []
        if reply.reasoning is not None:
            summary = [{"type": "summary_text", "text": reply.reasoning}]
            output.append({"type": "reasoning", "id": "rs_0", "summary": summary})
        if reply.content or not reply.tool_calls:
            text = {"type": "output_text", "text": reply.content, "annotations": []}
            output.append(
                {
                    "type": "message",
                    "id": "msg_0",
                    "role": "assistant",
                    "status": "completed",
                    "content": [text],
                    **reply.extra,
                }
            )
        for i, call in enumerate(reply.tool_calls):
            output.append(
                {
                    "type": "function_call",
                    "id": f"fc_{i}",
                    "call_id": f"call_{i}",
                    "name": call["name"],
                    "arguments": call["arguments"],
                    "status": "completed",
                }
            )
        response = {
            "id": f"resp_fake-{self._served}",
            "object": "response",
            "created_at": int(time.time()),
            "model": body.get("model", ""),
            "status": status,
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
        }
        return json.dumps(response)

    def _response_events(self, body: dict[str, Any], reply: FakeReply) -> str:
        """The reply as the Responses API's server-sent events, in the order OpenAI sends them."""
        response = json.loads(self._response(body, reply))
        events: list[dict[str, Any]] = []
        started = {**response, "status": "in_progress", "output": []}
        events.append({"type": "response.created", "response": started})
        for index, item in enumerate(response["output"]):
            where = {"item_id": item["id"], "output_index": index}
            if item["type"] == "reasoning":
                events.append(
                    {
                        "type": "response.output_item.added",
                        "output_index": index,
                        "item": {**item, "summary": []},
                    }
                )
                part = {"type": "summary_text", "text": ""}
                events.append(
                    {
                        "type": "response.reasoning_summary_part.added",
                        **where,
                        "summary_index": 0,
                        "part": part,
                    }
                )
                events += [
                    {
                        "type": "response.reasoning_summary_text.delta",
                        **where,
                        "summary_index": 0,
                        "delta": word,
                    }
                    for word in _words(item["summary"][0]["text"])
                ]
                events.append(
                    {
                        "type": "response.reasoning_summary_text.done",
                        **where,
                        "summary_index": 0,
                        "text": item["summary"][0]["text"],
                    }
                )
            elif item["type"] == "message":
                events.append(
                    {
                        "type": "response.output_item.added",
                        "output_index": index,
                        "item": {**item, "content": [], "status": "in_progress"},
                    }
                )
                empty = {"type": "output_text", "text": "", "annotations": []}
                at = {**where, "content_index": 0}
                events.append({"type": "response.content_part.added", **at, "part": empty})
                text = item["content"][0]["text"]
                events += [
                    {"type": "response.output_text.delta", **at, "delta": word, "logprobs": []}
                    for word in _words(text)
                ]
                events.append(
                    {"type": "response.output_text.done", **at, "text": text, "logprobs": []}
                )
                events.append(
                    {"type": "response.content_part.done", **at, "part": item["content"][0]}
                )
            else:
                events.append(
                    {
                        "type": "response.output_item.added",
                        "output_index": index,
                        "item": {**item, "arguments": "", "status": "in_progress"},
                    }
                )
                events += [
                    {"type": "response.function_call_arguments.delta", **where, "delta": piece}
                    for piece in _pieces(item["arguments"])
                ]
                events.append(
                    {
                        "type": "response.function_call_arguments.done",
                        **where,
                        "arguments": item["arguments"],
                    }
                )
            events.append(
                {"type": "response.output_item.done", "output_index": index, "item": item}
            )
        events.append({"type": "response.completed", "response": response})
        return "".join(
            f"event: {e['type']}\ndata: {json.dumps({**e, 'sequence_number': n})}\n\n"
            for n, e in enumerate(events)
        )


def _words(text: str) -> list[str]:
    """A text in streamed pieces: a word each, its following space with it."""
    words = text.split(" ")
    return [word if i == len(words) - 1 else word + " " for i, word in enumerate(words)]


def _pieces(text: str, size: int = 6) -> list[str]:
    """A tool call's arguments in the small pieces a server streams them in."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


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
        path = self.path.rstrip("/")
        if path not in ("/v1/chat/completions", "/v1/responses"):
            self._send(404, json.dumps({"error": "not found"}))
            return
        responses = path == "/v1/responses"
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
                stream = fake._response_events if responses else fake._events
                events = stream(body, reply)
                self._send(reply.status, events, reply.headers, content_type="text/event-stream")
                return
            answer = fake._response if responses else fake._completion
            payload = reply.body if reply.body is not None else answer(body, reply)
            self._send(reply.status, payload, reply.headers)
            if reply.close:
                # Long enough for the client's next request to arrive unread: closing then resets.
                fake._closing.wait(0.05)
                self.close_connection = True
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
