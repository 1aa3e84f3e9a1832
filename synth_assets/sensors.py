"""The documents sensor: new, changed and removed files become runs, without a button."""

import hashlib
import json
import os

import dagster as dg

from synth_assets.batch import RANGE_START_TAG, range_tags, run_outcome, single_run_min_documents
from synth_assets.core.incremental import diff_states, folder_state
from synth_assets.jobs import (
    BUILD_TRAINING_DATASET_JOB,
    PROCESS_DOCUMENTS_JOB,
    build_training_dataset_job,
    process_documents_job,
)
from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME, documents_partitions
from synth_assets.resources.documents import DocumentsFolder
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.storage import RAW_DOCUMENTS_TABLE, delete_document

DOCUMENTS_SENSOR = "documents_sensor"
SENSOR_INTERVAL_ENV = "SYNTH_ASSETS_SENSOR_INTERVAL_S"
DEFAULT_SENSOR_INTERVAL_S = 30


def stored_state(duckdb: PipelineDatabase) -> dict:
    """The folder state the database already reflects (content hashes of parsed files):
    the starting point when the sensor has no cursor yet, so documents that `make run`
    already processed are not processed again."""
    with duckdb.get_connection() as con:
        rows = con.execute(f"SELECT document_id, sha256, size_bytes FROM {RAW_DOCUMENTS_TABLE}").fetchall()
    return {key: {"sha256": sha256, "size": size, "mtime_ns": None} for key, sha256, size in rows}


@dg.sensor(
    name=DOCUMENTS_SENSOR,
    jobs=[process_documents_job, build_training_dataset_job],
    minimum_interval_seconds=int(os.environ.get(SENSOR_INTERVAL_ENV, DEFAULT_SENSOR_INTERVAL_S)),
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
    SYNTH_ASSETS_SINGLE_RUN_MIN_DOCUMENTS (default 10) or more new files at once go in
    one single-run backfill instead of one run each.
    """
    previous = json.loads(context.cursor) if context.cursor else stored_state(duckdb)
    current = folder_state(documents.discover(), previous)
    changes = diff_states(previous, current)
    cursor = json.dumps(current, sort_keys=True)
    if not changes:
        return dg.SensorResult(skip_reason=f"no document added, changed or removed in {documents.root}", cursor=cursor)

    known = set(context.instance.get_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME))
    to_register = [key for key in changes.added if key not in known]
    partition_requests = [documents_partitions.build_add_request(to_register)] if to_register else []
    # Many new files at once (a folder copied in): one single-run backfill over their
    # partitions, which this tick appends next to each other (synth_assets/batch.py).
    batch = to_register if len(to_register) >= single_run_min_documents() else []
    run_requests = []
    if batch:
        signature = hashlib.sha256("".join(f"{k}@{current[k]['sha256']}" for k in batch).encode()).hexdigest()
        run_requests.append(dg.RunRequest(
            job_name=PROCESS_DOCUMENTS_JOB,
            run_key=f"batch:{batch[0]}..{batch[-1]}@{signature[:16]}",
            tags={**range_tags(batch[0], batch[-1]), "synth_assets/trigger": "added"},
        ))
    run_requests += [
        dg.RunRequest(
            job_name=PROCESS_DOCUMENTS_JOB,
            partition_key=key,
            run_key=f"{key}@{current[key]['sha256'][:16]}",
            tags={"synth_assets/trigger": "added" if key in changes.added else "changed"},
        )
        for key in changes.added + changes.changed
        if key not in batch
    ]
    for key in changes.added:
        context.log.info(f"new document: {key}")
    for key in changes.changed:
        context.log.info(f"changed document (new content hash): {key}")

    if changes.removed:
        if documents.on_removed == "drop":
            with duckdb.get_connection() as con:
                for key in changes.removed:
                    delete_document(con, key)
            registered = [key for key in changes.removed if key in known]
            if registered:
                partition_requests.append(documents_partitions.build_delete_request(registered))
            context.log.warning(
                f"removed from the folder, so dropped with their rows (SYNTH_ASSETS_ON_REMOVED=drop): "
                f"{', '.join(changes.removed)}"
            )
            # The dataset leaves them out from its next build: ask for it now.
            run_requests.append(dg.RunRequest(
                job_name=BUILD_TRAINING_DATASET_JOB,
                run_key="removed:" + hashlib.sha256(cursor.encode()).hexdigest()[:16],
                tags={"synth_assets/trigger": "removed"},
            ))
        else:
            context.log.warning(
                f"removed from the folder, kept in the dataset (SYNTH_ASSETS_ON_REMOVED=keep): "
                f"{', '.join(changes.removed)}"
            )
    return dg.SensorResult(run_requests=run_requests, dynamic_partitions_requests=partition_requests, cursor=cursor)


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
    if RANGE_START_TAG not in run.tags:
        return dg.SkipReason(f"run {run.run_id} covered one document")
    failed, _ = run_outcome(duckdb, run.run_id)
    if not failed:
        return dg.SkipReason(f"no document failed in run {run.run_id}")
    for key, reason in failed.items():
        context.log.warning(f"{key} failed in run {run.run_id}: {reason}; running it alone")
    return [
        dg.RunRequest(partition_key=key, run_key=f"alone-after:{run.run_id}:{key}",
                      tags={"synth_assets/trigger": "failed-in-batch"})
        for key in failed
    ]
