"""Every piece of Dagster that is not public API, in one place.

Planning asks Dagster three things that its public API does not answer yet, and
when a Dagster upgrade moves them, this module (and its test,
synth_assets_tests/test_dagster_internals.py) is the one place that breaks:

- Is this asset of this document stale? `CachingStaleStatusResolver` is what the UI
  uses to show "stale" (a changed code version, or an upstream whose data changed);
  it has no public constructor, so it is built the way Dagster's own test utilities
  build it, over an `AssetGraphView` at a `TemporalContext` of now. `StaleStatus` is
  the answer it gives.
- Did this document's latest blocking check fail? The latest check execution of one
  partition is only reachable through the event log storage with a
  `PartitionKeyFilter`, and its status is an `AssetCheckExecutionRecordStatus`.
- What did each document's assets last record? The latest storage id per partition
  (of materializations and observations) and the instance's key-value store (where
  sensors keep their cursors) let planning remember which documents were up to date,
  so it need not ask the resolver again while nothing changed.

A step over many documents puts each document's metadata on its own partition's
materialization. `context.add_asset_metadata(..., partition_key=)` checks the key
against the step's range by loading every partition of the dynamic partitions, at
each call: a step over N documents then reads N x N keys (13 ms a call at 200
documents, growing with the folder). `add_partition_metadata` adds to the same
accumulator without that check; its callers pass keys from `context.partition_keys`.

And one more, for `make run`: freeing the concurrency-pool slots of a run whose
process was killed (the daemon's run monitoring does it only for runs it launched).

`DagsterEventType` is public (`dg.DagsterEventType`); the current time comes from the
standard library.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

__all__ = [
    "add_partition_metadata",
    "CachingStaleStatusResolver",
    "StaleStatus",
    "failed_checks",
    "failed_checks_by_partition",
    "free_concurrency_slots",
    "latest_storage_ids",
    "read_instance_value",
    "stale_status_resolver",
    "write_instance_value",
]


def add_partition_metadata(context: dg.AssetExecutionContext, metadata: Mapping[str, Any], partition_key: str) -> None:
    """What `context.add_asset_metadata(metadata, partition_key=partition_key)` does, for a
    key of the step's own range, without loading every partition to check that it is."""
    step = context.op_execution_context._step_execution_context  # noqa: SLF001
    step._metadata_accumulator = step._metadata_accumulator.with_additional_asset_metadata(  # noqa: SLF001
        asset_key=context.assets_def.key, metadata=metadata, partition_key=partition_key)


def stale_status_resolver(instance: dg.DagsterInstance, asset_graph) -> CachingStaleStatusResolver:
    """Dagster's stale status (the one the UI shows) as of now; it caches what it
    reads, so one resolver serves one look at many documents."""
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=datetime.datetime.now(datetime.timezone.utc),
                                         last_event_id=None),
        instance=instance,
        asset_graph=asset_graph,
    )
    return CachingStaleStatusResolver(instance, asset_graph, view)


def failed_checks(
    instance: dg.DagsterInstance, check_keys: list[dg.AssetCheckKey], partition_key: str
) -> list[dg.AssetCheckKey]:
    """Those of `check_keys` whose latest execution for this partition failed."""
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        check_keys, partition_filter=PartitionKeyFilter(key=partition_key))
    return [key for key, record in latest.items() if record.status == AssetCheckExecutionRecordStatus.FAILED]


def failed_checks_by_partition(
    instance: dg.DagsterInstance, check_keys: list[dg.AssetCheckKey], partition_keys: list[str]
) -> dict[str, list[dg.AssetCheckKey]]:
    """failed_checks of many partitions (those with none left out), in a query per check
    and thousand partitions rather than one per partition (5 ms each, so 15 s at every
    look over 3,000 documents)."""
    failed: dict[str, list[dg.AssetCheckKey]] = {}
    for start in range(0, len(partition_keys), 1000):  # under the databases' parameter limits
        infos = instance.event_log_storage.get_asset_check_partition_info(
            check_keys, partition_keys=partition_keys[start:start + 1000])
        for info in infos:
            if info.latest_execution_status == AssetCheckExecutionRecordStatus.FAILED:
                failed.setdefault(info.partition_key, []).append(info.check_key)
    return failed


def latest_storage_ids(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, event_type: dg.DagsterEventType
) -> dict[str, int]:
    """Partition key -> storage id of this asset's latest event of this type."""
    return dict(instance.event_log_storage.get_latest_storage_id_by_partition(asset_key, event_type))


def read_instance_value(instance: dg.DagsterInstance, key: str) -> str | None:
    """A value kept in the instance's key-value store (None when there is none)."""
    return instance.daemon_cursor_storage.get_cursor_values({key}).get(key)


def write_instance_value(instance: dg.DagsterInstance, key: str, value: str) -> None:
    instance.daemon_cursor_storage.set_cursor_values({key: value})


def free_concurrency_slots(instance: dg.DagsterInstance, run_id: str) -> None:
    """Free the concurrency-pool slots a run holds (its process is gone)."""
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)
