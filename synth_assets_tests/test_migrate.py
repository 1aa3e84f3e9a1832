"""`make migrate`: an embedded project (SQLite instance, DuckDB file) copied into the team
profile (PostgreSQL instance, DuckLake tables) on a throwaway PostgreSQL server
(synth_assets_tests/postgres_server.py); skipped, saying why, without PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from synth_assets import planning
from synth_assets.definitions import build_definitions
from synth_assets.migrate import MigrationError, copy_tables, migrate
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.run import format_summary, run_all
from synth_assets.storage import GENERATED_QA_PAIRS_TABLE, TABLE_DDL, ensure_tables, table_columns
from synth_assets_tests import postgres_server
from synth_assets_tests.test_team_deployment import pairs, team_instance

EMBEDDED_DAGSTER_YAML = Path(__file__).resolve().parents[1] / "dagster.yaml"
needs_postgres = pytest.mark.skipif(postgres_server.skip_reason() is not None,
                                    reason=postgres_server.skip_reason() or "")


def all_rows(database: PipelineDatabase) -> dict[str, list[tuple]]:
    """Every row of every pipeline table, sorted."""
    with database.get_connection() as con:
        return {table: con.execute(f"SELECT {', '.join(table_columns(table))} FROM {table} ORDER BY ALL").fetchall()
                for table in TABLE_DDL}


def materializations(instance: dg.DagsterInstance) -> dict[str, list]:
    """Per asset: (partition, run id) of every materialization."""
    return {key.to_user_string(): sorted((record.partition_key or "", record.run_id)
                                         for record in instance.fetch_materializations(key, limit=10_000).records)
            for key in instance.get_asset_keys()}


@pytest.fixture(scope="module")
def postgres():
    with postgres_server.running_server() as server:
        yield server


@needs_postgres
def test_an_embedded_project_moves_to_the_team_profile(postgres, pipeline_resources, documents_dir, tmp_path,
                                                       monkeypatch):
    (documents_dir / "word_sample.docx").unlink()  # two documents
    embedded_home = tmp_path / "embedded_home"
    embedded_home.mkdir()
    shutil.copy(EMBEDDED_DAGSTER_YAML, embedded_home / "dagster.yaml")
    lake = PipelineDatabase(ducklake_catalog="postgres:" + postgres.dsn(postgres.create_database("lake")),
                            ducklake_data_path=str(tmp_path / "lake_data"))
    team_resources = {**pipeline_resources, "duckdb": lake}
    embedded = pipeline_resources["duckdb"]

    with dg.DagsterInstance.from_config(str(embedded_home)) as source:
        assert type(source.run_storage).__name__ == "SqliteRunStorage"
        before = run_all(build_definitions(pipeline_resources), source, show_progress=False)
        assert before["failed"] == {} and before["export_ok"] and len(before["documents"]) == 2, before
        with team_instance(tmp_path / "team_home", postgres, monkeypatch) as target:
            migrated = migrate(embedded.database, lake, source, target)
            assert not migrated.tables_already_there and migrated.runs_copied == len(source.get_runs())

            # Every row of every table, with its ids.
            rows = all_rows(embedded)
            assert rows[GENERATED_QA_PAIRS_TABLE] and rows["filtered_qa_pairs"] and rows["alpaca_examples"]
            assert all_rows(lake) == rows
            assert migrated.rows == {table: len(found) for table, found in rows.items()}

            # The same runs, materializations, check results and partitions.
            assert {r.run_id: r.status for r in target.get_runs()} == {r.run_id: r.status for r in source.get_runs()}
            assert materializations(target) == materializations(source) and materializations(source)
            for run in source.get_runs():
                assert len(target.all_logs(run.run_id)) == len(source.all_logs(run.run_id))
            documents = source.get_dynamic_partitions("documents")
            assert target.get_dynamic_partitions("documents") == documents == before["documents"]
            for key in documents:
                assert planning.failed_gates(target, key) == planning.failed_gates(source, key)
            assert migrated.remembered_documents == 2

            # The team profile finds both documents up to date: nothing runs again.
            after = run_all(build_definitions(team_resources), target, show_progress=False)
            assert after["processed"] == [] and sorted(after["up_to_date"]) == sorted(documents)
            assert "up to date:      2 (skipped" in format_summary(after, 1.0)
            assert {k: after[k] for k in ("pairs_kept", "chunks")} == {k: before[k] for k in ("pairs_kept", "chunks")}

            # Again: nothing copied twice.
            again = migrate(embedded.database, lake, source, target)
            assert again.tables_already_there and again.runs_copied == 0
            assert again.runs_already_there == len(source.get_runs())
            assert all_rows(lake) == rows and materializations(target) == materializations(source)


def test_a_lake_holding_other_rows_is_refused(tmp_path):
    embedded = PipelineDatabase(database=str(tmp_path / "embedded.duckdb"))
    with embedded.get_connection() as con:
        con.register("incoming", pairs("a", 2))
        con.execute(f"INSERT INTO {GENERATED_QA_PAIRS_TABLE} BY NAME SELECT *, 'a' AS document_id FROM incoming")
    lake = PipelineDatabase(ducklake_catalog=str(tmp_path / "catalog.ducklake"),
                            ducklake_data_path=str(tmp_path / "lake_data"))
    with lake.get_connection() as con:
        ensure_tables(con)
        con.register("incoming", pairs("b", 1))
        con.execute(f"INSERT INTO {GENERATED_QA_PAIRS_TABLE} BY NAME SELECT *, 'b' AS document_id FROM incoming")
    with pytest.raises(MigrationError, match="generated_qa_pairs holds 1 rows, the embedded file 2"):
        copy_tables(embedded.database, lake)
    with pytest.raises(MigrationError, match="SYNTH_ASSETS_DUCKLAKE_CATALOG is not set"):
        copy_tables(embedded.database, embedded)
    with pytest.raises(MigrationError, match="no DuckDB file there"):
        copy_tables(str(tmp_path / "missing.duckdb"), lake)


def test_make_migrate_without_a_ducklake_refuses_before_naming_where_to(tmp_path, monkeypatch, capsys):
    from synth_assets import definitions, migrate as migrate_command
    from synth_assets.settings import Settings

    home = tmp_path / "embedded_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("")
    monkeypatch.setattr(definitions, "settings", Settings.from_env({
        "SYNTH_ASSETS_MIGRATE_FROM_DAGSTER_HOME": str(home),
        "SYNTH_ASSETS_DUCKDB_PATH": str(tmp_path / "embedded.duckdb")}))
    assert migrate_command.main([]) == 1
    printed = capsys.readouterr()
    assert "SYNTH_ASSETS_DUCKLAKE_CATALOG is not set" in printed.err
    assert "into the DuckLake" not in printed.out


def test_a_team_instance_holding_its_own_materializations_is_refused_before_anything_is_copied(tmp_path):
    # Issue 28, item 12: this used to be found after the tables and the runs were copied.
    embedded = PipelineDatabase(database=str(tmp_path / "embedded.duckdb"))
    with embedded.get_connection() as con:
        con.register("incoming", pairs("a", 2))
        con.execute(f"INSERT INTO {GENERATED_QA_PAIRS_TABLE} BY NAME SELECT *, 'a' AS document_id FROM incoming")
    lake = PipelineDatabase(ducklake_catalog=str(tmp_path / "catalog.ducklake"),
                            ducklake_data_path=str(tmp_path / "lake_data"))

    @dg.asset(name="parsed_documents")
    def parsed_documents() -> None:
        pass

    for home in ("embedded_home", "team_home"):
        (tmp_path / home).mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "embedded_home")) as source, \
            dg.DagsterInstance.local_temp(str(tmp_path / "team_home")) as target:
        for instance in (source, source, target):
            assert dg.materialize([parsed_documents], instance=instance).success
        [own_run] = target.get_runs()
        with pytest.raises(MigrationError, match=(
                f"parsed_documents: the team instance already holds 1 materialization of its own "
                f"\\(run {own_run.run_id}\\)")):
            migrate(embedded.database, lake, source, target)
        assert [run.run_id for run in target.get_runs()] == [own_run.run_id]
    with lake.get_connection() as con:
        assert con.execute(f"SELECT count(*) FROM {GENERATED_QA_PAIRS_TABLE}").fetchone()[0] == 0
