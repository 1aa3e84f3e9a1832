"""Planning (synth_assets/planning.py): which documents need which assets, grouped into
which runs. The deciding functions are pure and tested here directly; `make run`, the
sensor and the catch-up that launch their plans are tested in test_incremental.py and
test_single_run.py."""

import contextlib
import json
import os
import time
from pathlib import Path

import dagster as dg
import pytest

from synth_assets import planning
from synth_assets.core.incremental import folder_state
from synth_assets.dagster_internals import read_instance_value
from synth_assets.planning import (
    UP_TO_DATE,
    WHOLE,
    PlannedRun,
    Work,
    changed_documents,
    documents_needing_work,
    documents_to_run_alone,
    drop_removed,
    parse_single_run_min_documents,
    plan_runs,
    range_tags,
    remember_up_to_date,
    removed_documents,
)

from synth_assets_tests.test_dagster_internals import TINY, downstream, materialize, upstream

ORDER = ["a", "b", "c", "d", "e", "f", "g"]
X, Y = dg.AssetKey("x"), dg.AssetKey("y")


def runs(plan: list[PlannedRun]) -> list[tuple]:
    """Each run as (documents, selection, single run?), documents joined: "abc"."""
    return [("".join(run.documents), run.assets, run.single_run) for run in plan]


# -- what a document needs ---------------------------------------------------------


def test_work_says_whole_some_assets_or_nothing() -> None:
    assert Work.of_assets([]) == UP_TO_DATE and not UP_TO_DATE.needed
    assert WHOLE.needed and WHOLE.selection is None
    stale = Work.of_assets([X, Y])
    assert stale.needed and stale.selection == (X, Y) and stale != WHOLE


# -- grouping into runs ------------------------------------------------------------


def test_only_neighbours_share_a_run() -> None:
    work = {key: WHOLE for key in "abcefg"} | {"d": UP_TO_DATE}
    # d is up to date: a..c and e..g are two ranges, not one a..g
    assert runs(plan_runs(work, ORDER, 3)) == [("abc", None, True), ("efg", None, True)]
    assert plan_runs(work, ORDER, 3)[0].tags == range_tags("a", "c")


def test_blocks_below_the_minimum_run_one_document_each() -> None:
    work = {key: WHOLE for key in "abcef"}
    # a..c is exactly the minimum; e..f is one short of it
    assert runs(plan_runs(work, ORDER, 3)) == [
        ("abc", None, True), ("e", None, False), ("f", None, False)]
    assert runs(plan_runs(work, ORDER, 4)) == [(key, None, False) for key in "abcef"]
    # a minimum below 2 still never makes a range of one document
    assert all(not run.single_run for run in plan_runs({"a": WHOLE, "c": WHOLE}, ORDER, 1))


def test_documents_needing_different_assets_do_not_share_a_run() -> None:
    stale_x, stale_xy = Work.of_assets([X]), Work.of_assets([X, Y])
    work = {"a": stale_x, "b": stale_x, "c": stale_xy, "d": stale_xy, "e": stale_x, "f": WHOLE, "g": WHOLE}
    assert runs(plan_runs(work, ORDER, 2)) == [
        ("ab", (X,), True), ("cd", (X, Y), True), ("e", (X,), False), ("fg", None, True)]
    # interleaved selections: no two neighbours need the same assets, so no range at all
    interleaved = {"a": stale_x, "b": stale_xy, "c": stale_x, "d": stale_xy}
    assert runs(plan_runs(interleaved, ORDER, 2)) == [
        ("a", (X,), False), ("b", (X, Y), False), ("c", (X,), False), ("d", (X, Y), False)]


def test_the_partition_order_decides_neighbours_not_the_names() -> None:
    order = ["c", "a", "b"]  # registered in that order
    assert runs(plan_runs({"a": WHOLE, "c": WHOLE}, order, 2)) == [("ca", None, True)]
    assert runs(plan_runs({"b": WHOLE, "c": WHOLE}, order, 2)) == [("c", None, False), ("b", None, False)]
    assert plan_runs({key: UP_TO_DATE for key in order}, order, 2) == []


def test_a_planned_run_becomes_the_request_the_daemon_launches() -> None:
    one = PlannedRun(("b",), (X,)).request(run_key="k1", trigger="catch-up")
    assert (one.partition_key, one.asset_selection, one.run_key) == ("b", [X], "k1")
    assert one.tags == {"synth_assets/trigger": "catch-up"}
    many = PlannedRun(("a", "b", "c"), None, single_run=True).request(run_key="k2", trigger="added")
    assert many.partition_key is None and many.asset_selection is None
    assert many.tags == {"synth_assets/trigger": "added", **range_tags("a", "c")}


def test_a_document_that_failed_inside_a_run_over_many_runs_again_alone() -> None:
    failed = {"b": "b: not a PDF"}
    assert documents_to_run_alone(range_tags("a", "c"), failed) == ["b"]
    assert documents_to_run_alone({"dagster/partition": "b"}, failed) == []  # it failed on its own already
    assert documents_to_run_alone(range_tags("a", "c"), {}) == []


def test_the_minimum_is_a_whole_number_of_at_least_two() -> None:
    assert parse_single_run_min_documents("10") == 10
    with pytest.raises(ValueError, match="SYNTH_ASSETS_SINGLE_RUN_MIN_DOCUMENTS='ten' is not a whole number"):
        parse_single_run_min_documents("ten")
    with pytest.raises(ValueError, match="at least 2"):
        parse_single_run_min_documents("1")


@pytest.mark.parametrize("backend", ["vllm", "vllm_serve", "openai"])
def test_with_a_model_backend_every_neighbour_needing_work_shares_one_run(backend) -> None:
    from synth_assets.settings import Settings

    model = {"SYNTH_ASSETS_GENERATION_BACKEND": backend, "SYNTH_ASSETS_MODEL": "m"}
    threshold = Settings.from_env(model).single_run_min_documents
    work = {"a": planning.WHOLE, "b": planning.WHOLE, "c": planning.WHOLE}
    assert [run.documents for run in plan_runs(work, ["a", "b", "c"], threshold)] == [("a", "b", "c")]
    # The model-free backend keeps a run per document below 10; a set variable wins.
    assert Settings.from_env({}).single_run_min_documents == 10
    assert Settings.from_env({**model, "SYNTH_ASSETS_SINGLE_RUN_MIN_DOCUMENTS": "5"}).single_run_min_documents == 5


# -- the folder: changed and removed files ----------------------------------------


def test_changed_documents_are_new_files_or_new_content(tmp_path: Path) -> None:
    same, edited, new = tmp_path / "same.md", tmp_path / "edited.md", tmp_path / "new.md"
    for path in (same, edited, new):
        path.write_text(f"# {path.stem}", encoding="utf-8")
    files = {path.name: path for path in (same, edited, new)}
    stored = {name: {"sha256": state["sha256"], "size": state["size"], "mtime_ns": None}
              for name, state in folder_state(files).items() if name != "new.md"}
    os.utime(same, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched, same bytes
    edited.write_text("# edited, again", encoding="utf-8")
    assert changed_documents(files, stored) == ["edited.md", "new.md"]


class FakeDatabase:
    @contextlib.contextmanager
    def get_connection(self):
        yield "connection"


def test_removed_documents_are_dropped_only_when_asked(monkeypatch) -> None:
    deleted = []
    monkeypatch.setattr(planning, "delete_document", lambda con, key: deleted.append(key))
    removed = removed_documents(["b", "a", "c"], ["c", "d"])
    assert removed == ["a", "b"]  # registered, file gone; d is new, not removed
    assert drop_removed(FakeDatabase(), removed, "keep") == [] and deleted == []
    assert drop_removed(FakeDatabase(), removed, "drop") == ["a", "b"] and deleted == ["a", "b"]
    assert drop_removed(FakeDatabase(), [], "drop") == []


# -- the look at Dagster's records, and remembering it -----------------------------


def test_looking_writes_nothing_and_remembering_makes_the_next_look_quick(monkeypatch) -> None:
    with dg.instance_for_test() as instance:
        # Inside the instance: Dagster reads definitions state from the current one, and
        # an earlier test's instance may be gone (its weakref fails).
        graph = TINY.resolve_asset_graph()
        materialize(instance, "done")
        instance.add_dynamic_partitions("documents", ["new", "changed file"])
        found = documents_needing_work(instance, graph, ["done", "new", "changed file"], whole=["changed file"])
        assert found.work == {"done": UP_TO_DATE, "new": Work.of_assets([upstream.key, downstream.key]),
                              "changed file": WHOLE}
        assert list(found.up_to_date) == ["done"]
        assert read_instance_value(instance, planning.UP_TO_DATE_DOCUMENTS_KEY) is None

        remember_up_to_date(instance, found)
        stored = json.loads(read_instance_value(instance, planning.UP_TO_DATE_DOCUMENTS_KEY))
        assert stored == {"definitions": found.definitions, "documents": found.up_to_date}

        asked = []
        real = planning.assets_needing_work
        monkeypatch.setattr(planning, "assets_needing_work",
                            lambda instance_, graph_, key, resolver=None: asked.append(key) or real(
                                instance_, graph_, key, resolver))
        again = documents_needing_work(instance, graph, ["done", "new"])
        assert again.work == {"done": UP_TO_DATE, "new": found.work["new"]} and asked == ["new"]

        materialize(instance, "done")  # a new materialization: looked at again
        asked.clear()
        documents_needing_work(instance, graph, ["done"])
        assert asked == ["done"]


def test_what_a_run_completed_is_remembered_without_asking_dagster_and_the_rest_is_asked(monkeypatch) -> None:
    with dg.instance_for_test() as instance:
        graph = TINY.resolve_asset_graph()
        for key in ("completed", "blocked"):
            materialize(instance, key)  # blocked inside a batch: its later assets "skipped", still materialised
        instance.add_dynamic_partitions("documents", ["failed"])
        TINY.resolve_implicit_global_asset_job_def().execute_in_process(  # failed before downstream
            instance=instance, partition_key="failed", asset_selection=[upstream.key])
        asked = []
        real = planning.assets_needing_work
        monkeypatch.setattr(planning, "assets_needing_work",
                            lambda instance_, graph_, key, resolver=None: asked.append(key) or real(
                                instance_, graph_, key, resolver))
        found = planning.up_to_date_after_run(instance, graph, ["completed", "blocked", "failed"], ["completed"])
        assert sorted(asked) == ["blocked", "failed"] and sorted(found.up_to_date) == ["blocked", "completed"]
        remember_up_to_date(instance, found)
        asked.clear()
        again = documents_needing_work(instance, graph, ["completed", "blocked", "failed"])
        assert again.work["completed"] == again.work["blocked"] == UP_TO_DATE and asked == ["failed"]
        materialize(instance, "completed")  # a newer materialization than the one remembered
        asked.clear()
        documents_needing_work(instance, graph, ["completed"])
        assert asked == ["completed"]
