"""`python -m synth_assets.run`: register the documents and materialise everything.

Documents run on the project's Dagster instance (the one `make ui` shows): one run
per document, or, when SYNTH_ASSETS_SINGLE_RUN_MIN_DOCUMENTS (default 10) or more
neighbouring documents need the same assets (the first run over a folder, or a new
prompt version for every document), one single-run backfill for them, in which a
bad file is recorded and then fails again in a run of its own (synth_assets/batch.py).
Then the training dataset is built from every document that made it. Running it again
replaces rows, it never duplicates them.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

import dagster as dg
from tqdm import tqdm

from synth_assets import definitions
from synth_assets.batch import (
    blocked_documents,
    contiguous_blocks,
    range_tags,
    run_outcome,
    single_run_min_documents,
    warnings_in_range,
)
from synth_assets.jobs import BUILD_TRAINING_DATASET_JOB, PROCESS_DOCUMENTS_JOB
from synth_assets.core.incremental import folder_state
from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME
from synth_assets.schedules import documents_needing_work, failed_gates, is_fresh
from synth_assets.sensors import stored_state
from synth_assets.storage import (
    DOCUMENT_CHUNKS_TABLE,
    FILTERED_QA_PAIRS_TABLE,
    GENERATED_QA_PAIRS_TABLE,
    PARSED_DOCUMENTS_TABLE,
    REJECTED_QA_PAIRS_TABLE,
    delete_document,
)


# Dagster's per-event console lines would bury the progress bar and the summary; the
# full event log is still stored on the instance, for the UI.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
# A run over many documents shows what each step did per document (parsed, chunked,
# generated x/y, kept): a bar per document cannot follow one run's steps.
BATCH_CONSOLE = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


# Tags on the runs this command executes in its own process, so that a later call can
# tell a run whose process was killed from one that is still going.
LAUNCHER_TAG, PID_TAG, HOST_TAG = "synth_assets/launcher", "synth_assets/pid", "synth_assets/host"
UNFINISHED = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def run_tags() -> dict[str, str]:
    return {LAUNCHER_TAG: "synth_assets.run", PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def recover_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs of an earlier `synth_assets.run` on this machine whose process
    is gone (killed, crashed, power cut), and free the concurrency-pool slots they held.

    An in-process run that is SIGKILLed never reports its end: it would stay "started"
    in the UI for ever and keep its `gpu` pool slot, so the next run's generation step
    would wait for that slot indefinitely. (The daemon's run monitoring does this for
    runs it launched; these were not launched through it.) Returns the run ids.
    """
    recovered = []
    runs = instance.get_runs(dg.RunsFilter(statuses=UNFINISHED, tags={LAUNCHER_TAG: "synth_assets.run"}))
    for run in runs:
        pid, host = run.tags.get(PID_TAG), run.tags.get(HOST_TAG)
        if host != socket.gethostname() or not (pid and pid.isdigit()) or _process_alive(int(pid)):
            continue
        instance.report_run_failed(run, f"the process that ran it (pid {pid}) is gone: it was killed or crashed")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        recovered.append(run.run_id)
    return recovered


def register_documents(instance: dg.DagsterInstance, keys: list[str]) -> list[str]:
    """Add a partition for every document not yet registered; return the new keys."""
    known = set(instance.get_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME))
    new = [key for key in keys if key not in known]
    if new:
        instance.add_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME, new)
    return new


def failure_reason(result: dg.ExecuteInProcessResult) -> str:
    """The first step failure's message (for bad input it names the file and the reason)."""
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            # Dagster wraps an exception raised in an asset; the user's error is its cause.
            while error is not None and error.cause is not None and "DagsterExecutionStepExecutionError" in error.cls_name:
                error = error.cause
            message = error.message.strip() if error else "unknown error"
            return message.split("\n")[0].removeprefix("dagster._core.definitions.events.Failure: ")
    return "run failed"


TRAINING_DATASET_KEY = dg.AssetKey("training_dataset")


def training_dataset_is_stale(defs: dg.Definitions, instance: dg.DagsterInstance) -> bool:
    return not is_fresh(instance, defs.resolve_asset_graph(), TRAINING_DATASET_KEY)


def work_to_do(defs: dg.Definitions, instance: dg.DagsterInstance, keys: list[str]) -> dict[str, list | None]:
    """For each document: None to run it whole (new, or its file's content changed), the
    list of its assets that are missing or stale (a changed model, prompt version or
    filter threshold), or [] when it is up to date."""
    documents = defs.resources["documents"]
    stored = stored_state(defs.resources["duckdb"])
    current = folder_state(documents.discover(), stored)
    changed = {key for key in keys
               if key not in stored or key not in current or stored[key]["sha256"] != current[key]["sha256"]}
    known = documents_needing_work(instance, defs.resolve_asset_graph(), [key for key in keys if key not in changed])
    return {key: None if key in changed else known[key] for key in keys}


def run_all(
    defs: dg.Definitions, instance: dg.DagsterInstance, *, show_progress: bool = True, force: bool = False,
    single_run_min: int | None = None,
) -> dict:
    """Materialise every document that needs it (all of them with `force`), then the
    training dataset; return a summary. Documents that are up to date (same file
    content, same code versions, all assets materialised) are skipped."""
    recovered = recover_abandoned_runs(instance)
    documents = defs.resources["documents"]
    keys = list(documents.discover())
    removed = sorted(set(instance.get_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME)) - set(keys))
    if removed and documents.on_removed == "drop":  # as the documents sensor does
        with defs.resources["duckdb"].get_connection() as con:
            for key in removed:
                delete_document(con, key)
        for key in removed:
            instance.delete_dynamic_partition(DOCUMENTS_PARTITIONS_NAME, key)
    register_documents(instance, keys)
    work = {key: None for key in keys} if force else work_to_do(defs, instance, keys)
    todo = [key for key in keys if work[key] != []]
    document_job = defs.resolve_job_def(PROCESS_DOCUMENTS_JOB)
    failures: dict[str, str] = {}
    blocked: dict[str, str] = {}
    warnings: dict[str, list[str]] = {}
    for key in keys:  # skipped because a gate failed and nothing changed since
        if key not in todo and (gates := failed_gates(instance, key)):
            names = ", ".join(name for checks in gates.values() for name in checks)
            blocked[key] = f"{names} failed on the last run; unchanged since, so still blocked"
    for key, reasons in blocked_documents(defs.resources["duckdb"]).items():  # blocked inside a batch
        if key not in todo and key in keys and key not in blocked:
            blocked[key] = f"{reasons} (on the last run; unchanged since, so still blocked)"
    # Documents to run whole, next to each other in the partition order and many enough,
    # go in one single-run backfill (synth_assets/batch.py); the others one run each.
    order = instance.get_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME)
    minimum = single_run_min_documents() if single_run_min is None else single_run_min
    by_work: dict[tuple | None, list[str]] = {}
    for key in todo:  # documents needing the same assets (all of them: None) can share a run
        by_work.setdefault(None if work[key] is None else tuple(work[key]), []).append(key)
    batches = [(selection, block) for selection, keys_ in by_work.items()
               for block in contiguous_blocks(keys_, order) if len(block) >= minimum]
    for selection, block in batches:
        if show_progress:  # one run for all of them: its steps' log lines are the progress
            print(f"{len(block)} documents in one run ({block[0]} .. {block[-1]}); each step logs per document:",
                  flush=True)
        result = document_job.execute_in_process(
            instance=instance, raise_on_error=False, run_config=BATCH_CONSOLE if show_progress else QUIET_CONSOLE,
            tags={**run_tags(), **range_tags(block[0], block[-1])},
            asset_selection=None if selection is None else list(selection),
        )
        failed_in_batch, blocked_in_batch = run_outcome(defs.resources["duckdb"], result.run_id)
        blocked.update(blocked_in_batch)
        for key, items in warnings_in_range(result.get_asset_check_evaluations()).items():
            warnings.setdefault(key, []).extend(items)
        if not result.success:  # the whole batch failed (every document, or the run itself)
            reason = failure_reason(result)
            failures.update({key: reason for key in block if key not in blocked_in_batch})
        # A document that failed inside the batch runs again alone, so that its failure is
        # a failed run of its own in the UI, naming the file (it fails fast: bad input).
        for key in failed_in_batch:
            again = document_job.execute_in_process(
                partition_key=key, instance=instance, raise_on_error=False, run_config=QUIET_CONSOLE, tags=run_tags())
            if again.success:
                failures.pop(key, None)
            else:
                failures[key] = failure_reason(again)
    in_batches = {key for _, block in batches for key in block}
    one_by_one = [k for k in todo if k not in in_batches]
    progress = tqdm(one_by_one, desc="documents", unit="doc", disable=not (show_progress and one_by_one),
                    file=sys.stdout)
    for key in progress:
        progress.set_postfix_str(key[:40])
        result = document_job.execute_in_process(
            partition_key=key, instance=instance, raise_on_error=False, run_config=QUIET_CONSOLE,
            tags=run_tags(), asset_selection=work[key],
        )
        evaluations = [e for e in result.get_asset_check_evaluations() if not e.passed]
        failed_checks = [e for e in evaluations if e.severity == dg.AssetCheckSeverity.ERROR]
        for e in evaluations:
            if e.severity == dg.AssetCheckSeverity.WARN:
                warnings.setdefault(key, []).append(f"{e.asset_check_key.name}: {e.description}")
        if failed_checks:
            blocked[key] = "; ".join(f"{e.asset_check_key.name}: {e.description}" for e in failed_checks)
        elif not result.success:
            failures[key] = failure_reason(result)
    if todo:  # remember which of them are now up to date, so the next look is quick
        documents_needing_work(instance, defs.resolve_asset_graph(), todo)
    export_ok, export_error, export_dir = True, None, None
    latest = instance.get_latest_materialization_event(TRAINING_DATASET_KEY)
    # Documents that failed or were blocked again do not change what the dataset holds.
    changed = [key for key in todo if key not in failures and key not in blocked]
    dropped = removed if documents.on_removed == "drop" else []
    if changed or dropped or force or latest is None or training_dataset_is_stale(defs, instance):
        export = defs.resolve_job_def(BUILD_TRAINING_DATASET_JOB).execute_in_process(
            instance=instance, raise_on_error=False, run_config=QUIET_CONSOLE, tags=run_tags()
        )
        export_ok, export_error = export.success, None if export.success else failure_reason(export)
        if export.success:
            export_dir = export.asset_materializations_for_node("training_dataset")[0].metadata["export_dir"].value
    else:  # nothing changed: the last export is the current one
        export_dir = latest.asset_materialization.metadata["export_dir"].value
    return {
        "recovered_runs": recovered,
        "documents": keys,
        "removed": removed,
        "on_removed": documents.on_removed,
        "processed": todo,
        "up_to_date": [key for key in keys if key not in todo],
        "failed": failures,
        "blocked_by_checks": blocked,
        "warnings": warnings,
        "export_ok": export_ok,
        "export_error": export_error,
        "export_dir": export_dir,
        **count_rows(defs, keys),
    }


def count_rows(defs: dg.Definitions, keys: list[str]) -> dict[str, int]:
    with defs.resources["duckdb"].get_connection() as con:
        def count(table: str) -> int:
            return con.execute(
                f"SELECT count(*) FROM {table} WHERE document_id IN (SELECT unnest(?))", [keys]
            ).fetchone()[0]

        return {
            "parsed": count(PARSED_DOCUMENTS_TABLE),
            "chunks": count(DOCUMENT_CHUNKS_TABLE),
            "pairs_generated": count(GENERATED_QA_PAIRS_TABLE),
            "pairs_kept": count(FILTERED_QA_PAIRS_TABLE),
            "pairs_rejected": count(REJECTED_QA_PAIRS_TABLE),
        }


def format_summary(summary: dict, seconds: float) -> str:
    lines = [
        "",
        f"synth_assets: {len(summary['documents'])} documents in {seconds:.1f} s",
    ]
    if summary.get("removed"):
        what = ("dropped with their rows" if summary["on_removed"] == "drop"
                else "kept in the dataset (SYNTH_ASSETS_ON_REMOVED=keep)")
        lines.append(f"  removed files:   {len(summary['removed'])}, {what}: {', '.join(summary['removed'])}")
    if summary.get("up_to_date"):
        lines.append(f"  up to date:      {len(summary['up_to_date'])} (skipped: same content, same versions)")
    if summary.get("recovered_runs"):
        lines.append(f"  recovered:       {len(summary['recovered_runs'])} runs of a killed earlier "
                     "run marked failed, their pool slots freed")
    lines += [
        f"  parsed:          {summary['parsed']}",
        f"  failed:          {len(summary['failed'])}",
    ]
    # The reason usually starts with the file name already, which is the key when it is safe.
    lines += [f"    - {key}: {reason.removeprefix(f'{key}: ')}" for key, reason in summary["failed"].items()]
    if summary["blocked_by_checks"]:
        lines.append(f"  blocked by checks: {len(summary['blocked_by_checks'])}")
        lines += [f"    - {key}: {reason}" for key, reason in summary["blocked_by_checks"].items()]
    if summary.get("warnings"):
        lines.append(f"  warnings:        {len(summary['warnings'])} documents (checks that warn, nothing blocked)")
        lines += [f"    - {key}: {'; '.join(items)}" for key, items in summary["warnings"].items()]
    lines += [
        f"  chunks:          {summary['chunks']}",
        f"  pairs generated: {summary['pairs_generated']}",
        f"  pairs kept:      {summary['pairs_kept']} ({summary['pairs_rejected']} rejected, kept in rejected_qa_pairs)",
    ]
    if summary["export_ok"]:
        lines.append(f"  dataset:         {summary['export_dir']}")
    else:
        lines.append(f"  dataset:         NOT exported: {summary['export_error']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--force", action="store_true", help="run every document, even those up to date")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        summary = run_all(definitions.defs, instance, show_progress=not args.no_progress, force=args.force)
    print(format_summary(summary, time.perf_counter() - started))
    return 0 if summary["export_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
