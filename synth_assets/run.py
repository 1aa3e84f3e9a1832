"""`python -m synth_assets.run`: register the documents and materialise everything.

Documents run on the project's Dagster instance (the one `make ui` shows), in the runs
synth_assets/planning.py plans: one per document, or, when SYNTH_ASSETS_SINGLE_RUN_MIN_DOCUMENTS
(default 10) or more neighbouring documents need the same assets (the first run over a
folder, or a new prompt version for every document), one single-run backfill for them,
in which a bad file is recorded and then fails again in a run of its own
(synth_assets/batch.py). Then the training dataset is built from every document that
made it. Running it again replaces rows, it never duplicates them.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path
from dataclasses import dataclass, field

import dagster as dg
from tqdm import tqdm

from synth_assets import definitions, planning
from synth_assets.batch import blocked_documents, no_text_documents, run_outcome, warnings_in_range
from synth_assets.dagster_internals import free_concurrency_slots
from synth_assets.core.decontamination import eval_sets_fingerprint, parse_eval_sets
from synth_assets.jobs import BUILD_TRAINING_DATASET_JOB, PROCESS_DOCUMENTS_JOB
from synth_assets.assets.generate import GENERATED_QA_PAIRS_KEY, recorded_history
from synth_assets.assets.curate import FILTERED_QA_PAIRS_KEY
from synth_assets.core.chunking import load_tokenizer
from synth_assets.core.estimate import SAMPLE_SIZE, Estimate, History, NothingToEstimate, estimate, format_estimate, \
    sample_documents, text_size
from synth_assets.core.usage import add_counts, merge_per_server, usage_lines, usage_stats
from synth_assets.generation.estimate import sample_document
from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME
from synth_assets.storage import (
    ALPACA_EXAMPLES_TABLE,
    DOCUMENT_CHUNKS_TABLE,
    FILTERED_QA_PAIRS_TABLE,
    GENERATED_QA_PAIRS_TABLE,
    PARSED_DOCUMENTS_TABLE,
    REJECTED_QA_PAIRS_TABLE,
    documents_with_verdicts_since,
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
        free_concurrency_slots(instance, run.run_id)
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
PUBLISHED_DATASET_KEY = dg.AssetKey("published_dataset")
REVIEWED_QA_PAIRS_KEY = dg.AssetKey("reviewed_qa_pairs")


def _apply_new_verdicts(job, instance: dg.DagsterInstance, duckdb, keys: list[str]) -> list[str]:
    """Documents with verdicts recorded (on the review page) since the training dataset
    was last built: their reviewed_qa_pairs again, so the next dataset applies them.
    With the daemon, the reviewed_verdicts_sensor has usually done this already."""
    built = instance.get_latest_materialization_event(TRAINING_DATASET_KEY)
    since = None if built is None else time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(built.timestamp))
    with duckdb.get_connection() as con:
        new = [key for key in documents_with_verdicts_since(con, since) if key in keys]
    for key in new:
        job.execute_in_process(instance=instance, raise_on_error=False, run_config=QUIET_CONSOLE, tags=run_tags(),
                               partition_key=key, asset_selection=[REVIEWED_QA_PAIRS_KEY])
    return new


@dataclass
class Outcome:
    """What the runs found, per document: failures, blocking checks that failed, warnings;
    and what their generation steps asked of the model."""

    failed: dict[str, str] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    usage: dict[str, dict] = field(default_factory=dict)  # document -> {task: counts}, every run added
    from_cache: dict[str, dict] = field(default_factory=dict)  # the same, of replies taken from the cache
    usage_per_server: list[dict] = field(default_factory=list)  # each generation step's {url: counts}
    counted: dict = field(default_factory=lambda: {"requests": 0, "tokenizer": None})
    generation_seconds: float = 0.0

    def add_usage(self, result: dg.ExecuteInProcessResult) -> None:
        """The model usage recorded by the run's generated_qa_pairs (per document, per
        server, counted with the tokenizer) and its generation time, and by its
        filtered_qa_pairs (judge requests generation had not made, closed-book answers)."""
        steps = set()
        for event in result.get_asset_materialization_events():
            materialization = event.event_specific_data.materialization
            metadata = {key: value.value for key, value in materialization.metadata.items()}
            if materialization.asset_key == FILTERED_QA_PAIRS_KEY and isinstance(metadata.get("model_usage"), dict):
                for task, counts in metadata["model_usage"].items():
                    add_counts(self.usage.setdefault(materialization.partition, {}).setdefault(task, {}), counts)
            if materialization.asset_key != GENERATED_QA_PAIRS_KEY:
                continue
            for key, found in (("model_usage", self.usage), ("model_usage_from_cache", self.from_cache)):
                if isinstance(metadata.get(key), dict):
                    for task, counts in metadata[key].items():
                        add_counts(found.setdefault(materialization.partition, {}).setdefault(task, {}), counts)
            if isinstance(tokenized := metadata.get("usage_counted_with_tokenizer"), dict):
                self.counted["requests"] += tokenized["requests"]
                self.counted["tokenizer"] = tokenized["tokenizer"]
            if event.step_key not in steps:  # the step's own figures are on each of its documents
                steps.add(event.step_key)
                self.generation_seconds += float(metadata.get("generation_seconds") or 0)
                if isinstance(metadata.get("model_usage_per_server"), dict):
                    self.usage_per_server.append(metadata["model_usage_per_server"])


def _execute(job, instance: dg.DagsterInstance, planned: planning.PlannedRun, run_config: dict):
    return job.execute_in_process(
        instance=instance, raise_on_error=False, run_config=run_config, tags={**run_tags(), **planned.tags},
        partition_key=planned.partition_key, asset_selection=planned.asset_selection,
    )


def _run_one(job, instance: dg.DagsterInstance, planned: planning.PlannedRun, outcome: Outcome) -> None:
    key = planned.documents[0]
    result = _execute(job, instance, planned, QUIET_CONSOLE)
    outcome.add_usage(result)
    evaluations = [e for e in result.get_asset_check_evaluations() if not e.passed]
    failed_checks = [e for e in evaluations if e.severity == dg.AssetCheckSeverity.ERROR]
    for e in evaluations:
        if e.severity == dg.AssetCheckSeverity.WARN:
            outcome.warnings.setdefault(key, []).append(f"{e.asset_check_key.name}: {e.description}")
    outcome.failed.pop(key, None)  # after failing inside a run over many documents, this run decides
    if failed_checks:
        outcome.blocked[key] = "; ".join(f"{e.asset_check_key.name}: {e.description}" for e in failed_checks)
    elif not result.success:
        outcome.failed[key] = failure_reason(result)


def _run_many(job, instance: dg.DagsterInstance, duckdb, planned: planning.PlannedRun, outcome: Outcome,
              show_progress: bool) -> None:
    if show_progress:  # one run for all of them: its steps' log lines are the progress
        print(f"{len(planned.documents)} documents in one run ({planned.documents[0]} .. {planned.documents[-1]}); "
              "each step logs per document:", flush=True)
    result = _execute(job, instance, planned, BATCH_CONSOLE if show_progress else QUIET_CONSOLE)
    outcome.add_usage(result)
    failed, blocked = run_outcome(duckdb, result.run_id)
    outcome.blocked.update(blocked)
    for key, items in warnings_in_range(result.get_asset_check_evaluations()).items():
        outcome.warnings.setdefault(key, []).extend(items)
    if not result.success:  # the whole batch failed (every document, or the run itself)
        reason = failure_reason(result)
        outcome.failed.update({key: reason for key in planned.documents if key not in blocked})
    for key in planning.documents_to_run_alone(result.dagster_run.tags, failed):
        _run_one(job, instance, planning.PlannedRun((key,)), outcome)


def _still_blocked(instance: dg.DagsterInstance, duckdb, skipped: list[str]) -> dict[str, str]:
    """Documents not run again whose blocking check failed last time: nothing changed
    since, so they are still blocked."""
    blocked = {}
    failed = planning.failed_gates_of(instance, skipped)
    for key in skipped:  # blocked in a run of their own
        if gates := failed.get(key):
            names = ", ".join(name for checks in gates.values() for name in checks)
            blocked[key] = f"{names} failed on the last run; unchanged since, so still blocked"
    for key, reasons in blocked_documents(duckdb).items():  # blocked inside a batch
        if key in skipped and key not in blocked:
            blocked[key] = f"{reasons} (on the last run; unchanged since, so still blocked)"
    return blocked


def _eval_sets_changed(defs: dg.Definitions, instance: dg.DagsterInstance) -> bool:
    """SYNTH_ASSETS_EVAL_SETS (or an eval file) differs from the one the last training dataset
    was decontaminated against: it is built again. Nothing is read when none is set and none was."""
    event = instance.get_latest_materialization_event(TRAINING_DATASET_KEY)
    metadata = event.asset_materialization.metadata if event else {}
    last = metadata["eval_sets_fingerprint"].value if "eval_sets_fingerprint" in metadata else ""
    entries = defs.resources["export"].eval_sets
    return bool(entries or last) and eval_sets_fingerprint(parse_eval_sets(entries)) != last


def _export(defs: dg.Definitions, instance: dg.DagsterInstance, changed: bool, rebuild_dataset: bool = False) -> dict:
    """The training dataset, built again when documents changed or it is missing or stale
    (with `rebuild_dataset`, every document taken in again under a new dedup index
    generation), checked, then published; which version is published and which documents
    are left out."""
    latest = instance.get_latest_materialization_event(PUBLISHED_DATASET_KEY)
    error = None
    if (changed or rebuild_dataset or latest is None
            or not planning.is_fresh(instance, defs.resolve_asset_graph(), PUBLISHED_DATASET_KEY)
            or _eval_sets_changed(defs, instance)):
        run_config = {**QUIET_CONSOLE, "ops": {"training_dataset": {"config": {"rebuild_dataset": rebuild_dataset}}}}
        export = defs.resolve_job_def(BUILD_TRAINING_DATASET_JOB).execute_in_process(
            instance=instance, raise_on_error=False, run_config=run_config, tags=run_tags())
        failed_checks = [e for e in export.get_asset_check_evaluations() if not e.passed]
        if failed_checks:
            error = "; ".join(f"{e.asset_check_key.name}: {e.description}" for e in failed_checks)
        elif not export.success:
            error = failure_reason(export)
    candidate = instance.get_latest_materialization_event(TRAINING_DATASET_KEY)
    published = instance.get_latest_materialization_event(PUBLISHED_DATASET_KEY)
    candidate_metadata = candidate.asset_materialization.metadata if candidate else {}
    published_metadata = published.asset_materialization.metadata if published else {}
    live = published_metadata["live_version"].value if "live_version" in published_metadata else "none"
    excluded = candidate_metadata["excluded_documents"].value if "excluded_documents" in candidate_metadata else {}
    return {
        "export_ok": error is None and live != "none",
        "export_error": error,
        # From the settings, not the last materialization: one that published nothing new has no folder.
        "export_dir": str(Path(defs.resources["export"].export_dir).resolve() / live) if live != "none" else None,
        "published_version": live,
        "candidate_version": candidate_metadata["version"].value if "version" in candidate_metadata else "none",
        "export_status": (candidate_metadata["status"].value if "status" in candidate_metadata
                          else published_metadata["status"].value if "status" in published_metadata else ""),
        "excluded_documents": excluded,
        "split_note": candidate_metadata["split_note"].value if "split_note" in candidate_metadata else "",
    }


def run_all(
    defs: dg.Definitions, instance: dg.DagsterInstance, *, show_progress: bool = True, force: bool = False,
    single_run_min: int = planning.DEFAULT_SINGLE_RUN_MIN_DOCUMENTS, rebuild_dataset: bool = False,
) -> dict:
    """Materialise every document that needs it (all of them with `force`), then the
    training dataset; return a summary. Documents that are up to date (same file
    content, same code versions, all assets materialised) are skipped; `single_run_min`
    or more neighbours needing the same assets share one run."""
    documents, duckdb = defs.resources["documents"], defs.resources["duckdb"]
    planning.claim_instance(instance, documents.shard)
    recovered = recover_abandoned_runs(instance)
    files = documents.discover()
    keys = list(files)
    removed = planning.removed_documents(instance.get_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME), keys)
    dropped = planning.drop_removed(duckdb, removed, documents.on_removed)
    for key in dropped:
        instance.delete_dynamic_partition(DOCUMENTS_PARTITIONS_NAME, key)
    register_documents(instance, keys)
    graph = defs.resolve_asset_graph()
    whole = keys if force else planning.changed_documents(files, planning.stored_state(duckdb))
    found = planning.documents_needing_work(instance, graph, keys, whole=whole)
    planning.remember_up_to_date(instance, found)
    todo = [key for key in keys if found.work[key].needed]
    outcome = Outcome(blocked=_still_blocked(instance, duckdb, [key for key in keys if key not in todo]))
    plan = planning.plan_runs(found.work, instance.get_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME), single_run_min)
    job = defs.resolve_job_def(PROCESS_DOCUMENTS_JOB)
    for planned in plan:
        if planned.single_run:
            _run_many(job, instance, duckdb, planned, outcome, show_progress)
    alone = [planned for planned in plan if not planned.single_run]
    progress = tqdm(alone, desc="documents", unit="doc", disable=not (show_progress and alone), file=sys.stdout)
    for planned in progress:
        progress.set_postfix_str(planned.documents[0][:40])
        _run_one(job, instance, planned, outcome)
    if todo:  # remember which of them are now up to date, so the next look is quick
        completed = [key for key in todo if key not in outcome.failed and key not in outcome.blocked]
        planning.remember_up_to_date(instance, planning.up_to_date_after_run(instance, graph, todo, completed))
    # A document blocked by this run leaves the dataset, so it changes it too; so does one
    # that failed while it has rows there (its file changed: they are now refused).
    with duckdb.get_connection() as con:
        formatted = {row[0] for row in con.execute(
            f"SELECT DISTINCT document_id FROM {ALPACA_EXAMPLES_TABLE} WHERE document_id IN (SELECT unnest(?))",
            [list(outcome.failed)]).fetchall()}
    changed = [key for key in todo if key not in outcome.failed or key in formatted]
    changed += _apply_new_verdicts(job, instance, duckdb, keys)
    return {
        "recovered_runs": recovered,
        "corpus_shard": documents.shard,
        "documents": keys,
        "removed": removed,
        "on_removed": documents.on_removed,
        "processed": todo,
        "up_to_date": [key for key in keys if key not in todo],
        "failed": outcome.failed,
        "blocked_by_checks": outcome.blocked,
        # A status of its own, not a failure: up to date until the file changes.
        "no_text": {key: reason for key, reason in no_text_documents(duckdb).items()
                    if key in keys and key not in outcome.failed},
        "warnings": outcome.warnings,
        **_export(defs, instance, changed=bool(changed or dropped or force), rebuild_dataset=rebuild_dataset),
        **count_rows(defs, keys),
        "model_usage": _usage_of_this_run(defs, outcome, todo),
    }


def _usage_of_this_run(defs: dg.Definitions, outcome: Outcome, processed: list[str]) -> dict:
    """What this command's runs asked of the model (replies from the generation cache cost
    nothing), per kept item of the documents it processed."""
    generation = defs.resources["generation"]
    with defs.resources["duckdb"].get_connection() as con:
        kept = con.execute(f"SELECT count(*) FROM {FILTERED_QA_PAIRS_TABLE} WHERE document_id IN (SELECT unnest(?))",
                           [processed]).fetchone()[0]
    return usage_stats(outcome.usage, kept, uses_a_model=generation.uses_a_model,
                       per_server=merge_per_server(outcome.usage_per_server), counted=outcome.counted,
                       seconds=outcome.generation_seconds or None, prices=generation.prices(),
                       from_cache=outcome.from_cache)


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
        f"synth_assets{f' (corpus shard {shard})' if (shard := summary.get('corpus_shard')) else ''}: "
        f"{len(summary['documents'])} documents in {seconds:.1f} s",
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
    if summary.get("no_text"):
        lines.append(f"  no text:         {len(summary['no_text'])} (nothing to learn from: 0 pairs, not a failure)")
        lines += [f"    - {key}: {reason}" for key, reason in summary["no_text"].items()]
    if summary.get("warnings"):
        lines.append(f"  warnings:        {len(summary['warnings'])} documents (checks that warn, nothing blocked)")
        lines += [f"    - {key}: {'; '.join(items)}" for key, items in summary["warnings"].items()]
    lines += [
        f"  chunks:          {summary['chunks']}",
        f"  pairs generated: {summary['pairs_generated']}",
        f"  pairs kept:      {summary['pairs_kept']} ({summary['pairs_rejected']} rejected, kept in rejected_qa_pairs)",
    ]
    if summary.get("model_usage") and summary.get("processed"):
        usage = usage_lines(summary["model_usage"])
        lines.append(f"  model:           {usage[0]}")
        lines += [f"                   {line}" for line in usage[1:]]
    if summary["export_error"]:
        lines.append(f"  dataset:         NOT published: {summary['export_error']}")
    elif summary["published_version"] == "none":
        lines.append(f"  dataset:         none published: {summary['export_status']}")
    if summary["published_version"] != "none":
        # No candidate this time (nothing to learn from): say why the published one stays.
        kept = f", unchanged: {summary['export_status']}" if summary.get("candidate_version") == "none" else ""
        lines.append(f"  dataset:         {summary['export_dir']} (published version {summary['published_version']}{kept})")
    if summary.get("split_note") and summary["split_note"] != "near the asked ratio":
        lines.append(f"  split:           {summary['split_note']}")
    if summary.get("excluded_documents") and summary.get("candidate_version") == "none":
        lines.append(f"  left out: {len(summary['excluded_documents'])} (no new dataset could be built, so the "
                     "published one, which may still hold their last rows, stays)")
    elif summary.get("excluded_documents"):
        lines.append(f"  not in the dataset: {len(summary['excluded_documents'])}")
        lines += [f"    - {key}: {reason}" for key, reason in summary["excluded_documents"].items()]
    if summary["published_version"] != "none" and summary.get("export_dir"):
        # Last: the card (tasks, coverage, charts) is where a fine-tuner looks next.
        lines.append(f"  card:            {Path(summary['export_dir']) / 'README.md'}")
    return "\n".join(lines)


def estimate_folder(settings, sample_size: int = SAMPLE_SIZE, seed: int = 0,
                    instance: dg.DagsterInstance | None = None) -> Estimate:
    """The estimate of a full run over the documents folder (core/estimate.py), from a
    sample parsed and chunked in this process; raises NothingToEstimate when every
    sampled document fails. Reads the recorded runs of the instance, writes nothing."""
    documents, generation = settings.resources["documents"], settings.resources["generation"]
    files = documents.discover()
    tokenizer, tokenizer_name = load_tokenizer(generation.tokenizer_name)
    use_judge = settings.resources["curation"].filter_config().use_judge
    sizes = {key: text_size(path) for key, path in files.items()}
    sampled = [sample_document(key, files[key], tokenizer=tokenizer, max_bytes=documents.max_bytes,
                               layout_models_dir=documents.layout_models_path, chunk_tokens=generation.chunk_tokens,
                               overlap_tokens=generation.overlap_tokens, shares=generation.task_shares,
                               pairs_per_chunk=generation.pairs_per_chunk, use_judge=use_judge)
               for key in sample_documents(sizes, sample_size, seed)]
    history = recorded_history(instance, generation.model) if instance is not None else History()
    return estimate(sampled, sum(sizes.values()), len(files), history=history,
                    max_tokens=generation.generation_tokens, use_judge=use_judge,
                    throughput_setting=generation.throughput_tokens_per_s, prices=generation.prices(),
                    tokenizer=tokenizer_name,
                    # requests in flight only bound a server's backends (vllm in process takes all at once)
                    max_in_flight=(generation.max_concurrency * max(1, len(generation.base_urls))
                                   if generation.backend in ("openai", "vllm_serve") else None))


def estimate_main(settings, sample_size: int, seed: int) -> int:
    """`make run ARGS=--estimate`: print the estimate; 1 when every sampled document failed."""
    generation = settings.resources["generation"]
    if not generation.uses_a_model:
        print(f"{generation.backend}: the configured generator asks no model; below, what a model backend "
              "(SYNTH_ASSETS_GENERATION_BACKEND=openai, vllm or vllm_serve) would be asked")
    with dg.DagsterInstance.get() as instance:
        try:
            result = estimate_folder(settings, sample_size, seed, instance)
        except NothingToEstimate as error:
            print(f"estimate: nothing to estimate from: {error}", file=sys.stderr)
            return 1
    print(format_estimate(result, str(settings.resources["documents"].root)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--force", action="store_true", help="run every document, even those up to date")
    parser.add_argument("--rebuild-dataset", action="store_true",
                        help="build the training dataset whole: a new dedup index generation, word weights of "
                             "every question (otherwise only changed documents are taken in)")
    parser.add_argument("--estimate", action="store_true",
                        help="print the requests, tokens, time and cost a full run over the folder would take, "
                             "from a sample of its documents; generates nothing")
    parser.add_argument("--sample", type=int, default=SAMPLE_SIZE, metavar="N",
                        help=f"--estimate: documents to parse and chunk (all when the folder has no more; {SAMPLE_SIZE})")
    parser.add_argument("--seed", type=int, default=0, help="--estimate: which documents are sampled (0)")
    args = parser.parse_args(argv)
    if args.estimate:
        return estimate_main(definitions.settings, args.sample, args.seed)
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        try:
            summary = run_all(definitions.defs, instance, show_progress=not args.no_progress, force=args.force,
                              single_run_min=definitions.settings.single_run_min_documents,
                              rebuild_dataset=args.rebuild_dataset)
        except dg.Failure as stopped:  # before any run: the folder, the shard's instance
            print(f"synth_assets: {stopped.description}", file=sys.stderr)
            return 2
    print(format_summary(summary, time.perf_counter() - started))
    return 0 if summary["export_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
