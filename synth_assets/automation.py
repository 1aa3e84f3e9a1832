"""Declarative automation: how assets follow their upstreams without anyone pressing a button.

The conditions live beside the assets that use them: per-document assets follow their
upstream (assets/factory.py), training_dataset is rebuilt after documents change and
on the catch-up cron (assets/export.py). This sensor evaluates them (every 30 s, on by
default). New and changed files are picked up by the documents sensor (sensors.py);
changes of code, prompt or threshold versions by the nightly catch-up (schedules.py).
"""

import dagster as dg

AUTOMATION_SENSOR = "synth_assets_automation"

automation_sensor = dg.AutomationConditionSensorDefinition(
    AUTOMATION_SENSOR,
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Runs the assets whose automation conditions are met: downstream assets "
    "follow their upstreams, and training_dataset is rebuilt after documents change.",
)
