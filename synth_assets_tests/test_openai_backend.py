"""The openai backend against the simulated server (benchmarks/sim_server.py) on
127.0.0.1: concurrency, retries, failures, the cache across runs and crashes, the
json_schema fallback, and the API key kept out of everything it reports."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from benchmarks.sim_server import SimStats, document_hash, start_server_in_thread
from synth_assets.generation.base import GenerationRequest
from synth_assets.generation.cache import GenerationCache
from synth_assets.generation.openai_backend import OpenAIBackend
from synth_assets.generation.prompts import PROMPT_VERSION

ROOT = Path(__file__).resolve().parents[1]
FAST = {"ttft": 0.02, "tpot": 0.0, "output_tokens": 50}
KEY_ENV = "SYNTH_ASSETS_TEST_API_KEY"
SECRET = "sk-test-Zq81-very-secret-key-4c2f"

Server = Callable[..., tuple[str, SimStats]]


@pytest.fixture
def sim() -> Iterator[Server]:
    """Start simulated servers in threads; all are stopped after the test."""
    stops = []

    def start(**options) -> tuple[str, SimStats]:
        base_url, stats, stop = start_server_in_thread(**{**FAST, **options})
        stops.append(stop)
        return base_url, stats

    yield start
    for stop in stops:
        stop()


def _requests(n: int, marker: str = "", marked: set[int] = frozenset()) -> list[GenerationRequest]:
    return [
        GenerationRequest(
            document_id="doc",
            chunk_id=f"doc#{i}",
            text=(f"Chunk {i} is about ducks. Ducks are birds that swim well in lakes and rivers. "
                  f"They eat plants, seeds and insects. {marker if i in marked else ''}"),
            headings=("Birds", "Ducks"),
            title="Ducks",
        )
        for i in range(n)
    ]


def _backend(base_url: str, **options) -> OpenAIBackend:
    settings = {"model": "sim-model", "pairs_per_chunk": 3, "max_concurrency": 8, "timeout_s": 5.0,
                "max_attempts": 4, "backoff_base_s": 0.01, "backoff_max_s": 0.05,
                "api_key_env": KEY_ENV, **options}
    return OpenAIBackend(base_url=base_url, **settings)


def _generated(outcome) -> set[str]:
    return {pair.chunk_id for pair in outcome.pairs}


class Recorder:
    """A Dagster-log-like object: .info / .warning lines are kept."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, message: str) -> None:
        self.lines.append(("info", message))

    def warning(self, message: str) -> None:
        self.lines.append(("warning", message))


def test_requests_run_concurrently_up_to_the_limit(sim: Server) -> None:
    base_url, stats = sim(slots=16, ttft=0.05)
    outcome = _backend(base_url, max_concurrency=6).generate(_requests(30))
    assert _generated(outcome) == {f"doc#{i}" for i in range(30)} and not outcome.failures
    assert 1 < outcome.stats["peak_in_flight"] <= 6
    assert 1 < stats.snapshot()["peak_in_flight"] <= 6
    # 30 sequences of 0.05 s, 6 at a time: far below the 1.5 s of one at a time
    assert outcome.stats["seconds"] < 1.0
    assert outcome.stats["requests"] == 30 and outcome.stats["chunks"] == 30
    assert outcome.stats["completion_tokens"] == 30 * 50 and outcome.stats["prompt_tokens"] > 0
    assert outcome.stats["completion_tokens_per_second"] > 0
    assert len(outcome.pairs) == 30 * 3
    assert {p.question_type for p in outcome.pairs} <= {"factual", "how", "why", "compare", "explain"}


def test_server_slots_bound_what_runs_at_once(sim: Server) -> None:
    base_url, stats = sim(slots=4, ttft=0.03)
    outcome = _backend(base_url, max_concurrency=12).generate(_requests(24))
    assert not outcome.failures
    snapshot = stats.snapshot()
    assert snapshot["peak_active"] == 4  # the "GPU" never runs more than its slots
    assert snapshot["peak_in_flight"] > 4  # the client keeps a queue waiting at the server


def test_500_and_429_are_retried_until_success(sim: Server) -> None:
    base_url, stats = sim(fail_500=0.25, fail_429=0.25, retry_after=0.01)
    outcome = _backend(base_url, max_attempts=12).generate(_requests(20))
    assert not outcome.failures and _generated(outcome) == {f"doc#{i}" for i in range(20)}
    outcomes = stats.snapshot()["outcomes"]
    assert outcomes.get("fail_500", 0) > 0 and outcomes.get("fail_429", 0) > 0
    assert outcome.stats["retries"] == outcomes["fail_500"] + outcomes["fail_429"]
    assert outcome.stats["requests"] == 20 + outcome.stats["retries"] == stats.snapshot()["requests"]


def test_timeouts_dropped_connections_and_bad_bodies_are_retried(sim: Server) -> None:
    base_url, stats = sim(stall=0.2, drop=0.2, empty=0.1, stall_s=1.0)
    outcome = _backend(base_url, timeout_s=0.3, max_attempts=10).generate(_requests(16))
    assert not outcome.failures and len(_generated(outcome)) == 16
    outcomes = stats.snapshot()["outcomes"]
    assert outcomes.get("stall", 0) > 0 and outcomes.get("drop", 0) > 0
    assert outcome.stats["retries"] > 0


def test_truncated_and_messy_replies_keep_their_complete_pairs(sim: Server) -> None:
    base_url, stats = sim(truncated=0.5, messy=0.5)
    outcome = _backend(base_url, pairs_per_chunk=5).generate(_requests(12))
    assert not outcome.failures and outcome.stats["retries"] == 0
    counts = [sum(p.chunk_id == f"doc#{i}" for p in outcome.pairs) for i in range(12)]
    assert min(counts) >= 2 and max(counts) == 5 and 5 in counts and any(c < 5 for c in counts)
    assert all(p.answer and not p.answer.endswith(('"', "\\")) for p in outcome.pairs)


def test_unparseable_chunks_fail_after_max_attempts_and_others_succeed(sim: Server, tmp_path: Path) -> None:
    base_url, stats = sim(malformed_marker="@@BROKEN@@")
    cache = GenerationCache(tmp_path / "cache.duckdb")
    requests = _requests(10, marker="@@BROKEN@@", marked={2, 5, 7})
    outcome = _backend(base_url, max_attempts=3, cache=cache).generate(requests)
    assert _generated(outcome) == {f"doc#{i}" for i in range(10)} - {"doc#2", "doc#5", "doc#7"}
    assert {f.chunk_id for f in outcome.failures} == {"doc#2", "doc#5", "doc#7"}
    for failure in outcome.failures:
        assert failure.attempts == 3 and "unparseable reply" in failure.error
    assert outcome.stats["failures"] == 3
    assert stats.snapshot()["requests"] == 7 + 3 * 3 == outcome.stats["requests"]
    assert cache.count() == 7  # only replies that parsed are cached


def test_other_4xx_fail_the_chunk_without_retry(sim: Server) -> None:
    base_url, stats = sim(bad_request_marker="@@TOO-LONG@@")
    requests = _requests(6, marker="@@TOO-LONG@@", marked={1})
    outcome = _backend(base_url).generate(requests)
    assert [(f.chunk_id, f.attempts) for f in outcome.failures] == [("doc#1", 1)]
    assert "HTTP 400" in outcome.failures[0].error and "too long" in outcome.failures[0].error
    assert len(_generated(outcome)) == 5 and stats.snapshot()["requests"] == 6


def test_a_repeated_run_is_served_from_the_cache(sim: Server, tmp_path: Path) -> None:
    base_url, stats = sim()
    cache = GenerationCache(tmp_path / "cache.duckdb")
    requests = _requests(12)
    first = _backend(base_url, cache=cache).generate(requests)
    sent = stats.snapshot()["requests"]
    second = _backend(base_url, cache=GenerationCache(tmp_path / "cache.duckdb")).generate(requests)
    assert stats.snapshot()["requests"] == sent == 12
    assert second.stats["requests"] == 0 and second.stats["cache_hits"] == 12
    assert second.pairs == first.pairs and not second.failures
    # another model, other sampling or another pair count is another key
    third = _backend(base_url, cache=cache, temperature=0.1).generate(requests[:2])
    assert third.stats["requests"] == 2 and third.stats["cache_hits"] == 0


def test_a_cached_reply_the_parser_rejects_is_asked_again(sim: Server, tmp_path: Path) -> None:
    base_url, stats = sim()
    cache = GenerationCache(tmp_path / "cache.duckdb")
    requests = _requests(3)
    backend = _backend(base_url, cache=cache)
    backend.generate(requests)
    key = backend.cache_key_for(requests[1])
    cache.put(key, model="sim-model", prompt_version=PROMPT_VERSION, reply="I cannot answer that")

    again = _backend(base_url, cache=cache).generate(requests)
    assert again.stats["cache_hits"] == 2 and again.stats["requests"] == 1
    assert stats.snapshot()["requests"] == 3 + 1
    assert _generated(again) == {"doc#0", "doc#1", "doc#2"} and not again.failures
    assert _backend(base_url, cache=cache).generate(requests).stats["cache_hits"] == 3  # replaced


def test_a_resumed_run_sends_only_what_is_missing(sim: Server, tmp_path: Path) -> None:
    base_url, stats = sim()
    cache = GenerationCache(tmp_path / "cache.duckdb")
    requests = _requests(20)
    _backend(base_url, cache=cache).generate(requests[:10])  # the run that "crashed" halfway
    resumed = _backend(base_url, cache=cache).generate(requests)
    assert resumed.stats["cache_hits"] == 10 and resumed.stats["requests"] == 10
    assert len(_generated(resumed)) == 20
    assert set(stats.snapshot()["documents"].values()) == {1}  # no chunk sent twice


def test_a_killed_run_loses_nothing_it_had_committed(sim: Server, tmp_path: Path) -> None:
    """SIGKILL a generating process midway; the rerun sends no chunk whose reply was
    committed before the kill."""
    base_url, stats = sim(slots=4, ttft=0.1)
    cache_path = tmp_path / "cache.duckdb"
    n = 40
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_openai_backend import _backend, _requests
        from synth_assets.generation.cache import GenerationCache
        _backend({base_url!r}, max_concurrency=4,
                 cache=GenerationCache({str(cache_path)!r})).generate(_requests({n}))
        """)
    process = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 20
        while stats.snapshot()["sequences"] < 12:  # about a third of the run
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.15)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    requests = _requests(n)
    cache = GenerationCache(cache_path)
    keys = {r.chunk_id: _backend(base_url).cache_key_for(r) for r in requests}
    committed = {cid for cid, key in keys.items() if key in cache.get_many(list(keys.values()))}
    assert 8 <= len(committed) < n  # the kill came mid-run, after some commits
    before = stats.snapshot()["documents"]

    resumed = _backend(base_url, cache=cache).generate(requests)
    assert resumed.stats["cache_hits"] == len(committed)
    assert resumed.stats["requests"] == n - len(committed)
    assert len(_generated(resumed)) == n and not resumed.failures
    after = stats.snapshot()["documents"]
    for request in requests:
        digest = document_hash(request.text.strip())  # what the server saw in the block
        if request.chunk_id in committed:
            assert after[digest] == before[digest]  # not sent again


def test_the_api_key_is_sent_but_never_reported(sim: Server, tmp_path: Path, monkeypatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    # The server needs the key (so it is sent) and echoes it in its 500 bodies.
    base_url, stats = sim(api_key=SECRET, echo_auth_in_errors=True, fail_500=0.5,
                          malformed_marker="@@BROKEN@@")
    log = logging.getLogger("test-openai-backend")
    caplog.set_level(logging.DEBUG)
    backend = _backend(base_url, max_attempts=2, log=log, progress_every_s=0.0,
                       cache=GenerationCache(tmp_path / "cache.duckdb"))
    outcome = backend.generate(_requests(12, marker="@@BROKEN@@", marked={0, 1}))
    assert stats.snapshot()["authorization_ok"] == outcome.stats["requests"] > 0
    assert outcome.failures and len(outcome.pairs) > 0
    assert any("request had Authorization: Bearer ***" in f.error for f in outcome.failures)
    reported = [str(outcome.stats), repr(backend), str(vars(backend)),
                *(f.error for f in outcome.failures), *(r.getMessage() for r in caplog.records)]
    assert len(caplog.records) >= 2
    assert not [text for text in reported if SECRET in text]


def test_a_wrong_key_stops_the_run_with_every_chunk_recorded(sim: Server, monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    base_url, stats = sim(api_key="the-right-key", echo_auth_in_errors=True)
    log = Recorder()
    outcome = _backend(base_url, max_concurrency=2, log=log).generate(_requests(10))
    assert len(outcome.failures) == 10 and not outcome.pairs
    assert stats.snapshot()["requests"] <= 2  # the rest were not sent
    assert all("HTTP 401" in f.error for f in outcome.failures)
    assert not [f for f in outcome.failures if SECRET in f.error]
    assert not [line for _, line in log.lines if SECRET in line]
    assert any(level == "warning" and "stopping" in line for level, line in log.lines)


def test_json_schema_is_asked_for_when_the_server_takes_it(sim: Server) -> None:
    base_url, stats = sim()
    outcome = _backend(base_url).generate(_requests(5))
    assert stats.snapshot()["with_response_format"] == 5 and outcome.stats["json_schema"] == 1


def test_json_schema_fallback_when_the_server_refuses_it(sim: Server) -> None:
    base_url, stats = sim(reject_response_format=True)
    log = Recorder()
    backend = _backend(base_url, max_concurrency=1, log=log)
    outcome = backend.generate(_requests(6))
    assert len(_generated(outcome)) == 6 and not outcome.failures
    assert backend.use_json_schema is False and outcome.stats["json_schema"] == 0
    snapshot = stats.snapshot()
    assert snapshot["outcomes"]["rejected_response_format"] == 1 and snapshot["requests"] == 7
    warnings = [line for level, line in log.lines if level == "warning"]
    assert len(warnings) == 1 and "response_format" in warnings[0]


def test_progress_lines_go_to_the_log(sim: Server) -> None:
    base_url, _ = sim()
    log = Recorder()
    _backend(base_url, log=log, progress_every_s=0.0).generate(_requests(6))
    lines = [line for level, line in log.lines if level == "info"]
    assert any("pairs/s" in line and "/6 chunks" in line for line in lines)
    assert lines[-1].startswith("generated 6/6 chunks")


def test_generate_works_inside_a_running_event_loop(sim: Server) -> None:
    base_url, _ = sim()
    backend = _backend(base_url)

    async def in_loop():
        return backend.generate(_requests(3))

    outcome = asyncio.run(in_loop())
    assert len(_generated(outcome)) == 3


def test_backoff_uses_full_jitter_and_honours_retry_after() -> None:
    backend = OpenAIBackend(base_url="http://127.0.0.1:9/v1", model="m", backoff_base_s=0.5,
                            backoff_max_s=4.0)
    for attempt, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)):
        delays = [backend._backoff(attempt, None) for _ in range(200)]
        assert 0 <= min(delays) and max(delays) <= ceiling and max(delays) > ceiling / 2
    assert backend._backoff(1, 3.0) == 3.0 and backend._backoff(1, 60.0) == 4.0


def test_an_unreachable_server_fails_every_chunk_after_its_attempts() -> None:
    backend = OpenAIBackend(base_url="http://127.0.0.1:9/v1", model="m", max_attempts=2,
                            backoff_base_s=0.0, timeout_s=1.0)
    outcome = backend.generate(_requests(3))
    assert [f.attempts for f in outcome.failures] == [2, 2, 2]
    assert all("connection error" in f.error for f in outcome.failures)
    assert outcome.stats["requests"] == 6 and outcome.stats["retries"] == 3


def test_no_requests_no_work() -> None:
    outcome = OpenAIBackend(base_url="http://127.0.0.1:9/v1", model="m").generate([])
    assert outcome.pairs == [] and outcome.failures == [] and outcome.stats["requests"] == 0


def test_provenance_attributes() -> None:
    backend = OpenAIBackend(base_url="http://127.0.0.1:9/v1", model="m")
    assert (backend.generator, backend.model, backend.prompt_version) == ("openai", "m", PROMPT_VERSION)
    assert os.environ.get(KEY_ENV) is None or SECRET not in repr(backend)


def _judge_requests() -> list:
    from synth_assets.generation.base import JudgeRequest

    chunk = "Ducks are birds that swim well in lakes and rivers. They eat plants, seeds and insects."
    return [
        JudgeRequest("p-grounded", "What do ducks eat?", "They eat plants, seeds and insects.", chunk),
        JudgeRequest("p-made-up", "Where do ducks nest?", "Ducks nest on the roofs of city buildings.", chunk),
        JudgeRequest("p-also-grounded", "Where do ducks swim?", "Ducks are birds that swim well in lakes and rivers.", chunk),
    ]


def test_the_llm_judge_scores_pairs_with_retries_and_the_cache(sim: Server, tmp_path: Path) -> None:
    base_url, stats = sim(fail_500=0.3, malformed=0.2, fault_seed=4)  # a seed whose draws hit these requests
    cache = GenerationCache(tmp_path / "cache.duckdb")
    outcome = _backend(base_url, cache=cache, max_attempts=12).judge(_judge_requests())

    assert not outcome.failures
    assert {pid: score for pid, (score, _) in outcome.scores.items()} == {
        "p-grounded": 9, "p-made-up": 2, "p-also-grounded": 9}
    assert "does not support" in outcome.scores["p-made-up"][1]
    assert outcome.stats["judge_retries"] > 0  # the faults were met and survived

    sent = stats.snapshot()["requests"]
    again = _backend(base_url, cache=cache).judge(_judge_requests())
    assert stats.snapshot()["requests"] == sent and again.stats["judge_cache_hits"] == 3
    assert again.scores == outcome.scores


def test_a_judge_that_never_replies_with_a_score_leaves_the_pair_unjudged(sim: Server) -> None:
    base_url, _ = sim(malformed=1.0)
    outcome = _backend(base_url, max_attempts=2).judge(_judge_requests()[:1])
    assert outcome.scores == {}
    assert "unparseable reply" in outcome.failures["p-grounded"]


def test_a_judge_retry_is_not_the_same_greedy_request_again(sim: Server) -> None:
    from synth_assets.generation.base import JudgeRequest

    # The server's greedy reply to this pair does not parse, whatever the seed: only a
    # retry that samples can get another one.
    base_url, stats = sim(greedy_marker="@@GREEDY@@")
    request = JudgeRequest("p", "What do ducks eat?", "Ducks eat plants.", "Ducks eat plants. @@GREEDY@@")
    outcome = _backend(base_url, max_attempts=3).judge([request])
    assert outcome.scores["p"][0] == 9 and not outcome.failures
    assert outcome.stats["judge_retries"] == 1 and stats.snapshot()["outcomes"] == {"malformed": 1, "ok": 1}


def test_pairs_are_judged_while_the_other_chunks_are_generated(sim: Server, tmp_path: Path) -> None:
    from synth_assets.generation.base import JudgeRequest

    base_url, stats = sim(slots=4)
    backend = _backend(base_url, max_concurrency=4, cache=GenerationCache(tmp_path / "cache.duckdb"))
    events: list[str] = []
    judge = backend.judge

    def recording_judge(requests):
        events.append(f"judge {len(requests)}")
        return judge(requests)

    backend.judge = recording_judge

    def judge_requests_for(request, pairs):
        events.append(f"pairs of {request.chunk_id}")
        return [JudgeRequest(f"{request.chunk_id}#q{i}", p.question, p.answer, request.text)
                for i, p in enumerate(pairs, 1)]

    outcome, judged = backend.generate_and_judge(_requests(40), judge_requests_for)
    assert len(_generated(outcome)) == 40 and not outcome.failures
    # The first judge call went out before the last chunk's pairs arrived, and every
    # pair was judged (the simulated judge gives 9 to an answer found in its chunk).
    first_judge = next(i for i, event in enumerate(events) if event.startswith("judge"))
    assert first_judge < max(i for i, event in enumerate(events) if event.startswith("pairs of"))
    assert sum(int(event.split()[1]) for event in events if event.startswith("judge")) == 120
    assert len(judged.scores) == 120 and {score for score, _ in judged.scores.values()} == {9}
    # The judgements are in the cache, where the curate step will find them.
    again = _backend(base_url, cache=GenerationCache(tmp_path / "cache.duckdb")).judge(
        [JudgeRequest(f"x{i}", q, a, c) for i, (q, a, c) in enumerate(
            (p.question, p.answer, next(r.text for r in _requests(40) if r.chunk_id == p.chunk_id))
            for p in outcome.pairs)])
    assert again.stats["judge_requests"] == 0 and len(again.scores) == 120


def test_one_cache_file_is_shared_by_two_threads(tmp_path: Path) -> None:
    # Generation and the judge beside it use one cache from two threads; DuckDB refuses
    # a file attached twice at the same moment ("Unique file handle conflict").
    import threading

    from synth_assets.generation.cache import CacheEntry

    cache = GenerationCache(tmp_path / "cache.duckdb")
    errors: list[Exception] = []

    def write(prefix: str) -> None:
        try:
            for i in range(40):
                cache.put_many([CacheEntry(f"{prefix}{i}", "m", "v", "reply")])
                cache.get_many([f"{prefix}{i}"])
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(prefix,)) for prefix in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and cache.count() == 80


def test_usage_is_recorded_per_request_per_server_and_from_the_cache(sim: Server, tmp_path: Path) -> None:
    first_url, _ = sim()
    second_url, _ = sim()
    cache = GenerationCache(tmp_path / "cache.duckdb")
    requests = _requests(12)
    outcome = _backend(first_url, base_urls=[first_url, second_url], cache=cache).generate(requests)
    per_server = outcome.usage_by_server
    assert set(per_server) == {first_url, second_url}  # both servers answered, each counted
    assert sum(replies for replies, _, _ in per_server.values()) == 12
    # the simulated server's usage: 50 completion tokens per reply, prompt = 1.3 x words
    assert all(completion == 50 * replies for replies, _, completion in per_server.values())
    assert sum(p for _, p, _ in per_server.values()) == sum(p for _, p, _ in outcome.usage.values()) > 0
    assert not outcome.usage_counted and outcome.usage_tokenizer is None
    again = _backend(first_url, cache=GenerationCache(tmp_path / "cache.duckdb")).generate(requests)
    assert not again.usage and not again.usage_by_server  # nothing was asked this time
    # but each cached reply still says what it cost when it was asked
    assert again.usage_cached == {key: (1, *counts[1:]) for key, counts in outcome.usage.items()}


def test_a_server_without_usage_is_counted_with_the_tokenizer(sim: Server) -> None:
    from synth_assets.core.chunking import FALLBACK_TOKENIZER_NAME, load_tokenizer

    base_url, _ = sim(no_usage=True)
    requests = _requests(4)
    outcome = _backend(base_url).generate(requests)
    assert outcome.usage_counted == {request.request_id: 1 for request in requests}
    assert outcome.usage_tokenizer == FALLBACK_TOKENIZER_NAME  # no model tokenizer is local here
    tokenizer, _ = load_tokenizer(None)
    for request in requests:
        replies, prompt_tokens, completion_tokens = outcome.usage[request.request_id]
        # the prompt holds the chunk's text, so it has more tokens than the chunk alone
        assert replies == 1 and prompt_tokens > len(tokenizer.encode(request.text, add_special_tokens=False))
        assert completion_tokens > 20  # a JSON reply of three pairs, not the 0 of "no usage"


def test_the_judges_requests_while_generating_are_counted_per_document_as_the_task_judge(
        sim: Server, tmp_path: Path) -> None:
    from synth_assets.assets.generate import usage_per_document
    from synth_assets.generation.base import JudgeRequest
    from synth_assets.generation.model_backend import add_usage

    base_url, stats = sim()
    backend = _backend(base_url, cache=GenerationCache(tmp_path / "cache.duckdb"))
    requests = _requests(6)

    def judge_requests_for(request, pairs):  # pair ids as generated_qa_pairs makes them
        return [JudgeRequest(f"{request.request_id}#q{i:02d}", p.question, p.answer, request.text)
                for i, p in enumerate(pairs, 1)]

    outcome, judged = backend.generate_and_judge(requests, judge_requests_for)
    assert len(judged.usage) == len(judged.scores) == 18  # 3 pairs per chunk, each judged once
    add_usage(outcome, judged)
    usage = usage_per_document(requests, outcome.usage)["doc"]
    sent = stats.snapshot()
    assert usage["qa"]["requests"] == 6 and usage["judge"]["requests"] == 18 == sent["requests"] - 6
    assert (usage["qa"]["prompt_tokens"] + usage["judge"]["prompt_tokens"] == sent["prompt_tokens"]
            and usage["judge"]["completion_tokens"] == 18 * 50)
    assert outcome.usage_by_server == {base_url: (24, sent["prompt_tokens"], sent["completion_tokens"])}
