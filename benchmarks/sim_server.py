"""A simulated OpenAI-compatible chat server that behaves like one GPU.

Continuous batching is modelled as S slots (an asyncio.Semaphore): at most S sequences
run at once, each takes ttft + output_tokens * tpot seconds, and further requests wait
for a slot. Replies are schema-valid question-answer JSON built from the sentences of
the <document> block of the prompt, so the backend's parser sees realistic text.

Faults are injected by fraction (HTTP 500, 429, malformed text, truncated JSON, empty
replies, stalls past the client's timeout, dropped connections, messy-but-repairable
JSON). The choice is a hash of the request's messages and how many times this server
has seen them, so a run is reproducible and a retry of the same request can succeed.

Plain asyncio streams, no framework: a dropped connection is a real closed socket.
Binds to 127.0.0.1 only; the CLI server exits after --max-seconds, and idle
connections are closed after --idle-timeout.

    python benchmarks/sim_server.py --port 8011 --slots 32 --ttft 0.05 --tpot 0.002
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import httpx

QUESTION_TYPES = ("factual", "how", "why", "compare", "explain")
# Fault kinds in the order their fractions are stacked on [0, 1).
FAULTS = ("fail_500", "fail_429", "malformed", "truncated", "empty", "stall", "drop", "messy")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error"}


@dataclass
class SimConfig:
    slots: int = 32
    ttft: float = 0.05  # seconds to the first token
    tpot: float = 0.002  # seconds per output token
    output_tokens: int = 100
    model: str = "sim-model"
    api_key: str | None = None  # when set, requests need "Authorization: Bearer <key>"
    reject_response_format: bool = False  # answer 400 to response_format, like old servers
    fail_500: float = 0.0
    fail_429: float = 0.0
    malformed: float = 0.0  # prose, no JSON: unparseable
    truncated: float = 0.0  # JSON cut at 70%, finish_reason "length": last pair lost
    empty: float = 0.0
    stall: float = 0.0  # answer only after stall_s (past the client's timeout)
    drop: float = 0.0  # close the connection without answering
    messy: float = 0.0  # code fences and a trailing comma: repairable
    # Deterministic per-chunk faults for tests: a document containing the marker always
    # gets a malformed reply, or always an HTTP 400 ("prompt too long").
    malformed_marker: str | None = None
    bad_request_marker: str | None = None
    # Put the received Authorization header into error bodies, like a careless proxy:
    # the client must scrub it from what it logs.
    echo_auth_in_errors: bool = False
    stall_s: float = 30.0
    retry_after: float | None = None  # Retry-After header on 429
    fault_seed: int = 0
    idle_timeout_s: float = 60.0


class SimStats:
    """Counters of one server; read them with snapshot() from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0  # HTTP requests to /v1/chat/completions
            self.outcomes: Counter[str] = Counter()
            self.active = 0  # sequences holding a slot
            self.peak_active = 0
            self.in_flight = 0  # chat requests received and not yet answered
            self.peak_in_flight = 0
            self.sequences = 0
            self.total_sequence_s = 0.0  # nominal GPU time: sum of ttft + tokens * tpot
            self.total_slot_s = 0.0  # measured time slots were held
            self.documents: Counter[str] = Counter()  # sha256 of the <document> text
            # ... of the requests answered with a usable reply (ok, messy or truncated):
            # a count above 1 is a generation done twice.
            self.answered: Counter[str] = Counter()
            self.with_response_format = 0
            self.authorization_ok = 0
            # Wall clock (time.time()) of the first chat request and the last answer:
            # the span a pipeline kept this server, busy or idle.
            self.first_request_at: float | None = None
            self.last_answer_at: float | None = None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "outcomes": dict(self.outcomes),
                "active": self.active,
                "peak_active": self.peak_active,
                "in_flight": self.in_flight,
                "peak_in_flight": self.peak_in_flight,
                "sequences": self.sequences,
                "total_sequence_s": round(self.total_sequence_s, 4),
                "total_slot_s": round(self.total_slot_s, 4),
                "documents": dict(self.documents),
                "answered": dict(self.answered),
                "with_response_format": self.with_response_format,
                "authorization_ok": self.authorization_ok,
                "first_request_at": self.first_request_at,
                "last_answer_at": self.last_answer_at,
            }


def document_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def document_text(messages: list[dict[str, Any]]) -> str:
    """The text between <document> and </document> of the last user message."""
    user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    content = user.get("content") or ""
    if not isinstance(content, str):  # list-of-parts content
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    start, end = content.find("<document>"), content.rfind("</document>")
    if start == -1 or end == -1 or end < start:
        return content.strip()
    return content[start + len("<document>") : end].strip()


def _pairs_wanted(body: dict[str, Any], messages: list[dict[str, Any]]) -> int:
    try:
        schema = body["response_format"]["json_schema"]["schema"]
        return int(schema["properties"]["pairs"]["minItems"])
    except (KeyError, TypeError, ValueError):
        pass
    text = " ".join(str(m.get("content", "")) for m in messages)
    match = re.search(r"Write (\d+) question", text)
    return int(match.group(1)) if match else 3


def build_pairs(document: str, n_pairs: int) -> list[dict[str, str]]:
    """Pairs whose answers are sentences of the document."""
    sentences = [s.strip() for s in _SENTENCE_END.split(document) if len(s.strip()) >= 20]
    if not sentences:
        sentences = [line.strip() for line in document.splitlines() if line.strip()] or [
            "The document is empty."
        ]
    pairs = []
    for i in range(n_pairs):
        sentence = sentences[i % len(sentences)]
        topic = " ".join(sentence.split()[:3])  # short: an answer is more than its question
        pairs.append({
            # Not "what does the document say": the curate rules reject passage-dependent questions.
            "question": f"What is known about {topic} (point {i + 1})?",
            "answer": sentence,
            "question_type": QUESTION_TYPES[i % len(QUESTION_TYPES)],
        })
    return pairs


_JUDGE_PART = re.compile(r"<<<(SOURCE|QUESTION|ANSWER)\n(.*?)\n\1>>>", re.DOTALL)


def judge_reply(prompt: str) -> dict[str, Any] | None:
    """A judge's reply to a judge prompt (synth_assets.core.judge), None for other prompts:
    9 when the answer appears in the source, 2 when it does not."""
    parts = dict(_JUDGE_PART.findall(prompt))
    if "SOURCE" not in parts or "ANSWER" not in parts:
        return None
    normalise = lambda text: " ".join(text.lower().split())  # noqa: E731
    if normalise(parts["ANSWER"]) in normalise(parts["SOURCE"]):
        return {"score": 9, "reason": "The answer is stated in the source."}
    return {"score": 2, "reason": "The source does not support the answer."}


class SimServer:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.stats = SimStats()
        self.port: int | None = None
        self._seen: Counter[str] = Counter()  # how often each request content came in
        self._slots: asyncio.Semaphore | None = None
        self._server: asyncio.base_events.Server | None = None
        self._handlers: set[asyncio.Task] = set()
        self._stop: asyncio.Event | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._slots = asyncio.Semaphore(self.config.slots)
        self._stop = asyncio.Event()
        self._server = await asyncio.start_server(self._connection, host, port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def serve_until_stopped(self, max_seconds: float | None = None) -> None:
        assert self._stop is not None
        try:
            await asyncio.wait_for(self._stop.wait(), max_seconds)
        except asyncio.TimeoutError:
            pass
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    # -- HTTP -----------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._handlers.add(task)
        try:
            while True:  # keep-alive loop: ends on EOF, idle timeout, or a drop
                request = await asyncio.wait_for(_read_request(reader), self.config.idle_timeout_s)
                if request is None:
                    break
                if not await self._respond(*request, writer):
                    break
        except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError,
                asyncio.CancelledError):  # cancelled: the server is stopping
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _respond(self, method: str, path: str, headers: dict[str, str], body: bytes,
                       writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False closes the connection."""
        path = path.split("?", 1)[0]
        if method == "GET" and path == "/health":
            return await _send(writer, 200, {"status": "ok"})
        if method == "GET" and path == "/v1/models":
            return await _send(writer, 200, {"object": "list", "data": [
                {"id": self.config.model, "object": "model", "owned_by": "sim"}]})
        if method == "GET" and path == "/stats":
            return await _send(writer, 200, self.stats.snapshot())
        if method == "POST" and path == "/stats/reset":
            self.stats.reset()
            self._seen.clear()
            return await _send(writer, 200, {"reset": True})
        if method == "POST" and path == "/v1/chat/completions":
            return await self._chat(headers, body, writer)
        return await _send(writer, 404, {"error": {"message": f"no route {method} {path}"}})

    async def _chat(self, headers: dict[str, str], raw: bytes, writer: asyncio.StreamWriter) -> bool:
        config, stats = self.config, self.stats
        with stats._lock:
            stats.requests += 1
            if stats.first_request_at is None:
                stats.first_request_at = time.time()
            stats.in_flight += 1
            stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        try:
            if config.api_key is not None:
                if headers.get("authorization") != f"Bearer {config.api_key}":
                    message = "invalid api key"
                    if config.echo_auth_in_errors:
                        message += f": {headers.get('authorization')}"
                    return await self._error(writer, 401, message, "unauthorized")
                with stats._lock:
                    stats.authorization_ok += 1
            try:
                body = json.loads(raw)
                messages = body["messages"]
            except (ValueError, KeyError, TypeError):
                return await self._error(writer, 400, "body must be JSON with messages", "bad_request")
            if "response_format" in body:
                with stats._lock:
                    stats.with_response_format += 1
                if config.reject_response_format:
                    return await self._error(
                        writer, 400,
                        "response_format of type json_schema is not supported by this server",
                        "rejected_response_format")
            document = document_text(messages)
            with stats._lock:
                stats.documents[document_hash(document)] += 1
            if config.bad_request_marker and config.bad_request_marker in document:
                return await self._error(writer, 400, "prompt too long for the context window",
                                         "bad_request")
            fault = self._fault(messages)
            if config.malformed_marker and config.malformed_marker in document:
                fault = "malformed"
            if fault == "drop":
                with stats._lock:
                    stats.outcomes["drop"] += 1
                return False
            if fault == "fail_500":
                message = "simulated server error"
                if config.echo_auth_in_errors:
                    message += f" (request had Authorization: {headers.get('authorization')})"
                return await self._error(writer, 500, message, "fail_500")
            if fault == "fail_429":
                extra = {} if config.retry_after is None else {"Retry-After": str(config.retry_after)}
                return await self._error(writer, 429, "simulated rate limit", "fail_429", extra)
            if fault == "stall":
                with stats._lock:
                    stats.outcomes["stall"] += 1
                await asyncio.sleep(config.stall_s)  # the client has given up by now
                fault = None  # if anyone is still listening, the reply is a good one

            output_tokens = config.output_tokens
            if isinstance(body.get("max_tokens"), int):
                output_tokens = min(output_tokens, body["max_tokens"])
            await self._run_sequence(output_tokens)

            judged = judge_reply(document)
            if judged is not None:
                content = json.dumps(judged)
            else:
                content = json.dumps({"pairs": build_pairs(document, _pairs_wanted(body, messages))})
            finish = "stop"
            if fault == "malformed":
                content = "Sure! Here are some questions about the text, what it says and why it matters."
            elif fault == "truncated":
                content, finish = content[: int(len(content) * 0.7)], "length"
            elif fault == "empty":
                content = ""
            elif fault == "messy":
                content = "```json\n" + content[:-2] + ",]}\n```"  # trailing comma, fenced
            words = sum(len(str(m.get("content", "")).split()) for m in messages)
            prompt_tokens = round(words * 1.3)
            with stats._lock:
                stats.outcomes[fault or "ok"] += 1
                if fault in (None, "messy", "truncated"):
                    stats.answered[document_hash(document)] += 1
            return await _send(writer, 200, {
                "id": f"chatcmpl-sim-{stats.requests}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": config.model,
                "choices": [{"index": 0, "finish_reason": finish,
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": output_tokens,
                          "total_tokens": prompt_tokens + output_tokens},
            })
        finally:
            with stats._lock:
                stats.in_flight -= 1
                stats.last_answer_at = time.time()

    async def _run_sequence(self, output_tokens: int) -> None:
        """Hold one of the S slots for ttft + tokens * tpot: one sequence on the GPU."""
        assert self._slots is not None
        stats = self.stats
        seconds = self.config.ttft + output_tokens * self.config.tpot
        async with self._slots:
            with stats._lock:
                stats.active += 1
                stats.peak_active = max(stats.peak_active, stats.active)
            started = time.perf_counter()
            try:
                await asyncio.sleep(seconds)
            finally:
                with stats._lock:
                    stats.active -= 1
                    stats.sequences += 1
                    stats.total_sequence_s += seconds
                    stats.total_slot_s += time.perf_counter() - started

    def _fault(self, messages: list[dict[str, Any]]) -> str | None:
        """Deterministic fault for this request: hash of content and times seen."""
        content = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        seen = self._seen[content]
        self._seen[content] += 1
        digest = hashlib.sha256(f"{self.config.fault_seed}|{content}|{seen}".encode()).digest()
        draw = int.from_bytes(digest[:8], "big") / 2**64
        edge = 0.0
        for name in FAULTS:
            edge += getattr(self.config, name)
            if draw < edge:
                return name
        return None

    async def _error(self, writer: asyncio.StreamWriter, status: int, message: str, outcome: str,
                     extra: dict[str, str] | None = None) -> bool:
        with self.stats._lock:
            self.stats.outcomes[outcome] += 1
        return await _send(writer, status, {"error": {"message": message, "code": status}}, extra)


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    line = await reader.readline()
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    for _ in range(100):  # bounded header count
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return method, path, headers, body


async def _send(writer: asyncio.StreamWriter, status: int, payload: Any,
                extra: dict[str, str] | None = None) -> bool:
    body = json.dumps(payload).encode()
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            "Content-Type: application/json", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in (extra or {}).items()]
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
    except ConnectionError:
        return False
    return True


# -- helpers for tests and benchmarks ----------------------------------------------


def start_server_in_thread(
    config: SimConfig | None = None, *, port: int = 0, **overrides: Any
) -> tuple[str, SimStats, Callable[[], None]]:
    """Run a server on 127.0.0.1 (`port`, or an ephemeral one) in a daemon thread with its own loop.

    Returns (base_url ending in /v1, the live SimStats, stop function)."""
    server = SimServer(replace(config or SimConfig(), **overrides))
    ready = threading.Event()
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()

    def run() -> None:
        async def main() -> None:
            try:
                await server.start("127.0.0.1", port)
            except BaseException as error:
                failure.append(error)
                ready.set()
                return
            ready.set()
            await server.serve_until_stopped()

        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="sim-openai-server", daemon=True)
    thread.start()
    if not ready.wait(10) or failure:
        raise RuntimeError(f"simulated server did not start: {failure}")

    def stop() -> None:
        if thread.is_alive():
            loop.call_soon_threadsafe(server.request_stop)
            thread.join(10)

    return f"http://127.0.0.1:{server.port}/v1", server.stats, stop


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server_process(
    max_seconds: float = 900.0, **options: Any
) -> tuple[str, Callable[[], dict[str, Any]], Callable[[], None]]:
    """Run the server as a separate process (no shared GIL with the client, as in real
    use). Returns (base_url, a function fetching /stats, stop function)."""
    port = _free_port()
    command = [sys.executable, os.path.abspath(__file__), "--port", str(port),
               "--max-seconds", str(max_seconds)]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            command.append(flag)
        elif value is not None and value is not False:
            command += [flag, str(value)]
    process = subprocess.Popen(command)
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{root}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("simulated server process did not start")
        time.sleep(0.05)

    def stats() -> dict[str, Any]:
        return httpx.get(f"{root}/stats", timeout=10).json()

    def stop() -> None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    return f"{root}/v1", stats, stop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--max-seconds", type=float, default=1800.0,
                        help="exit after this long (a bounded server)")
    parser.add_argument("--api-key-env", default=None,
                        help="name of an environment variable holding the key to require")
    defaults = SimConfig()
    for field in fields(SimConfig):
        if field.name == "api_key":
            continue
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true")
        elif default is None:
            kind = str if field.name.endswith("marker") else float
            parser.add_argument(flag, type=kind, default=None)
        else:
            parser.add_argument(flag, type=type(default), default=default)
    args = parser.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in fields(SimConfig) if f.name != "api_key"}
    if args.api_key_env:
        values["api_key"] = os.environ[args.api_key_env]
    server = SimServer(SimConfig(**values))

    async def run() -> None:
        await server.start("127.0.0.1", args.port)
        print(f"simulated OpenAI server on http://127.0.0.1:{server.port}/v1 "
              f"({server.config.slots} slots)", flush=True)
        await server.serve_until_stopped(args.max_seconds)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
