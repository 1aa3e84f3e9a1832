"""Incremental operation: the folder diff, the documents sensor, staleness after a
version change, the nightly catch-up, and `make run` skipping what is up to date."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from synth_assets.core.incremental import diff_states, folder_state
from synth_assets.definitions import build_definitions
from synth_assets.resources.curation import CurationResource
from synth_assets.resources.documents import DocumentsFolder
from synth_assets.planning import DEFAULT_SINGLE_RUN_MIN_DOCUMENTS, assets_needing_work
from synth_assets.run import run_all
from synth_assets.schedules import build_nightly_catch_up
from synth_assets.sensors import build_documents_sensor, kept_folder_state
from synth_assets.storage import ALPACA_EXAMPLES_TABLE, RAW_DOCUMENTS_TABLE

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "documents"
documents_sensor = build_documents_sensor(
    minimum_interval_seconds=30, single_run_min_documents=DEFAULT_SINGLE_RUN_MIN_DOCUMENTS)
nightly_catch_up = build_nightly_catch_up(
    cron_schedule="0 2 * * *", single_run_min_documents=DEFAULT_SINGLE_RUN_MIN_DOCUMENTS)
# In the graph's topological order (how stale assets are listed).
PER_DOCUMENT = ["raw_documents", "parsed_documents", "document_chunks", "generated_qa_pairs",
                "filtered_qa_pairs", "alpaca_examples", "review_sample", "sharegpt_examples", "reviewed_qa_pairs"]


def _key(name: str) -> str:
    return name  # clean names are their own partition keys


# -- the folder diff (pure) --------------------------------------------------------


def test_folder_diff_sees_added_changed_and_removed_files_by_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a.md", tmp_path / "b.md"
    a.write_text("# A\n\nfirst", encoding="utf-8")
    b.write_text("# B\n\nsecond", encoding="utf-8")
    hashed: list[str] = []

    def sha(path: Path) -> str:
        hashed.append(path.name)
        return path.read_text(encoding="utf-8")

    first = folder_state({"a.md": a, "b.md": b}, None, sha)
    assert diff_states({}, first).added == ["a.md", "b.md"] and hashed == ["a.md", "b.md"]

    hashed.clear()
    assert not diff_states(first, folder_state({"a.md": a, "b.md": b}, first, sha))
    assert hashed == []  # size and mtime unchanged: no file read

    os.utime(a, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched, same bytes
    b.write_text("# B\n\nsecond, edited", encoding="utf-8")
    c = tmp_path / "c.md"
    c.write_text("new", encoding="utf-8")
    second = folder_state({"a.md": a, "b.md": b, "c.md": c}, first, sha)
    changes = diff_states(first, second)
    assert (changes.added, changes.changed, changes.removed) == (["c.md"], ["b.md"], [])
    assert sorted(hashed) == ["a.md", "b.md", "c.md"]  # a re-hashed, found unchanged

    gone = diff_states(second, folder_state({"c.md": c}, second, sha))
    assert (gone.added, gone.changed, gone.removed) == ([], [], ["a.md", "b.md"])


# -- the documents sensor ----------------------------------------------------------


def _tick(instance, resources, cursor, sensor=documents_sensor):
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        result = sensor(context)
    # What the daemon does with a result: partitions first, then the runs.
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    return result


def _runs(result) -> list[tuple[str, str | None]]:
    return sorted((r.job_name, r.partition_key) for r in result.run_requests or [])


def test_the_sensor_follows_the_folder(pipeline_resources, documents_dir: Path, instance) -> None:
    resources = {k: pipeline_resources[k] for k in ("documents", "duckdb")}
    for junk in (".DS_Store", "~$draft.docx", "notes.tmp", "picture.png", "README.md"):
        (documents_dir / junk).write_bytes(b"not a document")

    first = _tick(instance, resources, None)
    documents = ["asciidoc_02.asciidoc", "wiki.md", "word_sample.docx"]
    assert _runs(first) == [("process_documents", key) for key in documents]
    assert sorted(instance.get_dynamic_partitions("documents")) == documents
    assert len({r.run_key for r in first.run_requests}) == 3

    # Nothing changed: a restarted daemon reads the stored cursor and asks for nothing.
    again = _tick(instance, resources, first.cursor)
    assert not again.run_requests and "no document" in again.skip_reason.skip_message

    # A touched file is not a change; an edited one is; a new one is new.
    wiki = documents_dir / "wiki.md"
    os.utime(wiki, ns=(time.time_ns(), time.time_ns() + 10**9))
    (documents_dir / "asciidoc_02.asciidoc").write_text("= Ducks\n\nDucks swim in lakes.\n", encoding="utf-8")
    shutil.copy(EXAMPLES / "powerpoint_sample.pptx", documents_dir / "slides.pptx")
    changed = _tick(instance, resources, again.cursor)
    assert _runs(changed) == [("process_documents", "asciidoc_02.asciidoc"), ("process_documents", "slides.pptx")]
    assert {r.tags["synth_assets/trigger"] for r in changed.run_requests} == {"changed", "added"}
    assert kept_folder_state(instance, changed.cursor)["slides.pptx"]["sha256"]


def test_a_removed_file_is_dropped_with_its_rows_or_kept(pipeline_resources, documents_dir: Path, instance) -> None:
    defs = build_definitions(pipeline_resources)
    run_all(defs, instance, show_progress=False)
    database = pipeline_resources["duckdb"].database
    resources = {k: pipeline_resources[k] for k in ("documents", "duckdb")}

    # No cursor yet, but the database already holds every document: nothing to redo.
    start = _tick(instance, resources, None)
    assert not start.run_requests

    (documents_dir / "wiki.md").unlink()
    keep = DocumentsFolder(path=str(documents_dir), on_removed="keep")
    kept = _tick(instance, {**resources, "documents": keep}, start.cursor)
    assert not kept.run_requests and "wiki.md" in instance.get_dynamic_partitions("documents")
    with duckdb.connect(database, read_only=True) as con:
        assert con.execute(f"SELECT count(*) FROM {ALPACA_EXAMPLES_TABLE} WHERE document_id = 'wiki.md'").fetchone()[0]

    dropped = _tick(instance, resources, start.cursor)
    assert _runs(dropped) == [("build_training_dataset", None)]
    assert "wiki.md" not in instance.get_dynamic_partitions("documents")
    with duckdb.connect(database, read_only=True) as con:
        for table in (RAW_DOCUMENTS_TABLE, ALPACA_EXAMPLES_TABLE):
            assert con.execute(f"SELECT count(*) FROM {table} WHERE document_id = 'wiki.md'").fetchone()[0] == 0
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0  # the others stay


# -- staleness and the catch-up ----------------------------------------------------


@pytest.fixture
def change_template_version(monkeypatch):
    """Changes the model-free template version and returns the definitions built after
    it (the version is part of generated_qa_pairs' code version)."""
    import synth_assets.generation.model_free as model_free

    def change(resources: dict) -> dg.Definitions:
        monkeypatch.setattr(model_free, "MODEL_FREE_TEMPLATE_VERSION", "model-free-v2-test")
        return build_definitions(resources)

    return change


def test_a_template_version_change_makes_generation_and_below_stale(
    pipeline_resources, instance, change_template_version
) -> None:
    defs = build_definitions(pipeline_resources)
    summary = run_all(defs, instance, show_progress=False)
    assert set(summary["processed"]) == set(summary["documents"])

    # Nothing changed: the second run does nothing but look.
    again = run_all(defs, instance, show_progress=False)
    assert again["processed"] == [] and set(again["up_to_date"]) == set(summary["documents"])

    changed = change_template_version(pipeline_resources)
    graph = changed.resolve_asset_graph()
    stale = assets_needing_work(instance, graph, "wiki.md")
    assert [key.to_user_string() for key in stale] == PER_DOCUMENT[3:]  # not ingest or chunks

    # The nightly catch-up asks, per document, for exactly those assets.
    import datetime

    with dg.build_schedule_context(instance=instance, repository_def=changed.get_repository_def(),
                                   scheduled_execution_time=datetime.datetime(2026, 11, 24, 2, 0)) as context:
        requests = nightly_catch_up(context)
    assert {r.partition_key for r in requests} == set(summary["documents"])
    assert all([k.to_user_string() for k in r.asset_selection] == PER_DOCUMENT[3:] for r in requests)

    # And `make run` runs only them: no parsing or chunking step again.
    rerun = run_all(changed, instance, show_progress=False)
    assert set(rerun["processed"]) == set(summary["documents"])
    latest = instance.get_runs(dg.RunsFilter(job_name="process_documents"), limit=1)[0]
    steps = {e.step_key for e in instance.all_logs(latest.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)}
    assert "parsed_documents" not in steps and "document_chunks" not in steps
    assert {"generated_qa_pairs", "filtered_qa_pairs", "alpaca_examples"} <= steps


def test_up_to_date_documents_are_remembered_until_their_materializations_change(
    pipeline_resources, instance, monkeypatch
) -> None:
    from synth_assets import planning

    defs = build_definitions(pipeline_resources)
    first = run_all(defs, instance, show_progress=False)
    asked: list[str] = []
    real = planning.assets_needing_work

    def counting(instance_, graph, key, resolver=None):
        asked.append(key)
        return real(instance_, graph, key, resolver)

    monkeypatch.setattr(planning, "assets_needing_work", counting)
    again = run_all(defs, instance, show_progress=False)
    # Nothing changed: Dagster's stale status is not asked again (only for blocked ones).
    assert again["processed"] == [] and sorted(asked) == sorted(first["blocked_by_checks"])

    # Materializations wiped in the UI change what the documents' assets last recorded:
    # they are looked at again, and what is missing is made again.
    instance.wipe_assets([dg.AssetKey("alpaca_examples")])
    asked.clear()
    wiped = run_all(defs, instance, show_progress=False)
    made = set(first["documents"]) - set(first["blocked_by_checks"])
    assert made and made <= set(asked) and set(wiped["processed"]) == made
    assert made <= instance.get_materialized_partitions(dg.AssetKey("alpaca_examples"))
    asked.clear()
    assert run_all(defs, instance, show_progress=False)["processed"] == [] and "wiki.md" not in asked


def test_a_threshold_change_changes_the_curation_version() -> None:
    assert CurationResource().output_version() == CurationResource().output_version()
    assert CurationResource(min_grounding=0.7).output_version() != CurationResource().output_version()
    # the gates do not decide which pairs are kept
    assert CurationResource(max_type_share=0.5).output_version() == CurationResource().output_version()


def test_a_blocked_document_stays_blocked_on_the_next_run(pipeline_resources, instance) -> None:
    from synth_assets_tests.test_pipeline import EmptyAnswerForDocx

    defs = build_definitions({**pipeline_resources, "generation": EmptyAnswerForDocx()})
    first = run_all(defs, instance, show_progress=False)
    [blocked] = first["blocked_by_checks"]
    second = run_all(defs, instance, show_progress=False)
    # Nothing changed: nothing runs, and the document is still reported blocked.
    assert second["processed"] == [] and list(second["blocked_by_checks"]) == [blocked]
    assert blocked not in instance.get_materialized_partitions(dg.AssetKey("alpaca_examples"))


def test_bad_files_get_their_runs_and_do_not_stop_the_sensor(pipeline_resources, documents_dir: Path, instance) -> None:
    resources = {k: pipeline_resources[k] for k in ("documents", "duckdb")}
    (documents_dir / "empty.pdf").touch()
    (documents_dir / "random bytes.pdf").write_bytes(os.urandom(2048))
    (documents_dir / "not a zip.docx").write_text("plain text", encoding="utf-8")
    first = _tick(instance, resources, None)
    # Every file gets its run, where it fails alone with its reason (test_pipeline.py).
    assert len(first.run_requests) == 6
    assert not _tick(instance, resources, first.cursor).run_requests


def test_make_run_drops_a_removed_file_from_the_dataset(pipeline_resources, documents_dir: Path, instance) -> None:
    defs = build_definitions(pipeline_resources)
    run_all(defs, instance, show_progress=False)
    (documents_dir / "wiki.md").unlink()
    summary = run_all(defs, instance, show_progress=False)
    assert summary["removed"] == ["wiki.md"] and summary["processed"] == []
    assert "wiki.md" not in instance.get_dynamic_partitions("documents")
    with duckdb.connect(pipeline_resources["duckdb"].database, read_only=True) as con:
        assert con.execute(f"SELECT count(*) FROM {ALPACA_EXAMPLES_TABLE} WHERE document_id = 'wiki.md'").fetchone()[0] == 0
    exported = sorted((Path(summary["export_dir"]) / "alpaca" / "jsonl").glob("*/*.jsonl"))
    assert exported and not any("wiki.md" in path.read_text(encoding="utf-8") for path in exported)
