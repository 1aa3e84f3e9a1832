"""The synth_assets code location: the one Definitions object workspace.yaml points to."""

import warnings

import dagster as dg

# The pipeline uses Dagster's beta features on purpose (single-run backfill policies,
# pools); their warnings, printed at every import, would bury make run's progress and
# the UI's logs, and ask nothing of the user. Set before the assets are imported.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

from synth_assets.assets import build_pipeline_assets  # noqa: E402
from synth_assets.automation import automation_sensor  # noqa: E402
from synth_assets.checks import quality_checks  # noqa: E402
from synth_assets.jobs import build_training_dataset_job, process_documents_job  # noqa: E402
from synth_assets.schedules import build_nightly_catch_up  # noqa: E402
from synth_assets.sensors import (  # noqa: E402
    build_documents_sensor,
    build_reviewed_verdicts_sensor,
    documents_failed_in_a_batch_run_alone,
)
from synth_assets.settings import Settings  # noqa: E402


def build_definitions(resources: dict | None = None, settings: Settings | None = None) -> dg.Definitions:
    """The code location for these settings (read from the environment when not given),
    with `resources` replacing the configured ones (tests use this). The assets' code
    versions come from the resources the runs will use."""
    settings = settings or Settings.from_env()
    resources = {**settings.resources, **(resources or {})}
    return dg.Definitions(
        assets=build_pipeline_assets(resources["generation"], resources["curation"], settings.catch_up_cron,
                                     resources["review"]),
        asset_checks=quality_checks,
        jobs=[process_documents_job, build_training_dataset_job],
        sensors=[
            build_documents_sensor(minimum_interval_seconds=settings.sensor_interval_s,
                                   single_run_min_documents=settings.single_run_min_documents),
            documents_failed_in_a_batch_run_alone,
            build_reviewed_verdicts_sensor(minimum_interval_seconds=settings.sensor_interval_s,
                                           single_run_min_documents=settings.single_run_min_documents),
            automation_sensor,
        ],
        schedules=[build_nightly_catch_up(cron_schedule=settings.catch_up_cron,
                                          single_run_min_documents=settings.single_run_min_documents)],
        resources=resources,
        executor=settings.executor,  # SYNTH_ASSETS_EXECUTOR: in_process, celery workers or k8s
    )


# Read once for the code location; `make run` (run.py) uses the same two objects.
settings = Settings.from_env()
defs = build_definitions(settings=settings)
