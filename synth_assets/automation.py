"""Declarative automation: how assets follow their upstreams without anyone pressing a button.

- Every per-document asset below raw_documents is `eager`: when its upstream partition
  is updated by a run that did not also target it (someone re-materialised
  parsed_documents from the UI, say), it runs again; a run of the whole
  process_documents job does not retrigger anything (Dagster ignores updates made by a
  run that already targeted the asset).
- training_dataset is rebuilt once the documents it merges have changed and none of
  them is still running, and every night on the catch-up cron. Not `eager`: eager waits while any upstream partition is
  missing, and a document that failed (a bad file) stays missing for good, which
  would stop the dataset from ever following.

The automation sensor that evaluates these conditions runs by default (every 30 s).
New and changed files are picked up by the documents sensor (sensors.py); changes of
code, prompt or threshold versions by the nightly catch-up schedule (schedules.py).
"""

import os

import dagster as dg

AUTOMATION_SENSOR = "synth_assets_automation"
CATCH_UP_CRON_ENV = "SYNTH_ASSETS_CATCH_UP_CRON"
DEFAULT_CATCH_UP_CRON = "0 2 * * *"  # 02:00 every night
CATCH_UP_CRON = os.environ.get(CATCH_UP_CRON_ENV, DEFAULT_CATCH_UP_CRON)

follows_upstream = dg.AutomationCondition.eager()

rebuilt_after_documents_change = (
    (
        dg.AutomationCondition.any_deps_updated()
        | dg.AutomationCondition.cron_tick_passed(CATCH_UP_CRON)
    ).since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("rebuilt_after_documents_change")

automation_sensor = dg.AutomationConditionSensorDefinition(
    AUTOMATION_SENSOR,
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Runs the assets whose automation conditions are met: downstream assets "
    "follow their upstreams, and training_dataset is rebuilt after documents change.",
)
