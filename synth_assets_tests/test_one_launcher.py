"""One launcher per partition (issue 28, item 1).

Per-document work is launched by the documents sensor (and the batch-failures sensor,
and the nightly catch-up); the automation sensor launches only what nothing else does
(the training dataset and its publication). Here the daemon is played tick by tick in
process: the documents sensor's requests are executed, the batch-failures sensor runs
after each run over many documents, and the automation sensor's conditions are
evaluated between them (with its cursor, as the daemon keeps it)."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.test_utils import create_run_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from synth_assets.definitions import build_definitions
from synth_assets.jobs import PROCESS_DOCUMENTS_JOB
from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME
from synth_assets.planning import RANGE_END_TAG, RANGE_START_TAG, per_document_assets
from synth_assets.run import QUIET_CONSOLE
from synth_assets.schedules import catch_up_requests
from synth_assets.sensors import BATCH_FAILURES_SENSOR, documents_failed_in_a_batch_run_alone
from synth_assets_tests.conftest import EXAMPLE_DOCUMENTS
from synth_assets_tests.test_incremental import _tick
from synth_assets_tests.test_publication import FILLER

# The only assets the automation sensor may launch.
AUTOMATED = {dg.AssetKey("training_dataset"), dg.AssetKey("published_dataset")}


def test_no_per_document_asset_has_an_automation_condition(pipeline_resources) -> None:
    """The structural half: automation evaluates only the dataset and its publication."""
    graph = build_definitions(pipeline_resources).resolve_asset_graph()
    with_condition = {key for key in graph.materializable_asset_keys if graph.get(key).automation_condition}
    assert with_condition == AUTOMATED
    assert not with_condition & set(per_document_assets(graph))


class Daemon:
    """The daemon's sensors, played in process: what each launched, and what each run materialised."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, resources: dict):
        self.defs, self.instance, self.resources = defs, instance, resources
        self.job = defs.resolve_job_def(PROCESS_DOCUMENTS_JOB)
        self.sensor = defs.resolve_sensor_def("documents_sensor")
        self.cursor: str | None = None
        self.automation_cursor = None
        self.automation_requested: set[tuple[dg.AssetKey, str | None]] = set()
        # (asset, partition) -> the runs that materialised it
        self.materialised_by: dict[tuple[str, str], list[str]] = {}
        self.alone_runs: list[str] = []

    def automation_tick(self) -> None:
        result = dg.evaluate_automation_conditions(self.defs, self.instance, cursor=self.automation_cursor)
        self.automation_cursor = result.cursor
        for key in result.results:
            for partition in result.get_requested_partitions(key.key):
                self.automation_requested.add((key.key, partition))

    def documents_tick(self) -> int:
        result = _tick(self.instance, {k: self.resources[k] for k in ("documents", "duckdb")}, self.cursor,
                       self.sensor)
        self.cursor = result.cursor
        self.automation_tick()  # the automation sensor sees the new partitions before the runs end
        for request in result.run_requests or []:
            if request.job_name == PROCESS_DOCUMENTS_JOB:
                self.execute(request)
        self.automation_tick()
        return len(result.run_requests or [])

    def execute(self, request: dg.RunRequest) -> None:
        result = self.job.execute_in_process(
            instance=self.instance, raise_on_error=False, run_config=QUIET_CONSOLE, tags=request.tags,
            partition_key=request.partition_key, asset_selection=request.asset_selection)
        for event in result.get_asset_materialization_events():
            pair = (event.asset_key.to_user_string(), event.partition)
            self.materialised_by.setdefault(pair, []).append(result.run_id)
        if result.success and RANGE_START_TAG in result.dagster_run.tags:
            with dg.build_run_status_sensor_context(
                sensor_name=BATCH_FAILURES_SENSOR, dagster_event=result.get_run_success_event(),
                dagster_instance=self.instance, dagster_run=result.dagster_run,
                resources={"duckdb": self.resources["duckdb"]},
            ) as context:
                again = documents_failed_in_a_batch_run_alone(context)
            for alone in again if isinstance(again, list) else []:
                self.alone_runs.append(alone.partition_key)
                self.execute(alone)


@pytest.mark.slow
def test_documents_dropped_one_at_a_time_and_a_failing_one_in_a_batch_get_one_run_each(
        pipeline_resources, documents_dir: Path, instance, monkeypatch) -> None:
    monkeypatch.setenv("SYNTH_ASSETS_SINGLE_RUN_MIN_DOCUMENTS", "2")
    for path in list(documents_dir.iterdir()):
        path.unlink()
    defs = build_definitions(pipeline_resources)
    daemon = Daemon(defs, instance, pipeline_resources)

    # Five documents dropped in one at a time: one good, one that a blocking check stops,
    # one that fails to parse, two good ones more.
    drops = [
        ("wiki.md", lambda target: shutil.copy(EXAMPLE_DOCUMENTS / "wiki.md", target)),
        ("filler.md", lambda target: target.write_text("# Notes\n\n" + FILLER + "\n")),
        ("random bytes.pdf", lambda target: target.write_bytes(os.urandom(2048))),
        ("asciidoc_02.asciidoc", lambda target: shutil.copy(EXAMPLE_DOCUMENTS / "asciidoc_02.asciidoc", target)),
        ("word_sample.docx", lambda target: shutil.copy(EXAMPLE_DOCUMENTS / "word_sample.docx", target)),
    ]
    for name, write in drops:
        write(documents_dir / name)
        assert daemon.documents_tick() == 1
    # Then two at once: a run over both, one of them failing inside it (and run again alone).
    shutil.copy(EXAMPLE_DOCUMENTS / "wiki.md", documents_dir / "wiki again.md")
    (documents_dir / "broken.pdf").write_bytes(os.urandom(4096))
    assert daemon.documents_tick() == 1
    for _ in range(2):  # later ticks: nothing new, and automation still asks for no document
        assert daemon.documents_tick() == 0

    graph = defs.resolve_asset_graph()
    per_document = set(per_document_assets(graph))
    requested = {(key.to_user_string(), partition) for key, partition in daemon.automation_requested
                 if key in per_document}
    assert requested == set(), f"automation launched per-document work: {sorted(requested)}"
    assert {key for key, _ in daemon.automation_requested} <= AUTOMATED
    assert dg.AssetKey("training_dataset") in {key for key, _ in daemon.automation_requested}

    # Every (asset, document) was materialised by one run; the document that failed inside
    # the run over many is the one exception, by design: its own run shows the failure.
    assert daemon.alone_runs == ["broken.pdf"]
    twice = {pair: runs for pair, runs in daemon.materialised_by.items()
             if len(runs) > 1 and pair[1] != "broken.pdf"}
    assert twice == {}
    assert {len(runs) for (_, partition), runs in daemon.materialised_by.items() if partition == "broken.pdf"} <= {1, 2}
    assert daemon.materialised_by[("raw_documents", "broken.pdf")] and len(
        daemon.materialised_by[("raw_documents", "broken.pdf")]) == 2  # the run over both, then its own


def test_the_catch_up_skips_documents_a_queued_or_started_run_targets(pipeline_resources, instance) -> None:
    defs = build_definitions(pipeline_resources)
    keys = ["a.md", "b.md", "c.md", "d.md", "e.md"]
    instance.add_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME, keys)
    # a.md: a queued run of its own; b.md..c.md: a started run over both; e.md: a run that finished.
    # A queued run needs the origin the daemon would launch it from.
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="synth_assets.definitions")), "__repository__"), PROCESS_DOCUMENTS_JOB)
    create_run_for_test(instance, job_name=PROCESS_DOCUMENTS_JOB, status=dg.DagsterRunStatus.QUEUED,
                        tags={"dagster/partition": "a.md"}, remote_job_origin=origin)
    create_run_for_test(instance, job_name=PROCESS_DOCUMENTS_JOB, status=dg.DagsterRunStatus.STARTED,
                        tags={RANGE_START_TAG: "b.md", RANGE_END_TAG: "c.md"})
    create_run_for_test(instance, job_name=PROCESS_DOCUMENTS_JOB, status=dg.DagsterRunStatus.FAILURE,
                        tags={"dagster/partition": "e.md"})
    requests = catch_up_requests(instance, defs.resolve_asset_graph(), "20260101T0200", 10)
    assert sorted(request.partition_key for request in requests) == ["d.md", "e.md"]
