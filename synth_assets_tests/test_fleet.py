"""The openai backend over a fleet of simulated servers (benchmarks/sim_server.py) on
127.0.0.1: requests spread by requests in flight, a server that dies mid-run has its
chunks finished by the others with none answered twice, a server that comes back is
used again, and the fleet setting from the environment."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from benchmarks.sim_server import SimStats, _free_port, start_server_in_thread
from synth_assets.generation.openai_backend import OpenAIBackend
from synth_assets.settings import Settings
from synth_assets_tests.test_openai_backend import Recorder, _backend, _generated, _requests

SLOW = {"ttft": 0.05, "tpot": 0.0, "output_tokens": 50}
Server = Callable[..., tuple[str, SimStats, Callable[[], None]]]


@pytest.fixture
def sim() -> Iterator[Server]:
    """Start simulated servers in threads; every one is stopped after the test."""
    stops = []

    def start(**options) -> tuple[str, SimStats, Callable[[], None]]:
        base_url, stats, stop = start_server_in_thread(**{**SLOW, **options})
        stops.append(stop)
        return base_url, stats, stop

    yield start
    for stop in stops:
        stop()


def _answered(*stats: SimStats) -> Counter[str]:
    """Usable replies per chunk text, summed over the servers' logs."""
    total: Counter[str] = Counter()
    for one in stats:
        total.update(one.snapshot()["answered"])
    return total


def test_requests_are_spread_over_two_servers(sim: Server) -> None:
    (url_a, stats_a, _), (url_b, stats_b, _) = sim(), sim()
    outcome = _backend(url_a, base_urls=[url_a, url_b], max_concurrency=4).generate(_requests(40))
    assert _generated(outcome) == {f"doc#{i}" for i in range(40)} and not outcome.failures
    a, b = stats_a.snapshot(), stats_b.snapshot()
    assert a["requests"] + b["requests"] == 40
    assert a["requests"] >= 10 and b["requests"] >= 10  # fewest in flight: about half each
    # max_concurrency is per server: each server had up to 4 at once, never more
    assert 1 < a["peak_in_flight"] <= 4 and 1 < b["peak_in_flight"] <= 4
    assert outcome.stats["servers"] == 2 and outcome.stats["servers_taken_out"] == 0
    assert sorted(_answered(stats_a, stats_b).values()) == [1] * 40


def test_a_dead_servers_chunks_complete_on_the_other_none_twice(sim: Server) -> None:
    (url_a, stats_a, stop_a), (url_b, stats_b, _) = sim(), sim()
    log = Recorder()
    arrived = []

    def on_pairs(chunk_id, pairs) -> None:
        arrived.append(chunk_id)
        if len(arrived) == 10:  # a quarter of the way: server A dies with requests in flight
            stop_a()

    backend = _backend(url_a, base_urls=[url_a, url_b], max_concurrency=4, health_interval_s=0.05,
                       log=log)
    outcome = backend.generate(_requests(40), on_pairs=on_pairs)
    assert _generated(outcome) == {f"doc#{i}" for i in range(40)} and not outcome.failures
    assert sorted(arrived) == sorted(f"doc#{i}" for i in range(40))
    answered_a, answered_b = _answered(stats_a), _answered(stats_b)
    assert sorted((answered_a + answered_b).values()) == [1] * 40  # every chunk once, across both
    assert answered_b.total() == 40 - answered_a.total() >= 40 - 10 - 4
    # The requests A had in flight failed over to B without spending an attempt.
    assert outcome.stats["servers_taken_out"] == 1 and outcome.stats["failovers"] >= 1
    assert outcome.stats["retries"] == 0
    assert any(level == "warning" and f"{url_a} stopped answering" in line for level, line in log.lines)


def test_a_recovered_server_is_used_again(sim: Server) -> None:
    port = _free_port()
    url_a = f"http://127.0.0.1:{port}/v1"  # nothing listens there yet: down from the start
    url_b, stats_b, _ = sim()
    log = Recorder()
    revived: list[SimStats] = []
    arrived = []

    def on_pairs(chunk_id, pairs) -> None:
        arrived.append(chunk_id)
        if len(arrived) == 10:
            revived.append(sim(port=port)[1])

    backend = _backend(url_a, base_urls=[url_a, url_b], max_concurrency=4, health_interval_s=0.05,
                       log=log)
    outcome = backend.generate(_requests(60), on_pairs=on_pairs)
    assert _generated(outcome) == {f"doc#{i}" for i in range(60)} and not outcome.failures
    assert revived[0].snapshot()["requests"] > 0  # taken back, and sent to
    assert sorted(_answered(revived[0], stats_b).values()) == [1] * 60
    assert outcome.stats["servers_taken_out"] == 1
    assert (("info", f"{url_a} answers again: taken back") in log.lines)


def test_every_server_down_ends_with_each_chunk_failed_after_its_attempts() -> None:
    dead = [f"http://127.0.0.1:{_free_port()}/v1" for _ in range(2)]
    backend = OpenAIBackend(base_urls=dead, model="m", max_attempts=2, backoff_base_s=0.0,
                            timeout_s=1.0, health_interval_s=0.05)
    outcome = backend.generate(_requests(3))
    assert [f.attempts for f in outcome.failures] == [2, 2, 2] and not outcome.pairs
    assert all("connection error" in f.error for f in outcome.failures)


def test_base_urls_are_checked() -> None:
    with pytest.raises(ValueError, match="at least one base URL"):
        OpenAIBackend(model="m")
    with pytest.raises(ValueError, match="appears twice"):
        OpenAIBackend(base_urls=["http://a/v1", "http://a/v1/"], model="m")
    assert OpenAIBackend(base_url="http://a/v1/", model="m").base_urls == ("http://a/v1",)


def test_the_fleet_comes_from_a_comma_separated_variable() -> None:
    settings = Settings.from_env({"SYNTH_ASSETS_GENERATION_BACKEND": "openai", "SYNTH_ASSETS_MODEL": "m",
                                  "SYNTH_ASSETS_OPENAI_BASE_URLS": " http://a:1/v1, http://b:2/v1 ,"})
    generation = settings.resources["generation"]
    assert generation.base_urls == ["http://a:1/v1", "http://b:2/v1"]
    assert generation.create_backend().base_urls == ("http://a:1/v1", "http://b:2/v1")
    single = Settings.from_env({"SYNTH_ASSETS_GENERATION_BACKEND": "openai", "SYNTH_ASSETS_MODEL": "m",
                                "SYNTH_ASSETS_OPENAI_BASE_URL": "http://router:4000/v1"})
    assert single.resources["generation"].create_backend().base_urls == ("http://router:4000/v1",)


def test_with_two_of_three_servers_dead_the_survivor_holds_at_most_its_bound(sim: Server) -> None:
    dead = [f"http://127.0.0.1:{_free_port()}/v1" for _ in range(2)]
    url, stats, _ = sim()
    backend = _backend(url, base_urls=[*dead, url], max_concurrency=8, health_interval_s=60)
    outcome = backend.generate(_requests(60))
    assert _generated(outcome) == {f"doc#{i}" for i in range(60)} and not outcome.failures
    # The 24 workers of three servers wait for the survivor's 8, never 24 at once.
    assert stats.snapshot()["peak_in_flight"] == 8
    assert outcome.stats["servers_taken_out"] == 2


def test_a_slow_server_is_not_taken_out(sim: Server) -> None:
    (url_a, stats_a, _), (url_b, _, _) = sim(stall=0.5, stall_s=2.0), sim()
    log = Recorder()
    backend = _backend(url_a, base_urls=[url_a, url_b], max_concurrency=4, timeout_s=0.5,
                       health_interval_s=0.05, max_attempts=8, log=log)
    outcome = backend.generate(_requests(30))
    assert _generated(outcome) == {f"doc#{i}" for i in range(30)} and not outcome.failures
    assert stats_a.snapshot()["outcomes"]["stall"] > 0
    # Timeouts are retried as slow replies: the server stays in, no warning, no flapping.
    assert outcome.stats["servers_taken_out"] == 0
    assert not [line for level, line in log.lines if level == "warning"]
    assert outcome.stats["retries"] == stats_a.snapshot()["outcomes"]["stall"]


def test_a_failover_is_not_an_attempt(sim: Server) -> None:
    # Server A computes every reply and drops the connection while sending it.
    (url_a, stats_a, _), (url_b, stats_b, _) = sim(answer_drop=1.0), sim()
    backend = _backend(url_a, base_urls=[url_a, url_b], max_concurrency=4, max_attempts=1,
                       health_interval_s=60)
    outcome = backend.generate(_requests(20))
    # One attempt each, yet no chunk fails: the requests A cut off went to B for free.
    assert _generated(outcome) == {f"doc#{i}" for i in range(20)} and not outcome.failures
    cut = stats_a.snapshot()["outcomes"]["answer_drop"]
    assert cut >= 1 and outcome.stats["failovers"] == cut and outcome.stats["retries"] == 0
    assert outcome.stats["servers_taken_out"] == 1
    assert sorted(_answered(stats_b).values()) == [1] * 20
