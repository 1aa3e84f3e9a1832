"""The documents sensor: new, changed and removed files become runs, without a button."""

import hashlib
import json

import dagster as dg

from synth_assets.batch import run_outcome
from synth_assets.core.incremental import FolderState, diff_states, folder_state
from synth_assets.dagster_internals import read_instance_value, write_instance_value
from synth_assets.jobs import BUILD_TRAINING_DATASET_JOB, build_training_dataset_job, process_documents_job
from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME, documents_partitions
from synth_assets.planning import (
    TRIGGER_TAG,
    WHOLE,
    PlannedRun,
    Work,
    claim_instance,
    documents_to_run_alone,
    drop_removed,
    gc_paused,
    plan_runs,
    stored_state,
)
from synth_assets.resources.documents import DocumentsFolder
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.storage import documents_with_verdicts_since

DOCUMENTS_SENSOR = "documents_sensor"


def _run_key(planned: PlannedRun, current: FolderState) -> str:
    # The content hash is in the key, so a file is never processed twice for the same content.
    if not planned.single_run:
        key = planned.documents[0]
        return f"{key}@{current[key]['sha256'][:16]}"
    signature = hashlib.sha256("".join(f"{k}@{current[k]['sha256']}" for k in planned.documents).encode())
    return f"batch:{planned.span}@{signature.hexdigest()[:16]}"


# The folder state the documents sensor last saw, in the instance's key-value store, under
# this prefix and the sensor's name. Not in the cursor: Dagster writes the cursor into the
# ticks table at every tick (kept 7 days for skipped ones, for ever for the others), and
# the state is about 140 bytes a document, 14 MB at 100,000 documents, every 30 seconds.
FOLDER_STATE_KEY = "synth_assets/folder_state/"
STATE_CURSOR_PREFIX = "state:"


def kept_folder_state(instance: dg.DagsterInstance, cursor: str | None,
                      sensor_name: str = DOCUMENTS_SENSOR) -> FolderState | None:
    """The folder state a documents sensor's cursor names, or None when the instance
    does not hold it (no cursor, or a tick that failed after keeping a newer state)."""
    cursor = cursor or ""
    if cursor.startswith("{"):  # a cursor of an earlier version: the state itself
        return json.loads(cursor)
    if cursor.startswith(STATE_CURSOR_PREFIX):
        kept = json.loads(read_instance_value(instance, FOLDER_STATE_KEY + sensor_name) or "{}")
        if kept.get("digest") == cursor.removeprefix(STATE_CURSOR_PREFIX):
            return kept["state"]
    return None


def _previous_state(context: dg.SensorEvaluationContext, sensor_name: str, duckdb: PipelineDatabase) -> FolderState:
    """The state the cursor names; without one (first tick, a cursor reset in the UI, or
    a tick that failed after keeping a newer state), what the database reflects: files
    already processed are not run again, and run keys stop a file being run twice."""
    kept = kept_folder_state(context.instance, context.cursor, sensor_name)
    return stored_state(duckdb) if kept is None else kept


def _remember_state(context: dg.SensorEvaluationContext, sensor_name: str, previous: FolderState,
                    current: FolderState) -> str:
    """The cursor for `current`, kept in the instance when it differs from `previous`
    (at most once a tick, and not at all while nothing moved in the folder)."""
    cursor = context.cursor or ""
    if current == previous and cursor.startswith(STATE_CURSOR_PREFIX):
        return cursor
    text = json.dumps(current, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    write_instance_value(context.instance, FOLDER_STATE_KEY + sensor_name, f'{{"digest": "{digest}", "state": {text}}}')
    return STATE_CURSOR_PREFIX + digest


def build_documents_sensor(*, minimum_interval_seconds: int, single_run_min_documents: int) -> dg.SensorDefinition:
    """The documents sensor, looking every `minimum_interval_seconds`; from
    `single_run_min_documents` neighbouring documents up, one single-run backfill."""

    @dg.sensor(
        name=DOCUMENTS_SENSOR,
        jobs=[process_documents_job, build_training_dataset_job],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def documents_sensor(
        context: dg.SensorEvaluationContext, documents: DocumentsFolder, duckdb: PipelineDatabase
    ) -> dg.SensorResult:
        """Watches the documents folder (SYNTH_ASSETS_DOCUMENTS_DIR).

        A new file gets a partition and a run; a file whose content changed (its SHA-256,
        not its timestamp) is run again; a removed file's partition and rows are dropped
        (SYNTH_ASSETS_ON_REMOVED=drop, the default) or kept (=keep), and the training
        dataset is rebuilt without it. Files that are not documents are ignored. The
        cursor holds each file's hash, size and mtime, so it survives restarts, and run
        keys carry the hash, so a file is never processed twice for the same content.
        SYNTH_ASSETS_SINGLE_RUN_MIN_DOCUMENTS (default 10, or 2 with a model backend) or
        more neighbouring files to run go in one single-run backfill instead of one run each.
        The folder state (each file's hash, size and mtime) is kept in the instance, the
        cursor names it by a digest: so it survives restarts, and a tick records a few
        bytes, not megabytes, at 100,000 documents.
        """
        claim_instance(context.instance, documents.shard)
        with gc_paused():  # a state of 100,000 entries read, listed and compared: no cycles
            previous = _previous_state(context, DOCUMENTS_SENSOR, duckdb)
            current = folder_state(documents.discover(), previous)
            changes = diff_states(previous, current)
        cursor = _remember_state(context, DOCUMENTS_SENSOR, previous, current)
        if not changes:
            return dg.SensorResult(skip_reason=f"no document added, changed or removed in {documents.root}",
                                   cursor=cursor)

        registered = context.instance.get_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME)
        known = set(registered)
        to_run = changes.added + changes.changed
        # The daemon adds the new partitions, after the others, before it launches the runs.
        to_register = [key for key in to_run if key not in known]
        partition_requests = [documents_partitions.build_add_request(to_register)] if to_register else []
        run_requests = [
            planned.request(run_key=_run_key(planned, current),
                            trigger="added" if set(planned.documents) <= set(changes.added) else "changed")
            for planned in plan_runs({key: WHOLE for key in to_run}, registered + to_register,
                                     single_run_min_documents)
        ]
        for key in changes.added:
            context.log.info(f"new document: {key}")
        for key in changes.changed:
            context.log.info(f"changed document (new content hash): {key}")

        if dropped := drop_removed(duckdb, changes.removed, documents.on_removed):
            if to_delete := [key for key in dropped if key in known]:
                partition_requests.append(documents_partitions.build_delete_request(to_delete))
            context.log.warning(f"removed from the folder, so dropped with their rows (SYNTH_ASSETS_ON_REMOVED=drop): "
                                f"{', '.join(dropped)}")
            # The dataset leaves them out from its next build: ask for it now.
            run_requests.append(dg.RunRequest(
                job_name=BUILD_TRAINING_DATASET_JOB,
                run_key="removed:" + hashlib.sha256(cursor.encode()).hexdigest()[:16],
                tags={TRIGGER_TAG: "removed"},
            ))
        elif changes.removed:
            context.log.warning(f"removed from the folder, kept in the dataset (SYNTH_ASSETS_ON_REMOVED=keep): "
                                f"{', '.join(changes.removed)}")
        return dg.SensorResult(run_requests=run_requests, dynamic_partitions_requests=partition_requests,
                               cursor=cursor)

    return documents_sensor


BATCH_FAILURES_SENSOR = "documents_failed_in_a_batch_run_alone"


@dg.run_status_sensor(
    name=BATCH_FAILURES_SENSOR,
    run_status=dg.DagsterRunStatus.SUCCESS,
    # Every job of this code location: a backfill launched from the UI runs as the
    # implicit asset job, not as process_documents.
    request_job=process_documents_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def documents_failed_in_a_batch_run_alone(context: dg.RunStatusSensorContext, duckdb: PipelineDatabase):
    """After a run over many documents, each document that failed inside it (a bad file)
    runs again on its own. Dagster shows every partition of a many-document step as
    materialized, so this is what makes the failure visible as a failed run of that
    document, naming the file (synth_assets/batch.py); `make run` does the same."""
    run = context.dagster_run
    failed, _ = run_outcome(duckdb, run.run_id)
    again = documents_to_run_alone(run.tags, failed)
    if not again:
        return dg.SkipReason(f"no document failed inside run {run.run_id} (over many documents)")
    for key in again:
        context.log.warning(f"{key} failed in run {run.run_id}: {failed[key]}; running it alone")
    return [
        dg.RunRequest(partition_key=key, run_key=f"alone-after:{run.run_id}:{key}",
                      tags={TRIGGER_TAG: "failed-in-batch"})
        for key in again
    ]


REVIEWED_VERDICTS_SENSOR = "reviewed_verdicts_sensor"
REVIEWED_QA_PAIRS = dg.AssetKey("reviewed_qa_pairs")


def build_reviewed_verdicts_sensor(*, minimum_interval_seconds: int,
                                   single_run_min_documents: int) -> dg.SensorDefinition:
    """The verdicts sensor, looking every `minimum_interval_seconds`."""

    @dg.sensor(
        name=REVIEWED_VERDICTS_SENSOR,
        jobs=[process_documents_job],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def reviewed_verdicts_sensor(context: dg.SensorEvaluationContext, duckdb: PipelineDatabase) -> dg.SensorResult:
        """Watches the experts' verdicts (the review page writes them to review_verdicts).
        For each document with verdicts newer than the last ones seen, reviewed_qa_pairs
        is materialised again; the training dataset then follows (its automation
        condition rebuilds it once its inputs have changed), with the edits applied and
        the rejected pairs left out. The cursor is the time of the latest verdict seen."""
        with duckdb.get_connection() as con:
            new = documents_with_verdicts_since(con, context.cursor or None)
        if not new:
            return dg.SkipReason(f"no verdict recorded since {context.cursor or 'the start'}")
        registered = context.instance.get_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME)
        known = set(registered)
        to_run = {key: Work.of_assets([REVIEWED_QA_PAIRS]) for key in new if key in known}
        cursor = max(new.values())
        run_requests = [
            planned.request(run_key=f"verdicts:{planned.span}@{cursor}", trigger="verdicts")
            for planned in plan_runs(to_run, registered, single_run_min_documents)
        ]
        for key in to_run:
            context.log.info(f"new verdicts on {key} (latest {new[key]})")
        return dg.SensorResult(run_requests=run_requests, cursor=cursor)

    return reviewed_verdicts_sensor
