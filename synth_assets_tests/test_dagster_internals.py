"""The Dagster internals synth_assets relies on (synth_assets/dagster_internals.py) still
work as used: when a Dagster upgrade moves or changes one, this fails first, naming it."""

import dagster as dg

from synth_assets.dagster_internals import (
    StaleStatus,
    add_partition_metadata,
    failed_checks,
    failed_checks_by_partition,
    free_concurrency_slots,
    latest_storage_ids,
    read_instance_value,
    stale_status_resolver,
    write_instance_value,
)

documents = dg.DynamicPartitionsDefinition(name="documents")


@dg.asset(partitions_def=documents, code_version="1")
def upstream() -> dg.MaterializeResult:
    return dg.MaterializeResult()


@dg.asset(partitions_def=documents, deps=[upstream], code_version="1")
def downstream() -> dg.MaterializeResult:
    return dg.MaterializeResult()


@dg.asset_check(asset=upstream, blocking=True, partitions_def=documents)
def upstream_is_good(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=context.op_execution_context.partition_key != "bad")


TINY = dg.Definitions(assets=[upstream, downstream])
TINY_WITH_CHECK = dg.Definitions(assets=[upstream, downstream], asset_checks=[upstream_is_good])


def materialize(instance: dg.DagsterInstance, partition_key: str, definitions: dg.Definitions = TINY):
    instance.add_dynamic_partitions("documents", [partition_key])
    job = definitions.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance, partition_key=partition_key, raise_on_error=False)


def test_the_stale_status_resolver_reads_fresh_missing_and_stale() -> None:
    with dg.instance_for_test() as instance:
        assert materialize(instance, "done").success
        instance.add_dynamic_partitions("documents", ["new"])
        graph = TINY.resolve_asset_graph()
        resolver = stale_status_resolver(instance, graph)
        assert resolver.get_status(downstream.key, "done") == StaleStatus.FRESH
        assert resolver.get_status(downstream.key, "new") == StaleStatus.MISSING

        changed = dg.Definitions(assets=[upstream.map_asset_specs(
            lambda spec: spec.replace_attributes(code_version="2")), downstream])
        resolver = stale_status_resolver(instance, changed.resolve_asset_graph())
        assert resolver.get_status(upstream.key, "done") == StaleStatus.STALE


def test_latest_storage_ids_are_per_partition() -> None:
    with dg.instance_for_test() as instance:
        materialize(instance, "a")
        first = latest_storage_ids(instance, upstream.key, dg.DagsterEventType.ASSET_MATERIALIZATION)
        materialize(instance, "b")
        materialize(instance, "a")
        later = latest_storage_ids(instance, upstream.key, dg.DagsterEventType.ASSET_MATERIALIZATION)
        assert set(later) == {"a", "b"} and later["a"] > first["a"]
        assert latest_storage_ids(instance, upstream.key, dg.DagsterEventType.ASSET_OBSERVATION) == {}


def test_failed_checks_reads_the_latest_execution_of_one_partition() -> None:
    with dg.instance_for_test() as instance:
        assert not materialize(instance, "bad", TINY_WITH_CHECK).success  # the blocking check stops it
        assert materialize(instance, "good", TINY_WITH_CHECK).success
        assert failed_checks(instance, [upstream_is_good.check_key], "bad") == [upstream_is_good.check_key]
        assert failed_checks(instance, [upstream_is_good.check_key], "good") == []
        # the same, read for many partitions at once (a partition passing or never checked: absent)
        assert failed_checks_by_partition(instance, [upstream_is_good.check_key], ["bad", "good", "unknown"]) == {
            "bad": [upstream_is_good.check_key]}


def test_values_kept_in_the_instance_and_freed_slots() -> None:
    with dg.instance_for_test() as instance:
        assert read_instance_value(instance, "synth_assets/test") is None
        write_instance_value(instance, "synth_assets/test", '{"a": 1}')
        assert read_instance_value(instance, "synth_assets/test") == '{"a": 1}'
        free_concurrency_slots(instance, "no-such-run")  # nothing held: nothing to free, no error


@dg.asset(partitions_def=documents, backfill_policy=dg.BackfillPolicy.single_run())
def per_document_notes(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    for key in context.partition_keys:
        add_partition_metadata(context, {"note": f"about {key}"}, key)
    return dg.MaterializeResult(metadata={"documents": len(context.partition_keys)})


def test_metadata_added_per_partition_lands_on_each_partitions_materialization() -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("documents", ["a", "b", "c"])
        job = dg.Definitions(assets=[per_document_notes]).resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(instance=instance, tags={
            "dagster/asset_partition_range_start": "a", "dagster/asset_partition_range_end": "c"})
        assert result.success
        events = {e.partition: e.metadata for e in result.asset_materializations_for_node("per_document_notes")}
        assert {key: metadata["note"].value for key, metadata in events.items()} == {
            "a": "about a", "b": "about b", "c": "about c"}
        assert all(metadata["documents"].value == 3 for metadata in events.values())
