"""Generation through any OpenAI-compatible chat server.

vllm serve, SGLang, TGI, llama.cpp server, Ollama and hosted APIs all take
POST {base_url}/chat/completions with chat messages; the server applies the model's
chat template. A GPU server batches whatever is in flight, so throughput comes from
keeping many requests open at once: `max_concurrency` workers, an asyncio.Semaphore
bounding requests in flight, one pooled httpx client sized to match.

Resilience, per chunk:
- 429, 5xx, timeouts and connection errors are retried with exponential backoff and
  full jitter (Retry-After honoured, capped at backoff_max_s). A waiting retry holds no
  worker: it rejoins the queue when its backoff ends, ahead of chunks not sent yet.
- A reply that does not parse is asked again with a different seed (the same seed
  would give a deterministic server the same bad reply). Every request counts as an
  attempt; after `max_attempts` the chunk becomes a GenerationFailure with its error.
- Other 4xx fail the chunk at once. 401/403/404 mean the server or model is wrong for
  every chunk, so the rest are recorded as failures instead of being sent.
- A 400 about response_format/json_schema turns structured output off for the rest of
  the run; replies are then repaired by prompts.parse_reply.

Each parsed reply goes to the DuckDB cache as soon as it arrives (a writer thread
commits what is queued, usually within tens of milliseconds), so a killed run loses at
most the replies of the last moment and a rerun sends only what is missing.

The API key is read from the environment at call time, lives only in the request
headers of the client, and is scrubbed from every error string that is logged or
returned.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import itertools
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from synth_assets.core.judge import (
    JUDGE_PROMPT_VERSION,
    build_judge_messages,
    judge_json_schema,
    parse_judge_reply,
)
from synth_assets.generation.base import (
    GeneratedPair,
    GenerationFailure,
    GenerationOutcome,
    GenerationRequest,
    JudgeOutcome,
    JudgeRequest,
)
from synth_assets.generation.cache import CacheEntry, GenerationCache, cache_key
from synth_assets.generation.prompts import (
    PROMPT_VERSION,
    ReplyParseError,
    build_messages,
    parse_reply,
    qa_json_schema,
)

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
# The configuration is wrong for every chunk: stop sending after the first.
FATAL_STATUSES = frozenset({401, 403, 404})
_SCHEMA_WORDS = ("response_format", "json_schema", "structured", "guided", "schema")


class _Retryable(Exception):
    """A failed attempt worth repeating; `delay` is the server's Retry-After, if any."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class _Fatal(Exception):
    """A failure that repeating will not fix (other 4xx)."""

    def __init__(self, message: str, stop_all: bool = False) -> None:
        super().__init__(message)
        self.stop_all = stop_all


# Queue priorities: retries first, then chunks not sent yet, then the stop signals.
_RETRY, _NEW, _STOP = 0, 1, 2


@dataclass(frozen=True)
class _Task:
    """What is asked of the model: writing a chunk's pairs, or judging one pair."""

    schema_name: str
    schema: dict[str, Any]
    parse: Callable[[str], Any]  # reply text -> result; raises ReplyParseError
    prompt_version: str
    sampling: dict[str, Any]


@dataclass
class _Chunk:
    """One request (a chunk to write pairs for, or a pair to judge) on its way through
    the queue, with its attempts so far."""

    item_id: str
    messages: list[dict[str, str]]
    key: str
    task: _Task
    attempts: int = 0
    error: str = "not sent"


@dataclass
class _Run:
    """Mutable state of one generate() call, shared by its workers (one event loop)."""

    total: int
    started: float
    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    done: int = 0
    pairs: int = 0
    failed: int = 0
    cache_write_errors: int = 0
    stop_reason: str | None = None
    last_progress: float = 0.0
    results: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, GenerationFailure] = field(default_factory=dict)


class OpenAIBackend:
    generator = "openai"
    prompt_version = PROMPT_VERSION

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        pairs_per_chunk: int = 5,
        temperature: float | None = 0.7,
        top_p: float | None = 0.95,
        max_tokens: int | None = 512,
        seed: int | None = 0,
        max_concurrency: int = 64,
        timeout_s: float = 120.0,
        max_attempts: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        use_json_schema: bool = True,
        cache: GenerationCache | None = None,
        log: Any = None,
        progress_every_s: float = 5.0,
    ) -> None:
        if max_concurrency < 1 or max_attempts < 1:
            raise ValueError("max_concurrency and max_attempts must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env  # the NAME of the variable; the key is never kept
        self.pairs_per_chunk = pairs_per_chunk
        self.sampling = {
            key: value
            for key, value in {
                "temperature": temperature, "top_p": top_p, "max_tokens": max_tokens, "seed": seed,
            }.items()
            if value is not None
        }
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.use_json_schema = use_json_schema  # turned off for good if the server refuses it
        self.cache = cache
        self.log = log
        self.progress_every_s = progress_every_s

    def __repr__(self) -> str:
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r})"

    def close(self) -> None:
        """Nothing held between runs: each generate() opens and closes its own client."""

    # -- public ---------------------------------------------------------------

    def generate(self, requests: list[GenerationRequest]) -> GenerationOutcome:
        started = time.perf_counter()
        api_key = os.environ.get(self.api_key_env) or None
        messages = {r.chunk_id: build_messages(r, self.pairs_per_chunk) for r in requests}
        keys = {cid: self._cache_key(m) for cid, m in messages.items()}
        cached = self.cache.get_many(list(keys.values())) if self.cache is not None else {}

        results: dict[str, list[dict[str, str]]] = {}
        todo: list[GenerationRequest] = []
        for request in requests:
            hit = cached.get(keys[request.chunk_id])
            try:
                if hit is None:
                    raise ReplyParseError("not cached")
                results[request.chunk_id] = parse_reply(hit.reply, self.pairs_per_chunk)
            except ReplyParseError:
                todo.append(request)  # a cached reply the current parser rejects is asked again
        cache_hits = len(requests) - len(todo)

        run = _Run(total=len(requests), started=started, done=cache_hits, last_progress=started)
        if todo:
            task = self._qa_task()
            chunks = [_Chunk(r.chunk_id, messages[r.chunk_id], keys[r.chunk_id], task) for r in todo]
            self._run_async(self._generate_all(chunks, api_key, run))

        outcome = GenerationOutcome()
        for request in requests:  # input order, whatever the completion order was
            pairs = results.get(request.chunk_id) or run.results.get(request.chunk_id)
            if pairs:
                outcome.pairs.extend(
                    GeneratedPair(
                        chunk_id=request.chunk_id,
                        question=p["question"],
                        answer=p["answer"],
                        question_type=p["question_type"],
                        evidence=p.get("evidence"),
                    )
                    for p in pairs
                )
            else:
                outcome.failures.append(
                    run.failures.get(request.chunk_id)
                    or GenerationFailure(request.chunk_id, 0, "no reply was recorded")
                )
        seconds = time.perf_counter() - started
        outcome.stats = {
            "chunks": len(requests),
            "requests": run.requests,
            "cache_hits": cache_hits,
            "retries": run.retries,
            "failures": len(outcome.failures),
            "pairs": len(outcome.pairs),
            "prompt_tokens": run.prompt_tokens,
            "completion_tokens": run.completion_tokens,
            "seconds": round(seconds, 3),
            "completion_tokens_per_second": round(run.completion_tokens / seconds, 1) if seconds else 0.0,
            "peak_in_flight": run.peak_in_flight,
            "max_concurrency": self.max_concurrency,
            "json_schema": int(self.use_json_schema),
            "cache_write_errors": run.cache_write_errors,
        }
        if run.cache_write_errors:
            self._warning(f"{run.cache_write_errors} replies could not be written to the "
                          f"generation cache {self.cache!r}; a rerun will ask for them again")
        self._info(
            f"generated {len(requests) - len(outcome.failures)}/{len(requests)} chunks "
            f"({cache_hits} from cache, {len(outcome.failures)} failed) in {seconds:.1f}s: "
            f"{run.requests} requests, {run.retries} retries, "
            f"{outcome.stats['completion_tokens_per_second']} completion tokens/s"
        )
        return outcome

    def judge(self, requests: list[JudgeRequest]) -> JudgeOutcome:
        """A 1-10 score and a reason for each pair, from the same server, with the same
        concurrency, retries and cache as generation (judge-v1 prompt, temperature 0)."""
        started = time.perf_counter()
        api_key = os.environ.get(self.api_key_env) or None
        task = self._judge_task()
        chunks = []
        for r in requests:
            messages = build_judge_messages(r.question, r.answer, r.chunk_text)
            key = cache_key(self.model, {**task.sampling, "task": "judge"}, messages)
            chunks.append(_Chunk(r.pair_id, messages, key, task))
        cached = self.cache.get_many([c.key for c in chunks]) if self.cache is not None else {}
        outcome = JudgeOutcome()
        todo = []
        for chunk in chunks:
            hit = cached.get(chunk.key)
            try:
                if hit is None:
                    raise ReplyParseError("not cached")
                outcome.scores[chunk.item_id] = task.parse(hit.reply)
            except ReplyParseError:
                todo.append(chunk)
        cache_hits = len(chunks) - len(todo)
        run = _Run(total=len(chunks), started=started, done=cache_hits, last_progress=started)
        if todo:
            self._run_async(self._generate_all(todo, api_key, run))
        outcome.scores.update(run.results)
        outcome.failures = {item_id: failure.error for item_id, failure in run.failures.items()}
        seconds = time.perf_counter() - started
        outcome.stats = {"judged": len(outcome.scores), "judge_failures": len(outcome.failures),
                         "judge_requests": run.requests, "judge_cache_hits": cache_hits,
                         "judge_retries": run.retries, "judge_seconds": round(seconds, 3)}
        self._info(f"judged {len(outcome.scores)}/{len(chunks)} pairs ({cache_hits} from cache, "
                   f"{len(outcome.failures)} failed) in {seconds:.1f}s")
        return outcome

    def _qa_task(self) -> _Task:
        n = self.pairs_per_chunk
        return _Task("qa_pairs", qa_json_schema(n), lambda reply: parse_reply(reply, n),
                     PROMPT_VERSION, self.sampling)

    def _judge_task(self) -> _Task:
        # A judge should be repeatable: greedy decoding, and a short reply.
        sampling = {**self.sampling, "temperature": 0.0, "max_tokens": 200}
        sampling.pop("top_p", None)
        return _Task("judge_score", judge_json_schema(), _parse_judge, JUDGE_PROMPT_VERSION, sampling)

    def cache_key_for(self, request: GenerationRequest) -> str:
        """The generation-cache key of one chunk's request."""
        return self._cache_key(build_messages(request, self.pairs_per_chunk))

    def _cache_key(self, messages: list[dict[str, str]]) -> str:
        # The sampling and the pair count define the reply; the schema switch does not
        # (either way the reply parsed), so a fallback run still hits the cache. A retry's
        # changed seed is not in the key either: the key names the request, not the try.
        return cache_key(self.model, {**self.sampling, "pairs_per_chunk": self.pairs_per_chunk}, messages)

    # -- the async run ----------------------------------------------------------

    @staticmethod
    def _run_async(coroutine: Any) -> None:
        """asyncio.run, or in a worker thread when this thread already runs a loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(coroutine)
            return
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="openai-generate") as pool:
            pool.submit(asyncio.run, coroutine).result()

    async def _generate_all(self, todo: list[_Chunk], api_key: str | None, run: _Run) -> None:
        """max_concurrency workers take chunks from a priority queue, one request each.

        A chunk to retry goes back on the queue (after its backoff, via call_later)
        ahead of the chunks not sent yet: its attempts happen while the server is busy
        with the rest, not in a tail of retries at the end of the run, and a worker
        never sleeps while there is work."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        slots = asyncio.Semaphore(self.max_concurrency)  # the bound on requests in flight
        workers = min(self.max_concurrency, len(todo))
        order = itertools.count()  # ties in the queue break by order, never by _Chunk
        queue: asyncio.PriorityQueue[tuple[int, int, _Chunk | None]] = asyncio.PriorityQueue()
        for chunk in todo:
            queue.put_nowait((_NEW, next(order), chunk))
        remaining = len(todo)
        loop = asyncio.get_running_loop()
        # Built once and shared: each client would otherwise load the CA bundle (~40 ms).
        ssl_context = httpx.create_ssl_context()
        writer = _CacheWriter(self.cache, run) if self.cache is not None else None

        async def worker() -> None:
            nonlocal remaining
            # One client holding one keep-alive connection per worker (max_concurrency
            # connections in all), not one pool shared by every worker: under bursts
            # (fast 500s, retries) requests waited seconds in the shared httpcore 1.0.9
            # pool while most of its connections sat idle; its assignment pass can give
            # one idle connection to every queued request at once. Measured on the
            # benchmark's fault run: efficiency 0.6-0.9 shared, 0.9 per worker.
            async with httpx.AsyncClient(
                base_url=self.base_url, headers=headers, timeout=httpx.Timeout(self.timeout_s),
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                verify=ssl_context,
            ) as client:
                while True:
                    _, _, chunk = await queue.get()
                    if chunk is None:
                        return
                    delay = await self._attempt(client, slots, chunk, api_key, run, writer)
                    if delay is not None:
                        run.retries += 1
                        loop.call_later(delay, queue.put_nowait, (_RETRY, next(order), chunk))
                        continue
                    remaining -= 1
                    run.done += 1
                    self._progress(run)
                    if remaining == 0:  # every chunk settled: release the workers
                        for _ in range(workers):
                            queue.put_nowait((_STOP, next(order), None))

        try:
            await asyncio.gather(*(worker() for _ in range(workers)))
        finally:
            if writer is not None:
                await writer.close()

    async def _attempt(
        self,
        client: httpx.AsyncClient,
        slots: asyncio.Semaphore,
        chunk: "_Chunk",
        api_key: str | None,
        run: _Run,
        writer: "_CacheWriter | None",
    ) -> float | None:
        """One request for a chunk. Returns the delay before the next attempt, or None
        when the chunk is settled (pairs or failure recorded). Never raises for one
        chunk's trouble: it cannot fail the others."""
        chunk_id = chunk.item_id
        if run.stop_reason is not None:
            run.failures[chunk_id] = GenerationFailure(chunk_id, chunk.attempts, run.stop_reason)
            run.failed += 1
            return None
        chunk.attempts += 1
        delay: float | None = None
        try:
            async with slots:
                reply, usage = await self._post(client, chunk, run)
            result = chunk.task.parse(reply)
        except _Retryable as failure:
            chunk.error = _scrub(str(failure), api_key)
            delay = self._backoff(chunk.attempts, failure.delay)
        except ReplyParseError as failure:
            chunk.error = _scrub(f"unparseable reply: {failure.reason}", api_key)
            delay = 0.0  # asked again at once, with another seed
        except _Fatal as failure:
            chunk.error = _scrub(str(failure), api_key)
            if failure.stop_all and run.stop_reason is None:
                run.stop_reason = f"not sent: an earlier request failed with {chunk.error}"
                self._warning(f"stopping generation: {chunk.error}")
        except Exception as bug:  # a bug on one chunk is that chunk's failure, not the run's
            chunk.error = _scrub(f"{type(bug).__name__}: {bug}", api_key)
        else:
            run.results[chunk_id] = result
            run.pairs += len(result) if isinstance(result, list) else 0
            if writer is not None:
                writer.put(CacheEntry(chunk.key, self.model, chunk.task.prompt_version, reply,
                                      usage.get("prompt_tokens"), usage.get("completion_tokens")))
            return None
        if delay is not None and chunk.attempts < self.max_attempts:
            return delay
        run.failures[chunk_id] = GenerationFailure(chunk_id, chunk.attempts, chunk.error)
        run.failed += 1
        return None

    async def _post(self, client: httpx.AsyncClient, chunk: _Chunk, run: _Run) -> tuple[str, dict[str, int]]:
        """One chat completion: the reply text and its usage, or _Retryable/_Fatal."""
        task, attempt = chunk.task, chunk.attempts
        while True:  # loops once more only when the server refuses response_format
            body: dict[str, Any] = {"model": self.model, "messages": chunk.messages, **task.sampling}
            if "seed" in body and attempt > 1:
                body["seed"] = body["seed"] + attempt - 1
            with_schema = self.use_json_schema
            if with_schema:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": task.schema_name, "strict": True, "schema": task.schema},
                }
            run.requests += 1
            run.in_flight += 1
            run.peak_in_flight = max(run.peak_in_flight, run.in_flight)
            try:
                response = await client.post("/chat/completions", json=body)
            except httpx.TimeoutException as error:
                raise _Retryable(f"timeout after {self.timeout_s}s ({type(error).__name__})") from None
            except httpx.TransportError as error:
                raise _Retryable(f"connection error: {type(error).__name__}: {error}") from None
            finally:
                run.in_flight -= 1

            status = response.status_code
            if status == 200:
                return self._reply(response, run)
            detail = response.text[:300]
            if status in RETRY_STATUSES:
                raise _Retryable(f"HTTP {status}: {detail}", _retry_after(response))
            if (with_schema and status in (400, 422)
                    and any(word in detail.lower() for word in _SCHEMA_WORDS)):
                if self.use_json_schema:  # another worker may have switched it off already
                    self.use_json_schema = False
                    self._warning(
                        f"the server refused response_format json_schema (HTTP {status}); "
                        "continuing without structured output, replies are repaired instead"
                    )
                run.retries += 1
                continue
            raise _Fatal(f"HTTP {status}: {detail}", stop_all=status in FATAL_STATUSES)

    @staticmethod
    def _reply(response: httpx.Response, run: _Run) -> tuple[str, dict[str, int]]:
        try:
            data = response.json()
            choice = data["choices"][0]
            content = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            # A 200 without a completion is a server hiccup, not the model's reply.
            raise _Retryable(f"HTTP 200 without a chat completion: {response.text[:200]}") from None
        usage = data.get("usage") or {}
        usage = {k: int(v) for k, v in usage.items()
                 if k in ("prompt_tokens", "completion_tokens") and isinstance(v, (int, float))}
        run.prompt_tokens += usage.get("prompt_tokens", 0)
        run.completion_tokens += usage.get("completion_tokens", 0)
        return content, usage

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter: uniform(0, min(max, base * 2^(attempt-1))); Retry-After wins."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.backoff_max_s)
        return random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1)))

    # -- logging ----------------------------------------------------------------

    def _progress(self, run: _Run) -> None:
        now = time.perf_counter()
        if now - run.last_progress < self.progress_every_s or run.done >= run.total:
            return
        run.last_progress = now
        elapsed = now - run.started
        self._info(
            f"generated {run.done}/{run.total} chunks, {run.pairs / elapsed:.1f} pairs/s, "
            f"{run.completion_tokens / elapsed:.0f} completion tokens/s, "
            f"{run.in_flight} in flight, {run.retries} retries, {run.failed} failed"
        )

    def _info(self, message: str) -> None:
        if self.log is not None:
            self.log.info(message)

    def _warning(self, message: str) -> None:
        if self.log is not None:
            self.log.warning(message)


class _CacheWriter:
    """Commits parsed replies from one background thread, each batch in one short
    connection: a DuckDB connect-and-commit takes tens of milliseconds, too slow for
    the event loop and for one commit per reply, yet a reply waits at most one batch."""

    def __init__(self, cache: GenerationCache, run: _Run) -> None:
        self.cache = cache
        self.run = run
        self._pending: list[CacheEntry] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="generation-cache-writer", daemon=True)
        self._thread.start()

    def put(self, entry: CacheEntry) -> None:
        with self._lock:
            self._pending.append(entry)
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                batch, self._pending = self._pending, []
            if batch:
                try:
                    self.cache.put_many(batch)
                except Exception:  # the cache saves work; losing it must not lose the run
                    self.run.cache_write_errors += len(batch)
            with self._lock:
                if self._closing and not self._pending:
                    return

    async def close(self) -> None:
        with self._lock:
            self._closing = True
        self._wake.set()
        await asyncio.to_thread(self._thread.join)


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (a number or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def _parse_judge(reply: str) -> tuple[int, str]:
    try:
        return parse_judge_reply(reply)
    except ValueError as error:
        raise ReplyParseError(str(error)) from None


def _scrub(message: str, secret: str | None) -> str:
    """The message without the API key, whatever put it there."""
    return message.replace(secret, "***") if secret else message
