"""Runs that cover many documents: one run for all of them, each document on its own inside it.

Every per-document asset has `BackfillPolicy.single_run()`: a backfill over many
partitions (from the UI, `make run` or the documents sensor when many files arrive at
once) is one run whose steps receive every document at once (`context.partition_keys`),
so the generation engine starts once and batches the chunks of all of them. A run for
one document is unchanged: one partition, and its errors fail its own run.

The tension with per-document isolation, and what this module decides. In Dagster 1.13
a step over a range of partitions succeeds or fails as a whole, records a
materialization for every partition of the range, and evaluates a partitioned asset
check once for the range (no partition of its own). So, inside a multi-document step:

- a document that raises (a bad file, say) is recorded in `document_failures` (stage,
  reason naming the file, run id), logged as an error in one line, its rows of that
  stage are removed, and the step goes on with the others; it fails only when every
  document failed. Later steps of the same run skip that document. The traceback,
  which the step's own failure would have shown, goes to the run's log at debug level
  and to the partition's metadata (`traceback`), so an internal error can be traced.
- a blocking check evaluates every document of the range; a document that fails it is
  recorded in `blocked_documents` and skipped by the later steps of the run (its
  downstream rows are removed, so it leaves the dataset). The check result is a
  failure with WARN severity when some documents failed (the others must go on) and
  with ERROR severity (blocking everything below) when all did.
- Dagster still shows such a document's partitions of that run as materialized (with
  "failed" or "skipped" in their metadata). `make run` therefore runs each document
  that failed inside a batch again on its own right after, so its failure is a failed
  run of its own in the UI, with the file's name; blocked documents are listed in the
  summary from `blocked_documents`.
- a document with no text to learn from (an empty file, images only, titles only) is
  neither: it goes through every step with zero chunks and zero pairs, passes the
  checks (there is nothing to fail), and is listed from `no_text_documents`.

Small batches keep one run per document (exact per-partition status, no trade-off):
runs cover many documents only from SYNTH_ASSETS_SINGLE_RUN_MIN_DOCUMENTS documents up
(default 10); synth_assets/planning.py decides which documents share a run.
"""

import hashlib
import traceback
from collections.abc import Callable, Iterable

import dagster as dg

from synth_assets.dagster_internals import add_partition_metadata
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.storage import BLOCKED_DOCUMENTS_TABLE, DOCUMENT_FAILURES_TABLE, NO_TEXT_DOCUMENTS_TABLE

single_run = dg.BackfillPolicy.single_run()

# In a check over a range of documents, the failing rows of at most this many failed
# documents are shown in its one result (all of them are listed by name and reason).
FAILED_DOCUMENTS_SHOWN = 5


def stopped_in_run(duckdb: PipelineDatabase, run_id: str) -> dict[str, str]:
    """Documents that failed or were blocked earlier in this run, with the reason."""
    with duckdb.get_connection() as con:
        rows = con.execute(
            f"SELECT document_id, stage || ': ' || reason FROM {DOCUMENT_FAILURES_TABLE} WHERE run_id = ? "
            f"UNION ALL SELECT document_id, check_name || ': ' || reason FROM {BLOCKED_DOCUMENTS_TABLE} "
            "WHERE run_id = ?",
            [run_id, run_id],
        ).fetchall()
    return dict(rows)


def run_outcome(duckdb: PipelineDatabase, run_id: str) -> tuple[dict[str, str], dict[str, str]]:
    """(failed, blocked) documents of a multi-document run, with their reasons."""
    with duckdb.get_connection() as con:
        failed = con.execute(
            f"SELECT document_id, reason FROM {DOCUMENT_FAILURES_TABLE} WHERE run_id = ?", [run_id]).fetchall()
        blocked = con.execute(
            f"SELECT document_id, string_agg(check_name || ': ' || reason, '; ') FROM {BLOCKED_DOCUMENTS_TABLE} "
            "WHERE run_id = ? GROUP BY 1", [run_id]).fetchall()
    return dict(failed), dict(blocked)


def blocked_documents(duckdb: PipelineDatabase) -> dict[str, str]:
    """Every document whose latest evaluation of a blocking check failed."""
    with duckdb.get_connection() as con:
        rows = con.execute(
            f"SELECT document_id, string_agg(check_name || ': ' || reason, '; ') FROM {BLOCKED_DOCUMENTS_TABLE} "
            "GROUP BY 1").fetchall()
    return dict(rows)


def no_text_documents(duckdb: PipelineDatabase) -> dict[str, str]:
    """Every document with no text to learn from (a status, not a failure), with the reason."""
    with duckdb.get_connection() as con:
        return dict(con.execute(f"SELECT document_id, reason FROM {NO_TEXT_DOCUMENTS_TABLE} ORDER BY 1").fetchall())


def warnings_in_range(evaluations) -> dict[str, list[str]]:
    """Per document, what the non-blocking checks of a many-document run warned about
    (their one result per range lists the documents in `failed_documents`)."""
    warnings: dict[str, list[str]] = {}
    for evaluation in evaluations:
        metadata = evaluation.metadata or {}
        if evaluation.passed or "failed_documents" not in metadata or metadata["blocking"].value:
            continue
        for key, reason in metadata["failed_documents"].value.items():
            warnings.setdefault(key, []).append(f"{evaluation.asset_check_key.name}: {reason}")
    return warnings


def _evaluate_in_halves(keys: list[str], evaluate, evaluate_all) -> dict[str, dg.AssetCheckResult]:
    """Every document passes when `evaluate_all` passes for all of them; when it fails, each
    half is looked at again, down to single documents (evaluated with their details): a
    few failing documents among many cost a few validations each, not one per document."""
    if len(keys) == 1:
        return {keys[0]: evaluate(keys[0])}
    if evaluate_all(keys).passed:
        return {key: dg.AssetCheckResult(passed=True) for key in keys}
    middle = len(keys) // 2
    return {**_evaluate_in_halves(keys[:middle], evaluate, evaluate_all),
            **_evaluate_in_halves(keys[middle:], evaluate, evaluate_all)}


def error_message(error: Exception) -> str:
    if isinstance(error, dg.Failure):
        return error.description or "failed"
    return f"{type(error).__name__}: {error}"


def _delete_rows(con, tables: Iterable[str], document_id: str) -> None:
    for table in tables:
        con.execute(f"DELETE FROM {table} WHERE document_id = ?", [document_id])


def for_each_document(
    context: dg.AssetExecutionContext,
    duckdb: PipelineDatabase,
    stage: str,
    tables: list[str],
    process: Callable[[str], dg.MaterializeResult],
) -> dg.MaterializeResult:
    """Materialise `process(document_id)` for every document of the step.

    One document: its result, and its errors fail the run (as ever). Several: see the
    module docstring; per-document metadata goes on each partition's materialization,
    and data versions given per document become one version for the range (Dagster
    records one per step): a hash of all of them, so any change shows downstream.
    """
    keys = list(context.partition_keys)
    if len(keys) == 1:
        return process(keys[0])
    with duckdb.shared_connection():  # one connection for the step's documents, not one per read
        return _materialize_each(context, duckdb, stage, tables, process, keys)


def _materialize_each(context, duckdb: PipelineDatabase, stage: str, tables: list[str], process,
                      keys: list[str]) -> dg.MaterializeResult:
    stopped = stopped_in_run(duckdb, context.run_id)
    done, failed, skipped, versions = [], {}, {}, []
    for key in keys:
        if key in stopped:
            skipped[key] = stopped[key]
            with duckdb.get_connection() as con:
                _delete_rows(con, tables, key)
            add_partition_metadata(context, {"skipped": f"stopped earlier in this run ({stopped[key]})"}, key)
            continue
        try:
            result = process(key)
        except Exception as error:  # one document must not fail the others: recorded, see above
            failed[key] = error_message(error)
            trace = "".join(traceback.format_exception(error))
            context.log.error(f"{key}: {failed[key]} (the other documents of this run go on)")
            context.log.debug(f"{key}: {failed[key]}\n{trace}")
            with duckdb.get_connection() as con:
                _delete_rows(con, tables, key)
                con.execute(f"INSERT INTO {DOCUMENT_FAILURES_TABLE} VALUES (?, ?, ?, ?)",
                            [key, stage, failed[key], context.run_id])
            add_partition_metadata(context, {"failed": failed[key], "traceback": dg.MetadataValue.text(trace)}, key)
            continue
        done.append(key)
        versions.append(f"{key}={result.data_version.value}" if result.data_version else None)
        add_partition_metadata(context, dict(result.metadata or {}), key)
    if not done:
        raise dg.Failure(
            f"{stage}: every document of this run failed or was stopped: "
            + "; ".join(f"{key}: {reason}" for key, reason in {**failed, **skipped}.items())
        )
    data_version = None
    if any(versions):
        data_version = dg.DataVersion(hashlib.sha256("\n".join(v or "" for v in versions).encode()).hexdigest())
    return dg.MaterializeResult(
        data_version=data_version,
        metadata={"documents": len(keys), "materialized": len(done), "failed": len(failed), "skipped": len(skipped),
                  "failed_documents": dg.MetadataValue.json(failed)},
    )


def check_each_document(
    context: dg.AssetCheckExecutionContext,
    duckdb: PipelineDatabase,
    evaluate: Callable[[str], dg.AssetCheckResult],
    evaluate_all: Callable[[list[str]], dg.AssetCheckResult] | None = None,
) -> dg.AssetCheckResult:
    """Evaluate a per-document check on the step's document, or on each document of a
    multi-document step (see the module docstring for what a failure means there).
    Failures of blocking checks are recorded in `blocked_documents`, passes clear them.

    `evaluate_all(keys)`, when given, checks every document of a multi-document step at
    once (one Great Expectations validation instead of one per document, which costs
    a third of a second each): it must pass only if every document would. When it
    fails, each document is evaluated on its own, to say which failed and why."""
    with duckdb.shared_connection():
        return _check_each(context, duckdb, evaluate, evaluate_all)


def _check_each(context, duckdb: PipelineDatabase, evaluate, evaluate_all) -> dg.AssetCheckResult:
    step = context.op_execution_context
    blocking = context.check_specs[0].blocking
    check_name = context.check_specs[0].name
    if step.has_partition_key:
        keys, stopped = [step.partition_key], {}
    else:
        keys, stopped = list(step.partition_keys), stopped_in_run(duckdb, step.run_id)
    to_check = [key for key in keys if key not in stopped]
    if evaluate_all is None:
        results = {key: evaluate(key) for key in to_check}
    else:
        results = _evaluate_in_halves(to_check, evaluate, evaluate_all)
    if blocking:
        with duckdb.get_connection() as con:
            for key, result in results.items():
                con.execute(f"DELETE FROM {BLOCKED_DOCUMENTS_TABLE} WHERE document_id = ? AND check_name = ?",
                            [key, check_name])
                if not result.passed:
                    con.execute(f"INSERT INTO {BLOCKED_DOCUMENTS_TABLE} VALUES (?, ?, ?, ?)",
                                [key, check_name, result.description or "failed", step.run_id])
    if step.has_partition_key:
        return results[keys[0]]
    failed = {key: result.description for key, result in results.items() if not result.passed}
    metadata = {"documents": len(results), "failed": len(failed), "skipped": len(stopped), "blocking": blocking,
                "failed_documents": dg.MetadataValue.json(failed)}
    # A range has one result in the UI: the first failing documents' failing rows go in it.
    for key in list(failed)[:FAILED_DOCUMENTS_SHOWN]:
        if "failing_rows" in (results[key].metadata or {}):
            metadata[f"failing_rows: {key}"] = results[key].metadata["failing_rows"]
    if not failed:
        return dg.AssetCheckResult(passed=True, description=f"all {len(results)} documents pass", metadata=metadata)
    severity = next(iter(results.values())).severity
    if blocking and len(failed) < len(results):
        severity = dg.AssetCheckSeverity.WARN  # the others go on; the failed ones are skipped below
    return dg.AssetCheckResult(
        passed=False, severity=severity, metadata=metadata,
        description=f"{len(failed)} of {len(results)} documents failed"
        + (" (stopped on their own, the others go on)" if blocking and severity == dg.AssetCheckSeverity.WARN else "")
        + ": " + "; ".join(f"{key}: {reason}" for key, reason in failed.items()),
    )
