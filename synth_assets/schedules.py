"""The nightly catch-up: whatever is missing or stale is run again, and nothing else."""

import dagster as dg

# Dagster's stale-status resolver is what the UI uses to show "stale"; it has no public
# constructor yet, so it is built the way dagster's own test utilities build it.
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._time import get_current_datetime

from synth_assets.automation import CATCH_UP_CRON
from synth_assets.jobs import PROCESS_DOCUMENTS_JOB, process_documents_job
from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME

CATCH_UP_SCHEDULE = "nightly_catch_up"


def stale_status_resolver(instance: dg.DagsterInstance, asset_graph) -> CachingStaleStatusResolver:
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=asset_graph,
    )
    return CachingStaleStatusResolver(instance, asset_graph, view)


def is_fresh(instance: dg.DagsterInstance, asset_graph, key: dg.AssetKey, partition_key: str | None = None) -> bool:
    return stale_status_resolver(instance, asset_graph).get_status(key, partition_key) == StaleStatus.FRESH


def assets_needing_work(instance: dg.DagsterInstance, asset_graph, partition_key: str) -> list[dg.AssetKey]:
    """The per-document assets of one document that are missing or stale (their code
    version, such as the model, prompt version or a filter threshold, or an upstream's
    data changed since they were materialised), in graph order."""
    resolver = stale_status_resolver(instance, asset_graph)
    keys = [
        key for key in asset_graph.toposorted_asset_keys
        if asset_graph.get(key).is_materializable and asset_graph.get(key).partitions_def is not None
    ]
    needed: set[dg.AssetKey] = set()
    for key in keys:  # graph order: what is below a needed asset will change too
        if resolver.get_status(key, partition_key) != StaleStatus.FRESH or needed & asset_graph.get(key).parent_keys:
            needed.add(key)
    # A blocking check gates its downstream only within one run: when an asset below a
    # gated asset is needed, the gated asset runs again too, so its check decides again
    # (otherwise a document blocked yesterday would reach the exports today).
    for key in list(needed):
        needed |= {parent for parent in asset_graph.get(key).parent_keys if parent in gated_assets()}
    return [key for key in keys if key in needed]


def gated_assets() -> set[dg.AssetKey]:
    """Assets with a blocking check."""
    from synth_assets.checks import quality_checks

    return {spec.asset_key for checks in quality_checks for spec in checks.check_specs if spec.blocking}


def catch_up_requests(instance: dg.DagsterInstance, asset_graph, tick: str) -> list[dg.RunRequest]:
    """One run per document that needs work, for only the assets that need it. (The
    training dataset follows by its automation condition: after these runs, and on the
    same cron.)"""
    requests = []
    for key in instance.get_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME):
        stale = assets_needing_work(instance, asset_graph, key)
        if stale:
            requests.append(dg.RunRequest(
                job_name=PROCESS_DOCUMENTS_JOB, partition_key=key, asset_selection=stale,
                run_key=f"catch-up:{tick}:{key}", tags={"synth_assets/trigger": "catch-up"},
            ))
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
