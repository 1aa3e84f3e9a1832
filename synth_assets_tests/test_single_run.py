"""Runs over many documents: one single-run backfill, each document on its own inside it."""

import shutil

import dagster as dg
import duckdb

from synth_assets.assets import PIPELINE_ASSETS
from synth_assets.dagster_internals import stale_status_resolver
from synth_assets.definitions import build_definitions
from synth_assets.jobs import PROCESS_DOCUMENTS_JOB
from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME
from synth_assets.planning import contiguous_blocks, range_tags
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.run import run_all
from synth_assets.schedules import build_nightly_catch_up
from synth_assets.sensors import build_documents_sensor
from synth_assets.storage import ALPACA_EXAMPLES_TABLE, DOCUMENT_FAILURES_TABLE

from synth_assets_tests.test_incremental import change_template_version  # noqa: F401 (a fixture)
from synth_assets_tests.test_pipeline import EmptyAnswerForDocx, table_counts

PER_DOCUMENT = [asset.key for asset in PIPELINE_ASSETS if asset.partitions_def is not None]


def test_every_per_document_asset_has_the_single_run_backfill_policy() -> None:
    assert len(PER_DOCUMENT) == 9
    for asset in PIPELINE_ASSETS:
        if asset.partitions_def is not None:
            assert asset.backfill_policy == dg.BackfillPolicy.single_run(), asset.key


def test_contiguous_blocks_only_join_neighbours() -> None:
    order = ["a", "b", "c", "d", "e"]
    assert contiguous_blocks(["e", "a", "b", "d"], order) == [["a", "b"], ["d", "e"]]
    assert contiguous_blocks([], order) == []


def test_a_single_run_backfill_over_three_documents_is_one_run(pipeline_resources, instance, tmp_path) -> None:
    defs = build_definitions(pipeline_resources)
    keys = sorted(pipeline_resources["documents"].discover())
    instance.add_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME, keys)
    result = defs.resolve_job_def(PROCESS_DOCUMENTS_JOB).execute_in_process(
        instance=instance, tags=range_tags(keys[0], keys[-1]))

    assert result.success
    assert len(instance.get_runs()) == 1
    # Each step ran once, for all three documents (9 assets + 6 checks = 15 steps).
    steps = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
    assert len(steps) == 15
    for key in PER_DOCUMENT:
        assert instance.get_materialized_partitions(key) == set(keys), key
    # The same rows as one run per document.
    per_document = {**pipeline_resources, "duckdb": PipelineDatabase(database=str(tmp_path / "per_document.duckdb"))}
    with dg.instance_for_test() as other:
        other.add_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME, keys)
        job = build_definitions(per_document).resolve_job_def(PROCESS_DOCUMENTS_JOB)
        for key in keys:
            assert job.execute_in_process(instance=other, partition_key=key).success
    batch_counts = table_counts(pipeline_resources["duckdb"].database)
    assert batch_counts == table_counts(per_document["duckdb"].database)
    assert batch_counts["alpaca_examples"] > 0
    # Nothing is stale afterwards: the range run's provenance matches each partition.
    resolver = stale_status_resolver(instance, defs.resolve_asset_graph())
    for key in PER_DOCUMENT:
        for partition in keys:
            assert resolver.get_status(key, partition).value == "FRESH", (key, partition)


def test_in_a_batch_a_bad_file_and_a_blocked_document_do_not_stop_the_others(
    pipeline_resources, documents_dir, instance
) -> None:
    (documents_dir / "broken report.pdf").write_bytes(b"this is not a pdf at all")
    defs = build_definitions({**pipeline_resources, "generation": EmptyAnswerForDocx()})
    summary = run_all(defs, instance, show_progress=False, single_run_min=2)

    broken = next(key for key in summary["documents"] if "broken" in key)
    docx = next(key for key in summary["documents"] if "docx" in key)
    assert list(summary["failed"]) == [broken] and "broken report.pdf" in summary["failed"][broken]
    assert list(summary["blocked_by_checks"]) == [docx] and "answer" in summary["blocked_by_checks"][docx]
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=PROCESS_DOCUMENTS_JOB))
    # One batch run for the four documents, then the bad file again on its own, which fails.
    assert sorted((run.tags.get("dagster/partition", ""), run.status.value) for run in runs) == [
        ("", "SUCCESS"), (broken, "FAILURE")]
    # The range's one check result names the blocked document and shows its failing rows.
    [batch_run] = [run for run in runs if "dagster/partition" not in run.tags]
    evaluations = [e.dagster_event.event_specific_data for e in instance.all_logs(
        batch_run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)]
    [failing] = [e for e in evaluations if not e.passed]
    assert failing.severity == dg.AssetCheckSeverity.WARN and docx in failing.description
    assert "answer" in failing.metadata[f"failing_rows: {docx}"].value
    with duckdb.connect(pipeline_resources["duckdb"].database, read_only=True) as con:
        exported = {row[0] for row in con.execute(f"SELECT DISTINCT document_id FROM {ALPACA_EXAMPLES_TABLE}").fetchall()}
        recorded = con.execute(f"SELECT document_id, stage FROM {DOCUMENT_FAILURES_TABLE}").fetchall()
    assert "wiki.md" in exported and not exported & {broken, docx}  # (the AsciiDoc file yields no pairs)
    assert recorded == [(broken, "parsed_documents")]  # docling cannot open it
    assert summary["export_ok"]

    # Nothing changed: nothing runs, the blocked document is still listed as blocked.
    again = run_all(defs, instance, show_progress=False, single_run_min=2)
    assert again["processed"] == [broken]  # a bad file is tried again until it changes
    assert docx in again["blocked_by_checks"]


def test_many_new_files_make_one_single_run_request(pipeline_resources, documents_dir, instance) -> None:
    from synth_assets_tests.test_incremental import _tick

    sensor = build_documents_sensor(minimum_interval_seconds=30, single_run_min_documents=3)
    resources = {k: pipeline_resources[k] for k in ("documents", "duckdb")}
    first = _tick(instance, resources, None, sensor)
    keys = ["asciidoc_02.asciidoc", "wiki.md", "word_sample.docx"]
    assert instance.get_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME) == keys
    [request] = first.run_requests
    assert request.partition_key is None and request.tags["dagster/asset_partition_range_start"] == keys[0]
    assert request.tags["dagster/asset_partition_range_end"] == keys[-1]

    # What the daemon launches: one run over the three documents.
    job = build_definitions(pipeline_resources).resolve_job_def(PROCESS_DOCUMENTS_JOB)
    assert job.execute_in_process(instance=instance, tags=request.tags).success
    assert instance.get_materialized_partitions(dg.AssetKey("sharegpt_examples")) == set(keys)

    # One more file is below the threshold: a run of its own, as before.
    shutil.copy(documents_dir / "wiki.md", documents_dir / "wiki two.md")
    second = _tick(instance, resources, first.cursor, sensor)
    [single] = second.run_requests
    assert single.partition_key.startswith("wiki_two") and "dagster/asset_partition_range_start" not in single.tags


def test_after_a_prompt_change_the_stale_documents_share_one_run(
    pipeline_resources, instance, change_template_version
) -> None:
    import datetime

    nightly_catch_up = build_nightly_catch_up(cron_schedule="0 2 * * *", single_run_min_documents=2)
    defs = build_definitions(pipeline_resources)
    first = run_all(defs, instance, show_progress=False, single_run_min=2)
    assert first["failed"] == {} and len(instance.get_runs(dg.RunsFilter(job_name=PROCESS_DOCUMENTS_JOB))) == 1

    changed = change_template_version(pipeline_resources)
    with dg.build_schedule_context(instance=instance, repository_def=changed.get_repository_def(),
                                   scheduled_execution_time=datetime.datetime(2026, 11, 24, 2, 0)) as context:
        [request] = nightly_catch_up(context)
    keys = sorted(first["documents"])
    assert (request.tags["dagster/asset_partition_range_start"], request.tags["dagster/asset_partition_range_end"]) == (
        keys[0], keys[-1])
    below = ["generated_qa_pairs", "filtered_qa_pairs", "alpaca_examples", "review_sample", "sharegpt_examples",
             "reviewed_qa_pairs"]
    assert [k.to_user_string() for k in request.asset_selection] == below

    rerun = run_all(changed, instance, show_progress=False, single_run_min=2)
    assert set(rerun["processed"]) == set(keys)
    runs = instance.get_runs(dg.RunsFilter(job_name=PROCESS_DOCUMENTS_JOB))
    assert len(runs) == 2  # the first batch, then one run for the three stale documents
    steps = {e.step_key for e in instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)}
    assert "parsed_documents" not in steps and set(below) <= steps
    resolver = stale_status_resolver(instance, changed.resolve_asset_graph())
    assert all(resolver.get_status(dg.AssetKey(name), key).value == "FRESH" for name in below for key in keys)


def test_the_training_dataset_leaves_out_documents_failing_a_format_suite() -> None:
    import json

    import pandas as pd

    from synth_assets.assets.export import _excluded_documents

    def row(document_id: str, i: int, output: str = "an answer") -> dict:
        return {"document_id": document_id, "pair_id": f"{document_id}#{i}", "chunk_id": f"{document_id}#c",
                "source_file": f"{document_id}.md", "instruction": "a question?", "input": "", "output": output,
                "source_digest": "d"}

    alpaca = pd.DataFrame([row("a", 1), row("b", 1, output=""), row("c", 1)])
    sharegpt = alpaca.assign(conversations=[json.dumps([{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}])] * 3)
    sharegpt = sharegpt[["document_id", "pair_id", "chunk_id", "source_file", "conversations", "source_digest"]]
    sources = dict.fromkeys("abc", "d")  # every document's rows were made from its current pairs
    excluded, _ = _excluded_documents(["a", "b", "c"], {"a", "b"}, {}, sources, alpaca, sharegpt, "leave_out")
    assert set(excluded) == {"b", "c"}
    assert excluded["b"].startswith("alpaca check failed") and excluded["c"] == "no longer registered"
    assert _excluded_documents(["a"], {"a"}, {}, sources, alpaca[alpaca["document_id"] == "a"], sharegpt,
                               "leave_out") == ({}, {})
    # Rows made from pairs that have changed since, or of a blocked document, are refused.
    changed, _ = _excluded_documents(["a"], {"a"}, {}, {"a": "new"}, alpaca, sharegpt, "leave_out")
    assert changed == {"a": "its file or its pairs changed since its rows were formatted and checked"}
    blocked, _ = _excluded_documents(["a"], {"a"}, {"a": "gate: failed"}, sources, alpaca, sharegpt, "leave_out")
    assert blocked == {"a": "blocked by checks: gate: failed"}


def test_a_document_that_failed_in_a_batch_run_is_run_again_alone(pipeline_resources, documents_dir, instance) -> None:
    from synth_assets.sensors import BATCH_FAILURES_SENSOR, documents_failed_in_a_batch_run_alone

    (documents_dir / "broken report.pdf").write_bytes(b"this is not a pdf at all")
    defs = build_definitions(pipeline_resources)
    keys = sorted(pipeline_resources["documents"].discover())
    instance.add_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME, keys)
    result = defs.resolve_job_def(PROCESS_DOCUMENTS_JOB).execute_in_process(
        instance=instance, tags=range_tags(keys[0], keys[-1]))
    assert result.success  # the others went on

    def sensor_requests(run_id: str):
        [success] = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)
        with dg.build_run_status_sensor_context(
            sensor_name=BATCH_FAILURES_SENSOR, dagster_event=success.dagster_event, dagster_instance=instance,
            dagster_run=instance.get_run_by_id(run_id), resources={"duckdb": pipeline_resources["duckdb"]},
        ) as context:
            return documents_failed_in_a_batch_run_alone(context)

    broken = next(key for key in keys if "broken" in key)
    [request] = sensor_requests(result.run_id)
    assert request.partition_key == broken and result.run_id in request.run_key
    # A run for one document is left alone.
    single = defs.resolve_job_def(PROCESS_DOCUMENTS_JOB).execute_in_process(instance=instance, partition_key="wiki.md")
    assert isinstance(sensor_requests(single.run_id), dg.SkipReason)


def test_make_run_reports_the_same_in_one_run_as_in_a_run_per_document(pipeline_resources, tmp_path) -> None:
    from synth_assets.resources.curation import CurationResource

    # A low limit on one question type's share makes the non-blocking diversity check warn.
    curation = CurationResource(max_type_share=0.05)
    summaries = {}
    for name, minimum in (("batched", 2), ("one_by_one", 100)):
        resources = {**pipeline_resources, "curation": curation,
                     "duckdb": PipelineDatabase(database=str(tmp_path / f"{name}.duckdb"))}
        with dg.instance_for_test() as instance:
            summaries[name] = run_all(build_definitions(resources), instance, show_progress=False,
                                      single_run_min=minimum)
    batched, one_by_one = summaries["batched"], summaries["one_by_one"]
    assert "wiki.md" in batched["warnings"]
    assert "question_types_are_diverse" in batched["warnings"]["wiki.md"][0]
    for field in ("failed", "warnings", "pairs_kept", "chunks", "pairs_generated"):
        assert batched[field] == one_by_one[field], field
    assert set(batched["blocked_by_checks"]) == set(one_by_one["blocked_by_checks"])
