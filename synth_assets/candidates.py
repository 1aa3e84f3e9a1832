"""Which training dataset candidate a run checks and publishes (issue 28, item 2).

Runs of the training dataset can overlap (the automation sensor, the documents sensor
after a removal, `make run`, a button in the UI). The instance's *latest*
training_dataset materialization may then be another run's candidate, written after
this run's own: a check reading "the latest" validates that one, and a publish reading
"the latest" publishes a version no check passed. So:

- the dataset check validates the candidate its own run materialised (the latest one
  only when its run materialised none, such as a check launched alone from the UI), and
  names that version in its result;
- published_dataset publishes the candidate its own run materialised, and only when the
  dataset check of that same run passed naming that same version. A run that
  materialised no candidate publishes the version the latest evaluation of the check
  names, when that evaluation passed; otherwise nothing new.

Nothing here imports the assets (assets/export.py imports this module).
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

TRAINING_DATASET_KEY = dg.AssetKey("training_dataset")
TRAINING_DATASET_CHECK = "training_dataset_has_no_cross_document_duplicates_or_split_leaks"
TRAINING_DATASET_CHECK_KEY = dg.AssetCheckKey(TRAINING_DATASET_KEY, TRAINING_DATASET_CHECK)
NO_CANDIDATE = "none"


def _version(metadata) -> str:
    value = metadata.get("version") if metadata else None
    return str(value.value if isinstance(value, dg.MetadataValue) else value) if value is not None else NO_CANDIDATE


def _run_events(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType):
    records = instance.get_records_for_run(run_id, of_type=event_type).records
    return [record.event_log_entry.dagster_event for record in records if record.event_log_entry.dagster_event]


def _materialization_of_run(instance: dg.DagsterInstance, run_id: str):
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    found = [record.event_log_entry.asset_materialization for record in records
             if record.event_log_entry.dagster_event.asset_key == TRAINING_DATASET_KEY]
    return found[-1] if found else None


def candidate_of_run(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The version of the training dataset this run materialised ("none" when it wrote no
    candidate), or None when this run did not materialise training_dataset."""
    materialization = _materialization_of_run(instance, run_id)
    return _version(materialization.metadata) if materialization else None


def candidate_to_check(instance: dg.DagsterInstance, run_id: str) -> tuple[str, dict]:
    """The version the dataset check of this run validates, and the metadata its
    materialization recorded (values unwrapped): its own run's candidate, or, when the
    check runs without it (launched alone), the latest one."""
    materialization = _materialization_of_run(instance, run_id)
    if materialization is None:
        event = instance.get_latest_materialization_event(TRAINING_DATASET_KEY)
        materialization = event.asset_materialization if event else None
    metadata = {key: value.value if isinstance(value, dg.MetadataValue) else value
                for key, value in (materialization.metadata if materialization else {}).items()}
    return _version(metadata), metadata


@dataclass(frozen=True)
class ToPublish:
    version: str | None  # None: nothing (new) to publish
    reason: str


def candidate_to_publish(instance: dg.DagsterInstance, run_id: str) -> ToPublish:
    """The version published_dataset of this run may publish, and why (see the module)."""
    own = candidate_of_run(instance, run_id)
    if own is not None:
        if own == NO_CANDIDATE:
            return ToPublish(None, "this run's training_dataset wrote no candidate")
        checked = [event.event_specific_data
                   for event in _run_events(instance, run_id, dg.DagsterEventType.ASSET_CHECK_EVALUATION)
                   if event.event_specific_data.asset_check_key == TRAINING_DATASET_CHECK_KEY]
        if not checked:
            return ToPublish(None, f"candidate {own} was not checked in this run ({TRAINING_DATASET_CHECK} did not run)")
        evaluation = checked[-1]
        if not evaluation.passed or _version(evaluation.metadata) != own:
            return ToPublish(None, f"{TRAINING_DATASET_CHECK} did not pass on candidate {own} in this run "
                                   f"(it {'passed' if evaluation.passed else 'failed'} on "
                                   f"{_version(evaluation.metadata)})")
        return ToPublish(own, f"candidate {own} of this run, checked in this run")
    record = instance.get_latest_asset_check_evaluation_record(TRAINING_DATASET_CHECK_KEY)
    dagster_event = record.event.dagster_event if record and record.event else None
    evaluation = dagster_event.event_specific_data if dagster_event else None
    if not isinstance(evaluation, dg.AssetCheckEvaluation):  # none yet, or only planned (not finished)
        return ToPublish(None, f"no candidate in this run, and {TRAINING_DATASET_CHECK} never ran")
    version = _version(evaluation.metadata)
    if not evaluation.passed or version == NO_CANDIDATE:
        return ToPublish(None, f"no candidate in this run, and the latest {TRAINING_DATASET_CHECK} "
                               f"{'failed' if not evaluation.passed else 'had no candidate'} (on {version})")
    return ToPublish(version, f"candidate {version}, which the latest {TRAINING_DATASET_CHECK} passed")
