"""`python -m synth_assets.migrate` (`make migrate`): copy an embedded project into the team profile.

Run it where the team profile is configured (docs/DEPLOYMENT.md: DAGSTER_HOME holds
deploy/team/dagster.yaml, SYNTH_ASSETS_DUCKLAKE_CATALOG and _DATA_PATH are set). It reads
the embedded project, which nothing may be using meanwhile (stop `make ui` and `make
run` there first), from
- SYNTH_ASSETS_DUCKDB_PATH: its DuckDB file (default data/synth_assets.duckdb), and
- SYNTH_ASSETS_MIGRATE_FROM_DAGSTER_HOME: its Dagster instance (default .dagster_home),

and copies every pipeline table into the DuckLake (one transaction, then every row
compared), and into the team instance: the runs with their snapshots and event logs
(materializations, observations, check evaluations), backfills, the documents'
partitions, the documents remembered up to date, and the sensors' and schedule's states
with their cursors. Then it checks that each run has all its events and each asset the
same latest materialization and observation per document.

Running it again is safe: tables already copied are checked, not copied twice (a lake
holding other rows is refused, naming the table), runs copied whole are skipped, a run
copied halfway is copied again, and what the team instance has of its own is kept. A
team instance whose own runs materialized or observed the embedded assets is refused,
naming the asset; every refusal comes before anything is copied.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb

from synth_assets import definitions, planning
from synth_assets.dagster_internals import latest_storage_ids
from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME
from synth_assets.resources.storage import LAKE_ALIAS, PipelineDatabase, sql_literal
from synth_assets.storage import TABLE_DDL, in_transaction, is_lock_error, table_columns

EMBEDDED_ALIAS = "embedded"
# Dagster hands out at most this many event records per call.
RECORDS_PAGE = 10_000


class MigrationError(Exception):
    """The migration cannot go on, or did not copy everything: the message says why."""


@dataclass
class Migrated:
    """What was copied (and what was already there)."""

    rows: dict[str, int] = field(default_factory=dict)
    tables_already_there: bool = False
    runs_copied: int = 0
    runs_already_there: int = 0
    events: int = 0
    partitions: int = 0
    remembered_documents: int = 0
    instigator_states: int = 0
    backfills: int = 0

    def summary(self) -> str:
        tables = "already there, checked" if self.tables_already_there else "copied, checked"
        return "\n".join([
            f"tables ({tables}): {sum(self.rows.values())} rows",
            *(f"  {table}: {count}" for table, count in self.rows.items() if count),
            f"runs: {self.runs_copied} copied with {self.events} events, {self.runs_already_there} already there",
            f"document partitions: {self.partitions}; remembered up to date: {self.remembered_documents}",
            f"sensor and schedule states: {self.instigator_states} copied; backfills: {self.backfills} copied",
        ])


def check_tables_can_move(source_file: str, lake: PipelineDatabase) -> None:
    """Raise MigrationError, saying what to set, when there is no DuckLake or no DuckDB file."""
    if not lake.ducklake_catalog:
        raise MigrationError("SYNTH_ASSETS_DUCKLAKE_CATALOG is not set: there is no DuckLake to migrate into "
                             "(docs/DEPLOYMENT.md, the team profile)")
    if not Path(source_file).is_file():
        raise MigrationError(f"{source_file}: no DuckDB file there to migrate (SYNTH_ASSETS_DUCKDB_PATH)")


def copy_tables(source_file: str, lake: PipelineDatabase) -> tuple[dict[str, int], bool]:
    """Copy every pipeline table of the DuckDB file `source_file` into the DuckLake `lake`,
    in one transaction; return the rows per table and whether they were already there.

    Columns a newer version of the pipeline added, which the file lacks, arrive as NULL.
    """
    check_tables_can_move(source_file, lake)
    with lake.get_connection() as con:
        try:
            con.execute(f"ATTACH {sql_literal(source_file)} AS {EMBEDDED_ALIAS} (READ_ONLY)")
        except duckdb.IOException as error:
            if is_lock_error(error):
                raise MigrationError(f"{source_file} is in use by another process: stop `make run` and "
                                     f"`make ui` on the embedded project first ({error})") from None
            raise
        try:
            present: dict[str, set[str]] = {}
            for table, column in con.execute(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_catalog = ?",
                [EMBEDDED_ALIAS],
            ).fetchall():
                present.setdefault(table, set()).add(column)
            selected = {table: ", ".join(name if name in present[table] else f"NULL AS {name}"
                                         for name in table_columns(table))
                        for table in TABLE_DDL if table in present}

            def count(catalog: str, table: str) -> int:
                return con.execute(f"SELECT count(*) FROM {catalog}.{table}").fetchone()[0]

            rows = {table: count(EMBEDDED_ALIAS, table) if table in selected else 0 for table in TABLE_DDL}
            already = {table: count(LAKE_ALIAS, table) for table in TABLE_DDL}
            if any(already.values()):
                _check_tables(con, selected, rows)  # copied by an earlier call, or refused
                return rows, True

            def copy() -> None:
                for table, columns in selected.items():
                    con.execute(f"INSERT INTO {LAKE_ALIAS}.{table} ({', '.join(table_columns(table))}) "
                                f"SELECT {columns} FROM {EMBEDDED_ALIAS}.{table}")

            in_transaction(con, copy)
            _check_tables(con, selected, rows)
            return rows, False
        finally:
            con.execute(f"DETACH {EMBEDDED_ALIAS}")


def _check_tables(con: duckdb.DuckDBPyConnection, selected: dict[str, str], rows: dict[str, int]) -> None:
    """Every table of the lake holds exactly the rows of the embedded file."""
    for table, expected in rows.items():
        found = con.execute(f"SELECT count(*) FROM {LAKE_ALIAS}.{table}").fetchone()[0]
        missing = 0
        if table in selected:
            missing = con.execute(
                f"SELECT count(*) FROM (SELECT {selected[table]} FROM {EMBEDDED_ALIAS}.{table} "
                f"EXCEPT ALL SELECT {', '.join(table_columns(table))} FROM {LAKE_ALIAS}.{table})").fetchone()[0]
        if found != expected or missing:
            raise MigrationError(
                f"the DuckLake's table {table} holds {found} rows, the embedded file {expected} "
                f"({missing} of those not in the lake): the lake already holds other data, so nothing was "
                "copied into it; migrate into an empty DuckLake (a new catalog database and data path)")


def check_instance_can_move(source: dg.DagsterInstance, target: dg.DagsterInstance) -> None:
    """Raise MigrationError when `target` is `source` itself, or holds materializations or
    observations of the embedded assets from runs of its own: after copying, each asset's
    events would not be the embedded ones (what _matched_asset_events checks), so this is
    refused before anything is copied. Events of runs copied by an earlier call are fine."""
    if Path(source.root_directory).resolve() == Path(target.root_directory).resolve():
        raise MigrationError(f"DAGSTER_HOME ({target.root_directory}) is the embedded instance itself: set it to the "
                             "folder holding the team profile's dagster.yaml (deploy/team/dagster.yaml)")
    embedded_runs = {run.run_id for run in source.get_runs()}
    for key in source.get_asset_keys():
        for fetch, kind in (("fetch_materializations", "materialization"), ("fetch_observations", "observation")):
            own = [record for record in _asset_events(target, fetch, key) if record.run_id not in embedded_runs]
            if own:
                raise MigrationError(
                    f"{key.to_user_string()}: the team instance already holds {len(own)} {kind}"
                    f"{'s' if len(own) > 1 else ''} of its own (run {own[0].run_id}), so nothing was copied: "
                    "migrate into a team instance that has not run these assets (a new DAGSTER_HOME storage)")


def copy_instance(source: dg.DagsterInstance, target: dg.DagsterInstance, migrated: Migrated) -> None:
    """Copy the runs, event logs, partitions, remembered documents, sensor states and
    backfills of `source` into `target`, then check them (see the module). Call
    check_instance_can_move first (migrate does, before the tables)."""
    for run in reversed(source.get_runs()):  # oldest first, as they happened
        events = source.all_logs(run.run_id)
        if target.has_run(run.run_id) and len(target.all_logs(run.run_id)) != len(events):
            target.delete_run(run.run_id)  # copied halfway by an interrupted migration
        if target.has_run(run.run_id):
            migrated.runs_already_there += 1
        else:
            for snapshot_id, read in ((run.job_snapshot_id, source.get_job_snapshot),
                                      (run.execution_plan_snapshot_id, source.get_execution_plan_snapshot)):
                if snapshot_id and not target.has_snapshot(snapshot_id):
                    target.add_snapshot(read(snapshot_id))
            target.add_run(run)
            for event in events:
                # As when the run wrote them: stored, and the run's status and times updated.
                target.handle_new_event(event)
            migrated.runs_copied += 1
            migrated.events += len(events)
        copied = len(target.all_logs(run.run_id))
        if copied != len(events) or target.get_run_by_id(run.run_id).status != run.status:
            raise MigrationError(f"run {run.run_id} did not arrive whole: {copied} of {len(events)} events, "
                                 f"status {target.get_run_by_id(run.run_id).status} instead of {run.status}")

    for backfill in source.get_backfills():
        if target.get_backfill(backfill.backfill_id) is None:
            target.add_backfill(backfill)
            migrated.backfills += 1
    documents = source.get_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME)
    known = set(target.get_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME))
    if new := [key for key in documents if key not in known]:
        target.add_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME, new)
    migrated.partitions = len(documents)
    for state in source.all_instigator_state():  # sensors' cursors, running or stopped
        if target.get_instigator_state(state.instigator_origin_id, state.selector_id) is None:
            target.add_instigator_state(state)
            migrated.instigator_states += 1
    new_storage_ids = _matched_asset_events(source, target)
    migrated.remembered_documents = planning.copy_remembered(source, target, new_storage_ids)
    _check_latest(source, target, new_storage_ids)


def _matched_asset_events(source: dg.DagsterInstance, target: dg.DagsterInstance) -> dict[int, int]:
    """Storage id in `source` -> storage id in `target` of every asset materialization
    and observation, after checking that each arrived (same run, partition and time).

    Matched per asset, in order: the ids of one event differ between the instances (and
    SQLite's per-run event logs number events apart from the asset index planning reads).
    """
    matched = {}
    for key in source.get_asset_keys():
        for fetch in ("fetch_materializations", "fetch_observations"):
            old, new = _asset_events(source, fetch, key), _asset_events(target, fetch, key)
            if [(r.run_id, r.partition_key, r.timestamp) for r in old] != \
                    [(r.run_id, r.partition_key, r.timestamp) for r in new]:
                raise MigrationError(f"{key.to_user_string()}: the team instance has {len(new)} of its "
                                     f"{len(old)} events ({fetch.removeprefix('fetch_')}), or others")
            matched.update((o.storage_id, n.storage_id) for o, n in zip(old, new))
    return matched


def _asset_events(instance: dg.DagsterInstance, fetch: str, key: dg.AssetKey) -> list:
    """Every record of `instance.<fetch>` for this asset, oldest first."""
    records, cursor = [], None
    while True:
        page = getattr(instance, fetch)(key, limit=RECORDS_PAGE, cursor=cursor, ascending=True)
        records += page.records
        if not page.has_more:
            return records
        cursor = page.cursor


def _check_latest(source: dg.DagsterInstance, target: dg.DagsterInstance, new_storage_ids: dict[int, int]) -> None:
    """Each asset has, per document, the same latest materialization and observation
    (what Dagster's stale status and planning read)."""
    for key in source.get_asset_keys():
        for event_type in (dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_OBSERVATION):
            expected = {partition: new_storage_ids.get(storage_id)
                        for partition, storage_id in latest_storage_ids(source, key, event_type).items()}
            found = latest_storage_ids(target, key, event_type)
            if expected != found:
                wrong = sorted(p for p in expected.keys() | found.keys() if expected.get(p) != found.get(p))
                raise MigrationError(f"{key.to_user_string()}: the team instance's latest {event_type.value} "
                                     f"differs for {len(wrong)} documents ({', '.join(wrong[:5])})")


def migrate(source_file: str, lake: PipelineDatabase, source: dg.DagsterInstance,
            target: dg.DagsterInstance) -> Migrated:
    """Copy the tables, then the instance (see the module); raise MigrationError on what
    cannot be copied or did not arrive whole. What would be refused is refused before
    anything is copied: the instance is checked here, the lake's tables before copying."""
    check_instance_can_move(source, target)
    migrated = Migrated()
    migrated.rows, migrated.tables_already_there = copy_tables(source_file, lake)
    copy_instance(source, target, migrated)
    return migrated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    settings = definitions.settings
    lake = settings.resources["duckdb"]
    home = Path(settings.migrate_from_dagster_home)
    try:
        if not (home / "dagster.yaml").is_file():
            raise MigrationError(f"{home}: no embedded Dagster instance there (no dagster.yaml); "
                                 "set SYNTH_ASSETS_MIGRATE_FROM_DAGSTER_HOME to its folder")
        check_tables_can_move(lake.database, lake)  # before saying where to, which it names
        with dg.DagsterInstance.from_config(str(home)) as source, dg.DagsterInstance.get() as target:
            print(f"from {lake.database} and {home}\n"
                  f"into the DuckLake {lake.ducklake_catalog} ({lake.ducklake_data_path}) and the instance in "
                  f"{target.root_directory} ({type(target.run_storage).__name__})", flush=True)
            migrated = migrate(lake.database, lake, source, target)
    except MigrationError as error:
        print(f"migrate: {error}", file=sys.stderr)
        return 1
    print(migrated.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
