"""The nightly catch-up: whatever is missing or stale is run again, and nothing else."""

import functools
import hashlib
import json

import dagster as dg

# Dagster's stale-status resolver is what the UI uses to show "stale"; it has no public
# constructor yet, so it is built the way dagster's own test utilities build it.
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._time import get_current_datetime

from dagster._core.event_api import PartitionKeyFilter
from dagster._core.events import DagsterEventType
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from synth_assets.automation import CATCH_UP_CRON
from synth_assets.batch import contiguous_blocks, range_tags, single_run_min_documents
from synth_assets.checks import quality_checks
from synth_assets.jobs import PROCESS_DOCUMENTS_JOB, process_documents_job
from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME

CATCH_UP_SCHEDULE = "nightly_catch_up"
# Key, in the instance's key-value store (where sensors keep their cursors), of the
# documents last found up to date: see documents_needing_work.
UP_TO_DATE_DOCUMENTS_KEY = "synth_assets/up_to_date_documents"


def stale_status_resolver(instance: dg.DagsterInstance, asset_graph) -> CachingStaleStatusResolver:
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=asset_graph,
    )
    return CachingStaleStatusResolver(instance, asset_graph, view)


def is_fresh(instance: dg.DagsterInstance, asset_graph, key: dg.AssetKey, partition_key: str | None = None) -> bool:
    return stale_status_resolver(instance, asset_graph).get_status(key, partition_key) == StaleStatus.FRESH


def assets_needing_work(
    instance: dg.DagsterInstance, asset_graph, partition_key: str, resolver: CachingStaleStatusResolver | None = None
) -> list[dg.AssetKey]:
    """The per-document assets of one document that are missing or stale (their code
    version, such as the model, prompt version or a filter threshold, or an upstream's
    data changed since they were materialised), and what is below them, in graph order.

    Blocking checks gate their downstream only within one run, so: below an asset
    whose blocking check failed last time and that has not changed since, nothing is
    needed (the document stays blocked until it changes); and when an asset below a
    gated asset is needed, the gated asset runs again too, so its check decides again.
    """
    resolver = resolver or stale_status_resolver(instance, asset_graph)
    keys = per_document_assets(asset_graph)
    stale = {key for key in keys if resolver.get_status(key, partition_key) != StaleStatus.FRESH}
    blocked_at = {key for key in failed_gates(instance, partition_key) if key not in stale}
    needed: set[dg.AssetKey] = set()
    for key in keys:  # graph order: what is below a needed asset will change too
        parents = asset_graph.get(key).parent_keys
        if parents & blocked_at and not parents & needed:
            blocked_at.add(key)  # below a gate that failed and has not changed: wait
            continue
        if key in stale or parents & needed:
            needed.add(key)
            blocked_at.discard(key)  # it runs again, so its check decides again
    gated = gated_assets()
    for key in list(needed):
        needed |= asset_graph.get(key).parent_keys & gated
    return [key for key in keys if key in needed]


def per_document_assets(asset_graph) -> list[dg.AssetKey]:
    return [
        key for key in asset_graph.toposorted_asset_keys
        if asset_graph.get(key).is_materializable and asset_graph.get(key).partitions_def is not None
    ]


def documents_needing_work(
    instance: dg.DagsterInstance, asset_graph, partition_keys: list[str]
) -> dict[str, list[dg.AssetKey]]:
    """assets_needing_work for each of these documents.

    Dagster's stale status costs a few event-log queries per asset and document (about
    35 ms per document on a 2-core machine, so minutes for thousands of documents at
    every look). So the documents found up to date are remembered, in the instance,
    with the code versions of the assets and the storage ids of each asset's latest
    materialization and observation for that document: these are all a document's
    stale status depends on (its assets only depend on its own partitions). While they
    are the same, the document is still up to date and Dagster is not asked again; any
    new materialization, wipe or code change makes it asked. Only documents that are
    wholly fresh are remembered, not blocked ones (their gate's check may run again).
    """
    resolver = stale_status_resolver(instance, asset_graph)
    keys = per_document_assets(asset_graph)
    definitions = hashlib.sha256(json.dumps([
        [key.to_user_string(), asset_graph.get(key).code_version,
         sorted(parent.to_user_string() for parent in asset_graph.get(key).parent_keys)]
        for key in keys
    ]).encode()).hexdigest()
    latest = [
        instance.event_log_storage.get_latest_storage_id_by_partition(key, event_type)
        for key in keys
        for event_type in (DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION)
    ]

    def records(partition_key: str) -> str:
        return ",".join(str(ids.get(partition_key, "")) for ids in latest)

    stored = json.loads(
        instance.daemon_cursor_storage.get_cursor_values({UP_TO_DATE_DOCUMENTS_KEY}).get(UP_TO_DATE_DOCUMENTS_KEY)
        or "{}")
    up_to_date: dict[str, str] = stored.get("documents", {}) if stored.get("definitions") == definitions else {}
    work: dict[str, list[dg.AssetKey]] = {}
    for partition_key in partition_keys:
        if up_to_date.get(partition_key) == records(partition_key):
            work[partition_key] = []
            continue
        up_to_date.pop(partition_key, None)
        work[partition_key] = assets_needing_work(instance, asset_graph, partition_key, resolver)
        if all(resolver.get_status(key, partition_key) == StaleStatus.FRESH for key in keys):  # cached
            up_to_date[partition_key] = records(partition_key)
    known = set(instance.get_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME))
    instance.daemon_cursor_storage.set_cursor_values({UP_TO_DATE_DOCUMENTS_KEY: json.dumps({
        "definitions": definitions,
        "documents": {key: value for key, value in up_to_date.items() if key in known},
    })})
    return work


def failed_gates(instance: dg.DagsterInstance, partition_key: str) -> dict[dg.AssetKey, list[str]]:
    """Assets of this document whose latest blocking check evaluation failed, with the
    names of those checks."""
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        _partitioned_blocking_checks(), partition_filter=PartitionKeyFilter(key=partition_key))
    failed: dict[dg.AssetKey, list[str]] = {}
    for key, record in latest.items():
        if record.status == AssetCheckExecutionRecordStatus.FAILED:
            failed.setdefault(key.asset_key, []).append(key.name)
    return failed


@functools.cache
def _partitioned_blocking_checks() -> list[dg.AssetCheckKey]:
    return [spec.key for checks in quality_checks for spec in checks.check_specs
            if spec.blocking and spec.partitions_def is not None]


@functools.cache
def gated_assets() -> frozenset[dg.AssetKey]:
    """Assets with a blocking check."""
    return frozenset(spec.asset_key for checks in quality_checks for spec in checks.check_specs if spec.blocking)


def catch_up_requests(instance: dg.DagsterInstance, asset_graph, tick: str) -> list[dg.RunRequest]:
    """The runs for the documents that need work, for only the assets that need it:
    one run per document, or one single-run backfill for SYNTH_ASSETS_SINGLE_RUN_MIN_DOCUMENTS
    or more neighbouring documents needing the same assets (after a prompt or model
    change, every document does). (The training dataset follows by its automation
    condition: after these runs, and on the same cron.)"""
    order = instance.get_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME)
    work = documents_needing_work(instance, asset_graph, order)
    by_selection: dict[tuple, list[str]] = {}
    for key in order:
        if stale := work[key]:
            by_selection.setdefault(tuple(stale), []).append(key)
    requests = []
    minimum = single_run_min_documents()
    for selection, keys in by_selection.items():
        for block in contiguous_blocks(keys, order):
            tags = {"synth_assets/trigger": "catch-up"}
            if len(block) >= minimum:
                requests.append(dg.RunRequest(
                    job_name=PROCESS_DOCUMENTS_JOB, asset_selection=list(selection),
                    run_key=f"catch-up:{tick}:{block[0]}..{block[-1]}", tags={**tags, **range_tags(block[0], block[-1])},
                ))
                continue
            requests += [
                dg.RunRequest(job_name=PROCESS_DOCUMENTS_JOB, partition_key=key, asset_selection=list(selection),
                              run_key=f"catch-up:{tick}:{key}", tags=tags)
                for key in block
            ]
    return requests


@dg.schedule(
    name=CATCH_UP_SCHEDULE,
    cron_schedule=CATCH_UP_CRON,
    job=process_documents_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def nightly_catch_up(context: dg.ScheduleEvaluationContext):
    """Every night (SYNTH_ASSETS_CATCH_UP_CRON, default 02:00): runs, per document, only
    the assets that are missing or stale (after a change of model, prompt version or
    filter threshold, say). The training dataset is rebuilt on the same cron and after
    these runs (its automation condition)."""
    tick = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
    requests = catch_up_requests(context.instance, context.repository_def.asset_graph, tick)
    if not requests:
        return dg.SkipReason("every document is up to date")
    return requests
