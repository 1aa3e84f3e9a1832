"""The nightly catch-up: whatever is missing or stale is run again, and nothing else."""

import dagster as dg

from synth_assets.jobs import process_documents_job
from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME
from synth_assets.planning import documents_in_progress, documents_needing_work, plan_runs, remember_up_to_date

CATCH_UP_SCHEDULE = "nightly_catch_up"


def catch_up_requests(
    instance: dg.DagsterInstance, asset_graph, tick: str, single_run_min_documents: int
) -> list[dg.RunRequest]:
    """The runs for the documents that need work, for only the assets that need it, as
    synth_assets/planning.py groups them. (The training dataset follows by its
    automation condition: after these runs, and on the same cron.)"""
    order = instance.get_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME)
    # A document a queued or started run targets is left to that run (one launcher per partition).
    busy = documents_in_progress(instance, order)
    found = documents_needing_work(instance, asset_graph, [key for key in order if key not in busy])
    remember_up_to_date(instance, found)
    return [planned.request(run_key=f"catch-up:{tick}:{planned.span}", trigger="catch-up")
            for planned in plan_runs(found.work, order, single_run_min_documents)]


def build_nightly_catch_up(*, cron_schedule: str, single_run_min_documents: int) -> dg.ScheduleDefinition:
    """The catch-up schedule, on `cron_schedule`; `single_run_min_documents` or more
    neighbouring documents that need the same assets go in one single-run backfill."""

    @dg.schedule(
        name=CATCH_UP_SCHEDULE,
        cron_schedule=cron_schedule,
        job=process_documents_job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def nightly_catch_up(context: dg.ScheduleEvaluationContext):
        """Every night (SYNTH_ASSETS_CATCH_UP_CRON, default 02:00): runs, per document, only
        the assets that are missing or stale (after a change of model, prompt version or
        filter threshold, say); SYNTH_ASSETS_SINGLE_RUN_MIN_DOCUMENTS (default 10) or more
        neighbouring documents needing the same assets share one single-run backfill.
        The training dataset is rebuilt on the same cron and after these runs (its
        automation condition)."""
        tick = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
        requests = catch_up_requests(context.instance, context.repository_def.asset_graph, tick,
                                     single_run_min_documents)
        if not requests:
            return dg.SkipReason("every document is up to date")
        return requests

    return nightly_catch_up
