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
  `PartitionKeyFilter`, and its status is an `AssetCheckExecutionRecordStatus`; for
  every document at once, a query of the storage's `asset_check_executions` table.
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
import sqlalchemy as db
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._core.storage.sqlalchemy_compat import db_fetch_mappings, db_select, db_subquery

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
    """failed_checks of many partitions (those with none left out), in one query: the
    latest execution of each check and partition, only the failed ones returned.

    Not `get_asset_check_partition_info` per thousand partitions: each of its calls also
    joins every partition's latest materialization and reads the asset's record with its
    status cache (all partitions, serialised), so asking about N partitions cost
    N / 1000 x O(N): 52 s at 100,000 documents, against about 1.5 s for this query
    (benchmarks/bench_orchestration.py)."""
    wanted = set(check_keys)
    if not wanted or not partition_keys:
        return {}
    table = AssetCheckExecutionsTable
    latest = db_subquery(
        db_select([db.func.max(table.c.id).label("id")])
        .where(db.and_(
            table.c.asset_key.in_(sorted({key.asset_key.to_string() for key in wanted})),
            table.c.check_name.in_(sorted({key.name for key in wanted})),
            table.c.partition.isnot(None),
            # Dagster leaves out planned executions of old records without an event id too.
            table.c.evaluation_event_storage_id.isnot(None),
        ))
        .group_by(table.c.asset_key, table.c.check_name, table.c.partition),
        "latest_check_executions",
    )
    query = (
        db_select([table.c.asset_key, table.c.check_name, table.c.partition])
        .select_from(table.join(latest, table.c.id == latest.c.id))
        .where(table.c.execution_status == AssetCheckExecutionRecordStatus.FAILED.value)
    )
    storage = instance.event_log_storage
    with storage.index_connection() as conn:  # type: ignore[attr-defined]  # SQL storages only
        rows = db_fetch_mappings(conn, query)
    asked = set(partition_keys)
    failed: dict[str, list[dg.AssetCheckKey]] = {}
    for row in rows:
        key = dg.AssetCheckKey(dg.AssetKey.from_db_string(row["asset_key"]), row["check_name"])
        if key in wanted and row["partition"] in asked:
            failed.setdefault(row["partition"], []).append(key)
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
