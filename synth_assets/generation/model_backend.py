"""The loop every model backend shares, so the backends differ only in how prompts
reach their model.

For each chunk (or pair to judge) `ModelBackend` looks the reply up in the cache, has
the backend send the rest (`_send`: concurrent HTTP requests for the openai backend,
one `LLM.chat` call for the vllm backend), parses the replies, asks again for what did
not parse, records what never did, and counts.

- A cached reply that the current parser rejects is a cache miss: it is asked for again
  and replaced, so a parser change cannot fail a chunk that a new reply would fix.
- Attempt k (counting from 0) of a prompt uses seed + k: given the seed of a rejected
  reply, a deterministic engine or server writes the same reply again. The seed offset
  is not in the cache key: the key names the request, not the try.
- After `max_attempts` a prompt becomes a failure with its attempts and last error; it
  is never dropped.
- Only replies that parse are cached, by a writer thread that commits them as they
  arrive, so a killed run loses at most the replies of the last moment.
"""

from __future__ import annotations

import abc
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from synth_assets.core.judge import (
    JUDGE_PROMPT_VERSION,
    build_judge_messages,
    judge_json_schema,
    parse_judge_reply,
    unsupported_in_judge_reply,
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
from synth_assets.core.tasks import MULTI_HOP, QA
from synth_assets.generation.task_prompts import TASK_PROMPT_VERSIONS, build_task_messages, parse_task_reply, task_json_schema
from synth_assets.generation.task_prompts import (
    CLOSED_BOOK,
    CLOSED_BOOK_PROMPT_VERSION,
    CLOSED_BOOK_SCHEMA_NAME,
    ClosedBookOutcome,
    ClosedBookRequest,
    build_closed_book_messages,
    closed_book_json_schema,
    closed_book_request_id,
    parse_closed_book_reply,
)
from synth_assets.generation.prompts import (
    PROMPT_VERSION,
    ReplyParseError,
    build_messages,
    parse_reply,
    qa_json_schema,
)


@dataclass(frozen=True)
class Task:
    """What is asked of the model: writing a chunk's pairs, or judging one pair."""

    schema_name: str
    schema: dict[str, Any]
    parse: Callable[[str], Any]  # one completion -> result; raises ReplyParseError
    prompt_version: str
    sampling: dict[str, Any]
    key_params: dict[str, Any]  # with the model and the messages, the cache key
    verb: str  # log lines say "<verb> 3/10 <noun>"
    noun: str


def qa_task(pairs_per_chunk: int, sampling: dict[str, Any], **key_extra: Any) -> Task:
    # The sampling and the pair count define the reply, so both are in the cache key.
    return Task("qa_pairs", qa_json_schema(pairs_per_chunk), lambda text: parse_reply(text, pairs_per_chunk),
                PROMPT_VERSION, sampling, {**sampling, "pairs_per_chunk": pairs_per_chunk, **key_extra},
                "generated", "chunks")


def judge_task(sampling: dict[str, Any], **key_extra: Any) -> Task:
    # A judge should be repeatable: greedy decoding, and a short reply.
    greedy = {**sampling, "temperature": 0.0, "max_tokens": 200}
    greedy.pop("top_p", None)
    return Task("judge_score", judge_json_schema(), _parse_judge, JUDGE_PROMPT_VERSION, greedy,
                {**greedy, "task": "judge", **key_extra}, "judged", "pairs")


@dataclass
class Prompt:
    """One chunk (or pair to judge) on its way to the model, with its attempts so far."""

    item_id: str
    messages: list[dict[str, str]]
    key: str = ""
    attempts: int = 0
    error: str = "not sent"
    # Its own task when a call mixes tasks (a reasoning prompt beside multi-hop ones);
    # None: the run's task.
    task: Task | None = None


@dataclass(frozen=True)
class Reply:
    """What the model sent back for one prompt: its completions (several when n > 1)."""

    texts: list[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # The server that answered (its base URL); "" for an engine in this process.
    server: str = ""
    # The tokenizer that counted the tokens when the server sent no `usage`; None: the
    # counts are the server's (or the engine's) own.
    counted_with: str | None = None


@dataclass
class Run:
    """The state of one generate() or judge() call. A backend's `_send` reports each
    prompt here: `settle` for a reply, `retry` or `fail` for a request that brought
    none. `settle` and `retry` say whether the prompt is to be sent again."""

    backend: ModelBackend
    task: Task
    total: int
    extra: dict[str, float]  # the backend's own stats, reported as they are at the end
    started: float = field(default_factory=time.perf_counter)
    last_progress: float = field(default_factory=time.perf_counter)
    requests: int = 0
    retries: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    in_flight: int = 0
    done: int = 0
    pairs: int = 0
    cache_write_errors: int = 0
    stop_reason: str | None = None  # set by a backend when sending more cannot help
    secret: str | None = None  # scrubbed from every error recorded
    results: dict[str, list[Any]] = field(default_factory=dict)
    failures: dict[str, GenerationFailure] = field(default_factory=dict)
    usage: dict[str, list[int]] = field(default_factory=dict)  # item_id -> [replies, prompt, completion tokens]
    usage_by_server: dict[str, list[int]] = field(default_factory=dict)  # base URL -> the same
    counted: dict[str, int] = field(default_factory=dict)  # item_id -> replies counted with `counted_with`
    counted_with: str | None = None
    cached_usage: dict[str, list[int]] = field(default_factory=dict)  # item_id -> [1, prompt, completion] as cached
    writer: _CacheWriter | None = None
    # Called with (item_id, results) as each prompt's results arrive (cached ones first).
    on_result: Callable[[str, list[Any]], None] | None = None

    def task_of(self, prompt: Prompt) -> Task:
        """What the prompt asks: its own task, or the run's."""
        return prompt.task or self.task

    def sampling(self, prompt: Prompt) -> dict[str, Any]:
        """The sampling of the prompt's next attempt: seed + attempts made. A greedy task
        (temperature 0, the judge) samples a little on its retries: greedy decoding
        ignores the seed, so it would write the rejected reply again."""
        sampling = self.task_of(prompt).sampling
        if not prompt.attempts:
            return sampling
        retry = dict(sampling)
        if retry.get("seed") is not None:
            retry["seed"] += prompt.attempts
        if retry.get("temperature") == 0:
            retry["temperature"] = 0.3  # off the greedy path, still close to the judge's best reply
        return retry

    def parse(self, texts: list[str], task: Task | None = None) -> tuple[list[Any], list[str], str]:
        """The results of the completions that parse, their texts, and the last error."""
        results, good, error = [], [], "the model returned no completion"
        for text in texts:
            try:
                results.append((task or self.task).parse(text))
            except ReplyParseError as failure:
                error = f"unparseable reply: {failure.reason}"
            else:
                good.append(text)
        return results, good, error

    def settle(self, prompt: Prompt, reply: Reply) -> bool:
        self.prompt_tokens += reply.prompt_tokens
        self.completion_tokens += reply.completion_tokens
        # Per prompt, every reply counted (a rejected one cost tokens too): what a document
        # and a task cost (GenerationOutcome.usage).
        usage = self.usage.setdefault(prompt.item_id, [0, 0, 0])
        usage[0] += 1
        usage[1] += reply.prompt_tokens
        usage[2] += reply.completion_tokens
        if reply.server:  # a fleet's bill is per server
            server = self.usage_by_server.setdefault(reply.server, [0, 0, 0])
            server[0] += 1
            server[1] += reply.prompt_tokens
            server[2] += reply.completion_tokens
        if reply.counted_with:  # the server sent no usage: the summary says so
            self.counted[prompt.item_id] = self.counted.get(prompt.item_id, 0) + 1
            self.counted_with = reply.counted_with
        try:
            results, good, error = self.parse(reply.texts, self.task_of(prompt))
        except Exception as bug:  # a bug on one chunk is that chunk's failure, not the run's
            return self.fail(prompt, f"{type(bug).__name__}: {bug}")
        if not results:
            return self.retry(prompt, error)
        prompt.attempts += 1
        self.results[prompt.item_id] = results
        if self.on_result is not None:
            self.on_result(prompt.item_id, results)
        self.pairs += sum(len(r) if isinstance(r, list) else 1 for r in results)
        if self.writer is not None:
            self.writer.put(CacheEntry(prompt.key, self.backend.model, self.task_of(prompt).prompt_version,
                                       _cache_value(good), reply.prompt_tokens, reply.completion_tokens))
        self._settled()
        return False

    def retry(self, prompt: Prompt, error: str) -> bool:
        """An attempt without a usable reply: True while attempts remain."""
        prompt.attempts += 1
        prompt.error = self.scrub(error)
        if prompt.attempts < self.backend.max_attempts:
            self.retries += 1
            return True
        self._failed(prompt)
        return False

    def fail(self, prompt: Prompt, error: str, *, sent: bool = True) -> bool:
        """A failure that repeating will not fix (or, with sent=False, a prompt not sent)."""
        prompt.attempts += int(sent)
        prompt.error = self.scrub(error)
        self._failed(prompt)
        return False

    def scrub(self, message: str) -> str:
        return message.replace(self.secret, "***") if self.secret else message

    def _failed(self, prompt: Prompt) -> None:
        self.failures[prompt.item_id] = GenerationFailure(prompt.item_id, prompt.attempts, prompt.error)
        self._settled()

    def _settled(self) -> None:
        self.done += 1
        now = time.perf_counter()
        if now - self.last_progress < self.backend.progress_every_s or self.done >= self.total:
            return
        self.last_progress = now
        elapsed = now - self.started
        in_flight = f"{self.in_flight} in flight, " if self.in_flight else ""
        self.backend._info(
            f"{self.task.verb} {self.done}/{self.total} {self.task.noun}, {self.pairs / elapsed:.1f} pairs/s, "
            f"{self.completion_tokens / elapsed:.0f} completion tokens/s, "
            f"{in_flight}{self.retries} retries, {len(self.failures)} failed"
        )

    def stats(self) -> dict[str, float]:
        seconds = time.perf_counter() - self.started
        return {
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "failures": len(self.failures),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(seconds, 3),
            "completion_tokens_per_second": round(self.completion_tokens / seconds, 1) if seconds else 0.0,
            # Pairs the model wrote in this run (cached ones are not its speed).
            "pairs_per_second": round(self.pairs / seconds, 1) if seconds else 0.0,
            "cache_write_errors": self.cache_write_errors,
            **self.extra,
        }


class ModelBackend(abc.ABC):
    """A GenerationBackend (base.py) that asks a chat model. A subclass sets `generator`,
    `model`, `pairs_per_chunk`, `max_attempts`, `cache` and `log`, and implements
    `_send`, `_qa_task` and `_judge_task`."""

    generator: str
    model: str
    prompt_version = PROMPT_VERSION
    pairs_per_chunk: int
    max_attempts: int
    cache: GenerationCache | None = None
    log: Any = None
    progress_every_s: float = 5.0
    # Whether generate() and judge() may run at once from two threads (the openai
    # backend: yes; one vLLM engine: no).
    concurrent_calls: bool = False

    @abc.abstractmethod
    def _send(self, prompts: list[Prompt], run: Run) -> list[Prompt]:
        """Ask the model for every prompt, with `run.sampling(prompt)`, and report each
        to `run`. Returns the prompts to send again (those `run` said so for), or none if
        the backend resent them itself. The prompts of one call have all made the same
        number of attempts."""

    @abc.abstractmethod
    def _qa_task(self) -> Task:
        """The question-answer task: schema, parser, prompt version, sampling."""

    @abc.abstractmethod
    def _judge_task(self) -> Task:
        """The judge task: schema, parser, prompt version, sampling."""

    def _extra_stats(self) -> dict[str, float]:
        """The backend's own stats with their starting values; `_send` updates them."""
        return {}

    def generate(self, requests: list[GenerationRequest],
                 on_pairs: Callable[[str, list[GeneratedPair]], None] | None = None) -> GenerationOutcome:
        """Pairs for every chunk; `on_pairs(chunk_id, pairs)` is called as each chunk's
        pairs arrive (from the event loop or the engine call: keep it quick)."""
        prompts = [self._prompt(r) for r in requests]
        by_id = {r.request_id: r for r in requests}
        on_result = None if on_pairs is None else (
            lambda item_id, results: on_pairs(item_id, _pairs(by_id[item_id], results)))
        run, stats = self._run(self._qa_task(), prompts, on_result)
        outcome = GenerationOutcome()
        for prompt in prompts:  # input order, whatever the completion order was
            if prompt.item_id in run.results:
                outcome.pairs.extend(_pairs(by_id[prompt.item_id], run.results[prompt.item_id]))
            else:
                failure = _failure(run, prompt)
                outcome.failures.append(GenerationFailure(by_id[prompt.item_id].chunk_id, failure.attempts,
                                                          failure.error, by_id[prompt.item_id].task))
        outcome.stats = {"chunks": len(requests), **stats, "failures": len(outcome.failures),
                         "pairs": len(outcome.pairs)}
        _record_usage(outcome, run)
        return outcome

    def _prompt(self, request: GenerationRequest) -> Prompt:
        """A request's prompt: qa's own (unchanged when no count is set), or its task's."""
        messages = request_messages(request, self.pairs_per_chunk)
        if request.task == QA and request.n_items is None:
            return Prompt(request.request_id, messages)
        return Prompt(request.request_id, messages,
                      task=self._item_task(request.task, request.n_items or self.pairs_per_chunk))

    def _item_task(self, task: str, n_items: int) -> Task:
        """A task with the sampling and cache-key extras of this backend's qa task."""
        qa = self._qa_task()
        extra = {k: v for k, v in qa.key_params.items() if k not in qa.sampling and k != "pairs_per_chunk"}
        if task == QA:
            return qa_task(n_items, qa.sampling, **extra)
        return Task(f"{task}_items_{n_items}", task_json_schema(task, n_items),
                    lambda text: parse_task_reply(task, text, n_items), TASK_PROMPT_VERSIONS[task], qa.sampling,
                    {**qa.sampling, "task": task, "n_items": n_items, **extra}, "generated", "requests")

    def generate_and_judge(
        self, requests: list[GenerationRequest],
        judge_requests_for: Callable[[GenerationRequest, list[GeneratedPair]], list[JudgeRequest]],
    ) -> tuple[GenerationOutcome, JudgeOutcome]:
        """Generation with the judging of its pairs overlapped (producer-consumer): as
        each chunk's pairs arrive, a judging thread turns them into judge requests
        (`judge_requests_for`: the pairs worth judging) and sends what has arrived since
        its last call while generation goes on, so the model never waits for a step to
        end. The judge's replies reach the cache, where the curate step finds them.

        The two calls each keep up to their bound in flight (openai: max_concurrency),
        so up to twice that while both run. A backend whose calls must not overlap (one
        vLLM engine) judges after generating instead, every pair in one call."""
        by_id = {request.request_id: request for request in requests}
        arrived: queue.Queue = queue.Queue()  # (chunk_id, pairs), then None when generation ended
        judged = JudgeOutcome()
        errors: list[Exception] = []

        def judging() -> None:
            ended = False
            while not ended:
                batch = [arrived.get()]  # waits for the first, then takes whatever is there
                while not arrived.empty():
                    batch.append(arrived.get_nowait())
                ended = batch[-1] is None
                if errors or not (ended or self.concurrent_calls):
                    if not self.concurrent_calls:  # kept for one call at the end
                        arrived_all.extend(item for item in batch if item is not None)
                    continue
                try:
                    to_judge = [request for item in [*arrived_all, *batch] if item is not None
                                for request in judge_requests_for(by_id[item[0]], item[1])]
                    outcome = self.judge(to_judge) if to_judge else JudgeOutcome()
                except Exception as error:  # the curate step judges what is missing, and fails there if it must
                    errors.append(error)
                    continue
                judged.scores.update(outcome.scores)
                judged.unsupported.update(outcome.unsupported)
                judged.failures.update(outcome.failures)
                add_usage(judged, outcome)

        arrived_all: list = []
        thread = threading.Thread(target=judging, name="judge-as-generated", daemon=True)
        thread.start()
        try:
            outcome = self.generate(requests, on_pairs=lambda chunk_id, pairs: arrived.put((chunk_id, pairs)))
        finally:
            arrived.put(None)
            thread.join()
        if errors:
            self._warning(f"judging while generating stopped ({type(errors[0]).__name__}: {errors[0]}); "
                          "the curate step judges the rest")
        judged.stats = {"judged_while_generating": len(judged.scores),
                        "judge_failures_while_generating": len(judged.failures)}
        return outcome, judged

    def judge(self, requests: list[JudgeRequest]) -> JudgeOutcome:
        """A 1-10 score and a reason for each pair, from the same model, with the same
        cache and retries as generation (judge-v1 prompt, greedy)."""
        prompts = _judge_prompts(requests)
        run, stats = self._run(self._judge_task(), prompts)
        outcome = _judged(run, prompts)
        outcome.stats = {"judged": len(outcome.scores), "judge_failures": len(outcome.failures),
                         **{f"judge_{key}": value for key, value in stats.items() if key != "failures"}}
        _record_usage(outcome, run)
        return outcome

    def closed_book(self, requests: list[ClosedBookRequest], judge: list[JudgeRequest] = ()
                    ) -> tuple[ClosedBookOutcome, JudgeOutcome]:
        """Each question answered without its source (preference pairs: what the model
        says from memory), in the same call as `judge` requests when there are some, so
        the server or LLM.chat gets them all at once. Sampled like generation, cached
        under their own prompt version."""
        closed = self._closed_book_task()
        prompts = _judge_prompts(judge)
        prompts += [Prompt(closed_book_request_id(r.item_id), build_closed_book_messages(r.question), task=closed)
                    for r in requests]
        run, stats = self._run(self._judge_task() if judge else closed, prompts)
        judged, answered = _judged(run, prompts[:len(judge)]), ClosedBookOutcome()
        for request, prompt in zip(requests, prompts[len(judge):]):
            if prompt.item_id in run.results:
                answered.answers[request.item_id] = run.results[prompt.item_id][0]
            else:
                answered.failures[request.item_id] = _failure(run, prompt).error
        # What each request cost (cache hits cost nothing), by the item it was for.
        judged.usage = {p.item_id: tuple(run.usage[p.item_id]) for p in prompts[:len(judge)] if p.item_id in run.usage}
        answered.usage = {r.item_id: tuple(run.usage[p.item_id]) for r, p in zip(requests, prompts[len(judge):])
                          if p.item_id in run.usage}
        answered.stats = {"closed_book_answers": len(answered.answers),
                          "closed_book_failures": len(answered.failures),
                          **{f"closed_book_{key}": value for key, value in stats.items() if key != "failures"}}
        judged.stats = {"judged": len(judged.scores), "judge_failures": len(judged.failures)}
        return answered, judged

    def _closed_book_task(self) -> Task:
        """Sampled as generation is (the same model answering, from memory), with the cache-key
        extras of this backend's qa task."""
        qa = self._qa_task()
        extra = {k: v for k, v in qa.key_params.items() if k not in qa.sampling and k != "pairs_per_chunk"}
        return Task(CLOSED_BOOK_SCHEMA_NAME, closed_book_json_schema(), parse_closed_book_reply,
                    CLOSED_BOOK_PROMPT_VERSION, qa.sampling, {**qa.sampling, "task": CLOSED_BOOK, **extra},
                    "answered closed-book", "questions")

    def cache_key_for(self, request: GenerationRequest) -> str:
        """The generation-cache key of one request."""
        prompt = self._prompt(request)
        return cache_key(self.model, (prompt.task or self._qa_task()).key_params, prompt.messages)

    def _run(self, task: Task, prompts: list[Prompt],
             on_result: Callable[[str, list[Any]], None] | None = None) -> tuple[Run, dict[str, float]]:
        run = Run(self, task, len(prompts), self._extra_stats(), on_result=on_result)
        for prompt in prompts:
            prompt.key = cache_key(self.model, (prompt.task or task).key_params, prompt.messages)
        cached = self.cache.get_many([p.key for p in prompts]) if self.cache is not None else {}
        pending = []
        for prompt in prompts:
            hit = cached.get(prompt.key)
            results = run.parse(_cached_texts(hit.reply), run.task_of(prompt))[0] if hit is not None else []
            if results:
                run.results[prompt.item_id] = results
                # What the reply cost when it was asked (as recorded with it): the items
                # made from it cost that, though this run paid nothing.
                run.cached_usage[prompt.item_id] = [1, hit.prompt_tokens or 0, hit.completion_tokens or 0]
                if on_result is not None:
                    on_result(prompt.item_id, results)
            else:  # not cached, or cached but rejected by the parser as it is now
                pending.append(prompt)
        run.cache_hits = run.done = len(prompts) - len(pending)
        if pending and self.cache is not None:
            run.writer = _CacheWriter(self.cache, run)
        try:
            while pending:
                pending = self._send(pending, run)
        finally:
            if run.writer is not None:
                run.writer.close()
        stats = run.stats()
        if run.cache_write_errors:
            self._warning(f"{run.cache_write_errors} replies could not be written to the "
                          f"generation cache {self.cache!r}; a rerun will ask for them again")
        self._info(
            f"{task.verb} {len(run.results)}/{len(prompts)} {task.noun} ({run.cache_hits} from cache, "
            f"{len(prompts) - len(run.results)} failed) in {stats['seconds']:.1f}s: "
            f"{run.requests} requests, {run.retries} retries, "
            f"{stats['completion_tokens_per_second']} completion tokens/s"
        )
        return run, stats

    def _info(self, message: str) -> None:
        if self.log is not None:
            self.log.info(message)

    def _warning(self, message: str) -> None:
        if self.log is not None:
            self.log.warning(message)


class _CacheWriter:
    """Commits parsed replies from one background thread, each batch in one short
    connection: a DuckDB connect-and-commit takes tens of milliseconds, too slow for
    an event loop and for one commit per reply, yet a reply waits at most one batch."""

    def __init__(self, cache: GenerationCache, run: Run) -> None:
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

    def close(self) -> None:
        """Returns when everything put is committed (or counted as not written)."""
        with self._lock:
            self._closing = True
        self._wake.set()
        self._thread.join()


def _pairs(request: GenerationRequest, results: list[Any]) -> list[GeneratedPair]:
    """A request's parsed replies (one per completion) as pairs of its task. A multi-hop
    item names its excerpts by number: they become chunk ids (all of them when it names
    none)."""
    chunk_ids = (request.chunk_id, *(chunk_id for chunk_id, _ in request.partners))
    pairs = []
    for items in results:
        for p in items:
            sources = (request.chunk_id,)
            if request.task == MULTI_HOP:
                sources = tuple(chunk_ids[i - 1] for i in p.get("excerpts") or range(1, len(chunk_ids) + 1)
                                if i <= len(chunk_ids))
            pairs.append(GeneratedPair(
                chunk_id=request.chunk_id, question=p["question"], answer=p["answer"],
                question_type=p["question_type"], evidence=p.get("evidence"), reasoning=p.get("reasoning"),
                task=request.task, difficulty=p.get("difficulty"), source_chunk_ids=sources,
                turns=tuple(p.get("turns") or ()), quotes=tuple(p.get("quotes") or ())))
    return pairs


def request_messages(request: GenerationRequest, pairs_per_chunk: int) -> list[dict[str, str]]:
    """The chat messages a request is sent as (also counted by the estimate)."""
    if request.task == QA:
        return build_messages(request, request.n_items or pairs_per_chunk)
    return build_task_messages(request, request.n_items or pairs_per_chunk)


def _judge_prompts(requests) -> list[Prompt]:
    return [Prompt(r.pair_id, build_judge_messages(r.question, r.answer, r.chunk_text, r.task, r.source_texts))
            for r in requests]


def _judged(run: Run, prompts: list[Prompt]) -> JudgeOutcome:
    """The judge's scores, reasons and unsupported claims of these prompts, or why none came."""
    outcome = JudgeOutcome()
    for prompt in prompts:
        if prompt.item_id in run.results:
            score, reason, unsupported = run.results[prompt.item_id][0]
            outcome.scores[prompt.item_id] = (score, reason)
            if unsupported:
                outcome.unsupported[prompt.item_id] = unsupported
        else:
            outcome.failures[prompt.item_id] = _failure(run, prompt).error
    return outcome


def _record_usage(outcome: GenerationOutcome | JudgeOutcome, run: Run) -> None:
    """What the call's replies cost, per request and per server, onto its outcome."""
    outcome.usage = {item_id: tuple(counts) for item_id, counts in run.usage.items()}
    outcome.usage_by_server = {url: tuple(counts) for url, counts in run.usage_by_server.items()}
    outcome.usage_counted = dict(run.counted)
    outcome.usage_tokenizer = run.counted_with
    outcome.usage_cached = {item_id: tuple(counts) for item_id, counts in run.cached_usage.items()}


def add_usage(total: GenerationOutcome | JudgeOutcome, part: GenerationOutcome | JudgeOutcome) -> None:
    """`part`'s usage added to `total`'s (the judge's calls made while generating)."""
    for mine, theirs in ((total.usage, part.usage), (total.usage_by_server, part.usage_by_server),
                         (total.usage_cached, part.usage_cached)):
        for key, counts in theirs.items():
            mine[key] = tuple(a + b for a, b in zip(mine.get(key, (0, 0, 0)), counts))
    for key, replies in part.usage_counted.items():
        total.usage_counted[key] = total.usage_counted.get(key, 0) + replies
    total.usage_tokenizer = part.usage_tokenizer or total.usage_tokenizer


def _failure(run: Run, prompt: Prompt) -> GenerationFailure:
    failure = run.failures.get(prompt.item_id)
    return failure or GenerationFailure(prompt.item_id, prompt.attempts, "no reply was recorded")


def _cache_value(texts: list[str]) -> str:
    # One completion is stored as it came; several (n > 1) as a JSON list.
    return texts[0] if len(texts) == 1 else json.dumps(texts)


def _cached_texts(value: str) -> list[str]:
    """The completions in a cached value. Older vllm entries are a JSON list even for
    one completion; a reply that is not a list of strings is one completion."""
    if not value.startswith('["'):
        return [value]
    try:
        texts = json.loads(value)
    except ValueError:
        return [value]
    return texts if all(isinstance(text, str) for text in texts) else [value]


def _parse_judge(reply: str) -> tuple[int, str, list[str]]:
    try:
        return (*parse_judge_reply(reply), unsupported_in_judge_reply(reply))
    except ValueError as error:
        raise ReplyParseError(str(error)) from None
