"""The tasks beyond qa against the simulated server (issue 26): a small end-to-end run
of benchmarks/bench_tasks.py (b), with the server's mistakes on and the judge on.

Every item the server planted a mistake in is rejected by curation with the reason code
meant for that mistake; good items of every task are kept; no kept multi-hop item is
answerable from one of its excerpts alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import sim_server  # noqa: E402
from benchmarks.bench_tasks import copies_of, end_to_end, simple_corpus  # noqa: E402

MISTAKES = ("invented_sentence", "ignored_follow_up", "single_chunk_hop", "answerable_unanswerable",
            "unsupported_step", "bad_quote")


@pytest.fixture(scope="module")
def run():
    documents = copies_of(simple_corpus(), 6)
    url, stats, stop = sim_server.start_server_in_thread(
        slots=32, ttft=0.005, tpot=0.0001, **{name: 0.25 for name in MISTAKES})
    try:
        yield end_to_end(documents, url, stats.snapshot, slots=32)
    finally:
        stop()


def test_every_planted_mistake_is_rejected_with_its_reason_code(run):
    planted = run["planted_mistakes"]
    # each (task, mistake) pair the server knows was planted at least once
    assert set(planted) == {f"{task}: {kind}" for task, kind in sim_server.MISTAKE_REASONS}, planted
    for name, row in planted.items():
        assert row["rejected_with_code"] == row["planted"], (name, row, run["missed_mistakes"])


def test_ignored_follow_ups_are_rejected_as_unrelated_follow_up(run):
    items = run["_items"]
    title_of = {item["pair_id"]: item["title"] for item in items}
    snapshot_planted = {key for key, kind in run["_planted"].items() if kind == "ignored_follow_up"}
    ignored = [item for item in items if item["task"] == "conversation" and sim_server.planted_key(
        title_of[item["pair_id"]], "conversation", item["question"], item["answer"]) in snapshot_planted]
    assert ignored
    assert all("unrelated_follow_up" in item["reject_reasons"] for item in ignored)


def test_good_items_of_every_task_are_kept(run):
    for task in ("qa", "reasoning", "multi_hop", "conversation", "unanswerable"):
        assert run["per_task"][task]["kept"] > 0, (task, run["per_task"][task])
    assert run["generation_failures"] == 0


def test_no_kept_multi_hop_item_is_answerable_from_one_excerpt(run):
    assert run["kept_multi_hop"] > 0
    assert run["kept_multi_hop_one_excerpt"] == 0


def test_sim_judge_follows_the_task_rubrics():
    from synth_assets.core.judge import build_judge_messages

    one, two = "Ducks are birds that live near the water all year.", "Geese fly south in the winter every year."
    hop = build_judge_messages("How are ducks and geese linked?", f"{one} {one}", "", "multi_hop",
                               (f"{one} More text here.", f"{two} Other text."))
    assert sim_server.judge_reply(hop[1]["content"])["score"] == 2  # one excerpt alone answers it
    hop = build_judge_messages("How are ducks and geese linked?", f"{one} {two}", "", "multi_hop",
                               (f"{one} More text here.", f"{two} Other text."))
    assert sim_server.judge_reply(hop[1]["content"])["score"] == 9
    unanswerable = build_judge_messages("Where do ducks live all year?", f"The documents do not say that. "
                                        f"What they say about ducks: {one}", one, "unanswerable")
    assert sim_server.judge_reply(unanswerable[1]["content"])["score"] == 2  # the source answers it
    unanswerable = build_judge_messages("Who funded the Duck Museum?", f"The documents do not say who funded "
                                        f"the Duck Museum. What they say about ducks: {one}", one, "unanswerable")
    assert sim_server.judge_reply(unanswerable[1]["content"])["score"] == 9
    qa = build_judge_messages("Where do ducks live?", one, one)
    assert sim_server.judge_reply(qa[1]["content"])["score"] == 9
