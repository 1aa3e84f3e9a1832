"""Generation through any OpenAI-compatible chat server.

vllm serve, SGLang, TGI, llama.cpp server, Ollama and hosted APIs all take
POST {base_url}/chat/completions with chat messages; the server applies the model's
chat template. A GPU server batches whatever is in flight, so throughput comes from
keeping many requests open at once: `max_concurrency` requests in flight per server,
each worker with a client of its own.

Resilience, per chunk:
- 429, 5xx, timeouts and connection errors are retried with exponential backoff and
  full jitter (Retry-After honoured, capped at backoff_max_s). A waiting retry holds no
  worker: it rejoins the queue when its backoff ends, ahead of chunks not sent yet.
- A reply that does not parse is asked again with a different seed (the same seed
  would give a deterministic server the same bad reply). Every request counts as an
  attempt (but a failover in a fleet, below); after `max_attempts` the chunk becomes a
  GenerationFailure with its error.
- Other 4xx fail the chunk at once. 401/403/404 mean the server or model is wrong for
  every chunk, so the rest are recorded as failures instead of being sent.
- A 400 about response_format/json_schema turns structured output off for the rest of
  the run; replies are then repaired by prompts.parse_reply.

The cache, parsing, retry accounting and stats are model_backend.py's, shared with
the vllm backend; this module is the send step. Each parsed reply goes to the cache as
soon as it arrives, so a killed run loses at most the replies of the last moment.

A fleet (`base_urls`, several servers serving the same model, e.g. vLLM replicas):
each request goes to the server with the fewest requests in flight among those below
`max_concurrency`, a bound per server that holds when others are out (a request waits
for a place rather than pile onto the survivors). A server is taken out on a
connection error (refused, reset, cut while answering) or a failed health check
(GET {base_url}/models every `health_interval_s`), never on a timeout: a slow server
is still computing, and resending its work elsewhere would do it twice and bring the
server back at the next health check, to be taken out again. A request cut off by
the server being taken out fails over at once to another server with the same seed,
without spending an attempt (once per server and chunk, so a flapping server cannot
keep a chunk going forever); nothing more goes to the server until the health check
sees it answer again. A reply is recorded once per chunk, so a chunk is generated
again only when a server computed it but did not return it (it died sending). While
every server is out, requests still go to all of them, with backoff, each one an
attempt, so the run ends with each chunk generated or failed. One URL (one server,
or a router in front of replicas) is used as before, without health checks.

Every reply's prompt and completion tokens come from the server's `usage`; a server
that leaves it out has them counted with `tokenizer_name`'s tokenizer (the one that sizes
the chunks: the model's own when it is local, else the offline MiniLM one), and the
outcome says how many replies were counted so and with which tokenizer.

The API key is read from the environment at call time, is kept only by the clients'
request headers and the run (never the backend), and is scrubbed from every error
string that is logged or returned.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import email.utils
import itertools
import os
import random
import time
from collections.abc import Sequence
from typing import Any

import httpx

from synth_assets.generation.cache import GenerationCache
from synth_assets.generation.model_backend import ModelBackend, Prompt, Reply, Run, judge_task, qa_task

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
# The configuration is wrong for every chunk: stop sending after the first.
FATAL_STATUSES = frozenset({401, 403, 404})
_SCHEMA_WORDS = ("response_format", "json_schema", "structured", "guided", "schema")
# A reply's counted_with until the tokenizer has counted it: the server sent no usage.
_NO_USAGE = "no usage from the server"


class _Retryable(Exception):
    """A failed attempt worth repeating; `delay` is the server's Retry-After, if any."""

    def __init__(self, message: str, delay: float | None = None, unreachable: bool = False) -> None:
        super().__init__(message)
        self.delay = delay
        self.unreachable = unreachable  # no answer at all: the server may be gone


class _Fatal(Exception):
    """A failure that repeating will not fix (other 4xx)."""

    def __init__(self, message: str, stop_all: bool = False) -> None:
        super().__init__(message)
        self.stop_all = stop_all


# Queue priorities: retries first, then chunks not sent yet, then the stop signals.
_RETRY, _NEW, _STOP = 0, 1, 2


class _Server:
    """One base URL of the fleet, during one call."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.in_flight = 0
        self.up = True
        self.down_at = 0.0  # loop time it was taken out: older health answers do not count


class _Fleet:
    def __init__(self, urls: Sequence[str], bound: int) -> None:
        self.servers = [_Server(url) for url in urls]
        self.bound = bound  # requests in flight per server
        self.changed = asyncio.Condition()  # a place freed, or a server out or back

    async def take(self) -> _Server:
        """A place on the server with the fewest requests in flight among those answering
        (all of them when none is: the attempts then decide, instead of waiting forever),
        once one of them is below its bound."""
        async with self.changed:
            while True:
                answering = [server for server in self.servers if server.up] or self.servers
                free = [server for server in answering if server.in_flight < self.bound]
                if free:
                    server = min(free, key=lambda server: server.in_flight)
                    server.in_flight += 1
                    return server
                await self.changed.wait()

    async def give_back(self, server: _Server) -> None:
        async with self.changed:
            server.in_flight -= 1
            self.changed.notify_all()

    async def set_up(self, server: _Server, up: bool) -> bool:
        """Take a server back or out; False when it already was."""
        if server.up == up:
            return False
        async with self.changed:
            server.up = up
            if not up:
                server.down_at = asyncio.get_running_loop().time()
            self.changed.notify_all()  # the waiting requests may go elsewhere now
        return True


class OpenAIBackend(ModelBackend):
    generator = "openai"
    concurrent_calls = True  # each call has its own event loop and clients

    def __init__(
        self,
        *,
        base_url: str | None = None,
        model: str,
        base_urls: Sequence[str] = (),
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
        health_interval_s: float = 5.0,
        tokenizer_name: str | None = None,
    ) -> None:
        if max_concurrency < 1 or max_attempts < 1:
            raise ValueError("max_concurrency and max_attempts must be at least 1")
        urls = [url.strip().rstrip("/") for url in (base_urls or ([base_url] if base_url else []))]
        if not urls or not all(urls):
            raise ValueError(f"the openai backend needs at least one base URL, got {base_url!r} and {base_urls!r}")
        if len(set(urls)) < len(urls):
            raise ValueError(f"a base URL appears twice in {urls}: each server once")
        self.base_urls = tuple(urls)
        self.health_interval_s = health_interval_s
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
        self.tokenizer_name = tokenizer_name  # counts the tokens of replies sent without usage

    def __repr__(self) -> str:
        urls = self.base_urls[0] if len(self.base_urls) == 1 else list(self.base_urls)
        return f"OpenAIBackend(base_url={urls!r}, model={self.model!r})"

    def close(self) -> None:
        """Nothing held between runs: each generate() opens and closes its own client."""

    # The schema switch is not in the cache key: either way the reply parsed, so a
    # fallback run still hits the cache.
    def _qa_task(self):
        return qa_task(self.pairs_per_chunk, self.sampling)

    def _judge_task(self):
        return judge_task(self.sampling)

    def _extra_stats(self) -> dict[str, float]:
        return {"peak_in_flight": 0, "max_concurrency": self.max_concurrency,
                "json_schema": int(self.use_json_schema), "servers": len(self.base_urls),
                "servers_taken_out": 0, "failovers": 0}

    def _send(self, prompts: list[Prompt], run: Run) -> list[Prompt]:
        # The key is read at call time and kept only on this run, to be scrubbed.
        run.secret = os.environ.get(self.api_key_env) or None
        self._run_async(self._send_all(prompts, run))
        return []  # retries rejoined the queue in _send_all

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

    async def _send_all(self, todo: list[Prompt], run: Run) -> None:
        """max_concurrency workers per server take prompts from a priority queue, one
        request each, on a server below its bound (_Fleet.take).

        A prompt to retry goes back on the queue (after its backoff, via call_later)
        ahead of the prompts not sent yet: its attempts happen while the server is busy
        with the rest, not in a tail of retries at the end of the run, and a worker
        never sleeps while there is work."""
        headers = {"Authorization": f"Bearer {run.secret}"} if run.secret else {}
        fleet = _Fleet(self.base_urls, self.max_concurrency)
        workers = min(self.max_concurrency * len(fleet.servers), len(todo))
        failed_over: set[tuple[str, str]] = set()  # (item_id, url): one free failover each
        order = itertools.count()  # ties in the queue break by order, never by Prompt
        queue: asyncio.PriorityQueue[tuple[int, int, Prompt | None]] = asyncio.PriorityQueue()
        for prompt in todo:
            queue.put_nowait((_NEW, next(order), prompt))
        remaining = len(todo)
        loop = asyncio.get_running_loop()
        # Built once and shared: each client would otherwise load the CA bundle (~40 ms).
        ssl_context = httpx.create_ssl_context()

        async def worker() -> None:
            nonlocal remaining
            # One client holding one keep-alive connection per worker (max_concurrency
            # connections in all), not one pool shared by every worker: under bursts
            # (fast 500s, retries) requests waited seconds in the shared httpcore 1.0.9
            # pool while most of its connections sat idle; its assignment pass can give
            # one idle connection to every queued request at once. Measured on the
            # benchmark's fault run: efficiency 0.6-0.9 shared, 0.9 per worker.
            # In a fleet, one such client per server the worker has sent to.
            async with contextlib.AsyncExitStack() as clients:
                client_for: dict[str, httpx.AsyncClient] = {}
                while True:
                    _, _, prompt = await queue.get()
                    if prompt is None:
                        return
                    server = await fleet.take()
                    if server.url not in client_for:
                        client_for[server.url] = await clients.enter_async_context(httpx.AsyncClient(
                            base_url=server.url, headers=headers, timeout=httpx.Timeout(self.timeout_s),
                            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                            verify=ssl_context,
                        ))
                    try:
                        delay = await self._attempt(client_for[server.url], prompt, run, fleet, server,
                                                    failed_over)
                    finally:
                        await fleet.give_back(server)
                    if delay is not None:
                        loop.call_later(delay, queue.put_nowait, (_RETRY, next(order), prompt))
                        continue
                    remaining -= 1
                    if remaining == 0:  # every prompt settled: release the workers
                        for _ in range(workers):
                            queue.put_nowait((_STOP, next(order), None))

        watch = (asyncio.create_task(self._watch(fleet, headers, ssl_context, run))
                 if len(fleet.servers) > 1 else None)
        try:
            await asyncio.gather(*(worker() for _ in range(workers)))
        finally:
            if watch is not None:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch

    async def _watch(self, fleet: _Fleet, headers: dict[str, str], ssl_context: Any, run: Run) -> None:
        """The health check of a fleet: GET {base_url}/models on every server each
        health_interval_s. An answer (any HTTP status below 500) takes a server back;
        no answer, or a 5xx, takes it out."""
        loop = asyncio.get_running_loop()
        async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(min(5.0, self.timeout_s)),
                                     verify=ssl_context) as client:

            async def check(server: _Server) -> None:
                started = loop.time()
                try:
                    status = (await client.get(f"{server.url}/models")).status_code
                except httpx.HTTPError as error:
                    problem = f"health check: {type(error).__name__}"
                else:
                    problem = f"health check: HTTP {status}" if status >= 500 else None
                if problem is not None:
                    await self._take_out(fleet, server, problem, run)
                elif not server.up and server.down_at < started:
                    await fleet.set_up(server, True)
                    self._info(f"{server.url} answers again: taken back")

            while True:
                await asyncio.sleep(self.health_interval_s)
                await asyncio.gather(*(check(server) for server in fleet.servers))

    async def _take_out(self, fleet: _Fleet, server: _Server, reason: str, run: Run) -> None:
        if not await fleet.set_up(server, False):
            return
        run.extra["servers_taken_out"] += 1
        answering = sum(other.up for other in fleet.servers)
        self._warning(f"{server.url} stopped answering ({run.scrub(reason)}): taken out, "
                      f"{answering} of {len(fleet.servers)} servers left")

    async def _attempt(self, client: httpx.AsyncClient, prompt: Prompt, run: Run, fleet: _Fleet,
                       server: _Server, failed_over: set[tuple[str, str]]) -> float | None:
        """One request for a prompt. Returns the delay before the next attempt, or None
        when the prompt is settled. Never raises for one prompt's trouble: it cannot
        fail the others."""
        if run.stop_reason is not None:
            run.fail(prompt, run.stop_reason, sent=False)
            return None
        try:
            reply = await self._post(client, prompt, run, server.url)
        except _Retryable as failure:
            fleet_of_many = len(fleet.servers) > 1
            if failure.unreachable and fleet_of_many:
                await self._take_out(fleet, server, str(failure), run)
                # The server is gone, not the chunk's fault: another server gets the same
                # request (same attempt, same seed) at once.
                if (prompt.item_id, server.url) not in failed_over and any(other.up for other in fleet.servers):
                    failed_over.add((prompt.item_id, server.url))
                    run.extra["failovers"] += 1
                    return 0.0
            if not run.retry(prompt, f"{server.url}: {failure}" if fleet_of_many else str(failure)):
                return None
            return self._backoff(prompt.attempts, failure.delay)
        except _Fatal as failure:
            run.fail(prompt, str(failure))
            if failure.stop_all and run.stop_reason is None:
                run.stop_reason = f"not sent: an earlier request failed with {prompt.error}"
                self._warning(f"stopping generation: {prompt.error}")
            return None
        except Exception as bug:  # a bug on one chunk is that chunk's failure, not the run's
            run.fail(prompt, f"{type(bug).__name__}: {bug}")
            return None
        return 0.0 if run.settle(prompt, reply) else None  # a bad reply is asked again at once

    async def _post(self, client: httpx.AsyncClient, prompt: Prompt, run: Run, server_url: str = "") -> Reply:
        """One chat completion, or _Retryable/_Fatal."""
        task = run.task_of(prompt)
        while True:  # loops once more only when the server refuses response_format
            body: dict[str, Any] = {"model": self.model, "messages": prompt.messages, **run.sampling(prompt)}
            with_schema = self.use_json_schema
            if with_schema:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": task.schema_name, "strict": True, "schema": task.schema},
                }
            run.requests += 1
            run.in_flight += 1
            run.extra["peak_in_flight"] = max(run.extra["peak_in_flight"], run.in_flight)
            try:
                response = await client.post("/chat/completions", json=body)
            except httpx.ConnectTimeout as error:  # no connection at all: as good as refused
                raise _Retryable(f"connection error: {type(error).__name__}: {error}", unreachable=True) from None
            except httpx.TimeoutException as error:  # slow, not gone: the server may still be computing
                raise _Retryable(f"timeout after {self.timeout_s}s ({type(error).__name__})") from None
            except httpx.TransportError as error:
                raise _Retryable(f"connection error: {type(error).__name__}: {error}", unreachable=True) from None
            finally:
                run.in_flight -= 1

            status = response.status_code
            if status == 200:
                reply = _reply(response, server_url)
                return reply if reply.counted_with is None else self._counted(reply, prompt.messages)
            detail = response.text[:300]
            if status in RETRY_STATUSES:
                raise _Retryable(f"HTTP {status}: {detail}", _retry_after(response))
            if (with_schema and status in (400, 422)
                    and any(word in detail.lower() for word in _SCHEMA_WORDS)):
                if self.use_json_schema:  # another worker may have switched it off already
                    self.use_json_schema = False
                    run.extra["json_schema"] = 0
                    self._warning(
                        f"the server refused response_format json_schema (HTTP {status}); "
                        "continuing without structured output, replies are repaired instead"
                    )
                run.retries += 1
                continue
            raise _Fatal(f"HTTP {status}: {detail}", stop_all=status in FATAL_STATUSES)

    def _counted(self, reply: Reply, messages: list[dict[str, str]]) -> Reply:
        """A reply the server sent without `usage`, its tokens counted with the tokenizer."""
        from synth_assets.core.chunking import load_tokenizer
        from synth_assets.core.usage import count_completion_tokens, count_prompt_tokens

        tokenizer, name = load_tokenizer(self.tokenizer_name)  # cached: loaded once per process
        return dataclasses.replace(
            reply, prompt_tokens=count_prompt_tokens(tokenizer, messages),
            completion_tokens=sum(count_completion_tokens(tokenizer, text) for text in reply.texts), counted_with=name)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter: uniform(0, min(max, base * 2^(attempt-1))); Retry-After wins."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.backoff_max_s)
        return random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1)))


def _reply(response: httpx.Response, server_url: str = "") -> Reply:
    """The reply, with the server's token counts; `counted_with` _NO_USAGE when it sent
    none (the caller counts them with the tokenizer)."""
    try:
        data = response.json()
        content = data["choices"][0]["message"].get("content") or ""
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        # A 200 without a completion is a server hiccup, not the model's reply.
        raise _Retryable(f"HTTP 200 without a chat completion: {response.text[:200]}") from None
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    tokens = [usage.get(k) for k in ("prompt_tokens", "completion_tokens")]
    if not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in tokens):
        return Reply([content], server=server_url, counted_with=_NO_USAGE)
    return Reply([content], *(int(t) for t in tokens), server=server_url)


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
