"""The team deployment: the Dagster instance in PostgreSQL, the tables in DuckLake.

The DuckLake tests with a local catalog file need nothing else; those with PostgreSQL
start a throwaway server of their own (synth_assets_tests/postgres_server.py) and skip,
saying why, where PostgreSQL's binaries are missing.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from synth_assets.definitions import build_definitions
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.run import run_all
from synth_assets.settings import Settings
from synth_assets.storage import GENERATED_QA_PAIRS_TABLE, TABLE_DDL, in_transaction, replace_partition_rows
from synth_assets_tests import postgres_server

TEAM_DAGSTER_YAML = Path(__file__).resolve().parents[1] / "deploy" / "team" / "dagster.yaml"
needs_postgres = pytest.mark.skipif(postgres_server.skip_reason() is not None,
                                    reason=postgres_server.skip_reason() or "")


def pairs(document_id: str, count: int, tag: str = "") -> pd.DataFrame:
    return pd.DataFrame({
        "pair_id": [f"{document_id}-{tag}{i}" for i in range(count)], "chunk_id": "c", "question": "q",
        "generator": "model_free", "prompt_version": "v1",
    })


def lake(root: Path, catalog: str | None = None) -> PipelineDatabase:
    return PipelineDatabase(ducklake_catalog=catalog or str(root / "catalog.ducklake"),
                            ducklake_data_path=str(root / "lake_data"))


def ids_by_document(database: PipelineDatabase) -> dict[str, list[str]]:
    with database.get_connection() as con:
        rows = con.execute(f"SELECT document_id, pair_id FROM {GENERATED_QA_PAIRS_TABLE} ORDER BY 1, 2").fetchall()
    found: dict[str, list[str]] = {}
    for document_id, pair_id in rows:
        found.setdefault(document_id, []).append(pair_id)
    return found


def test_settings_select_the_ducklake():
    settings = Settings.from_env({"SYNTH_ASSETS_DUCKLAKE_CATALOG": "postgres:dbname=lake host=db",
                                  "SYNTH_ASSETS_DUCKLAKE_DATA_PATH": "/shared/lake"})
    database = settings.resources["duckdb"]
    assert (database.ducklake_catalog, database.ducklake_data_path) == ("postgres:dbname=lake host=db", "/shared/lake")
    assert Settings.from_env({}).resources["duckdb"].ducklake_catalog == ""  # the embedded default


def test_a_catalog_without_a_data_path_is_refused(tmp_path):
    with pytest.raises(ValueError, match="SYNTH_ASSETS_DUCKLAKE_DATA_PATH"):
        with PipelineDatabase(ducklake_catalog=str(tmp_path / "c.ducklake")).get_connection():
            pass


def test_ducklake_partitions_are_replaced_whole(tmp_path):
    database = lake(tmp_path)
    with database.get_connection() as con:
        assert {name for (name,) in con.execute("SELECT table_name FROM information_schema.tables "
                                                "WHERE table_catalog = 'lake'").fetchall()} == set(TABLE_DDL)
        replace_partition_rows(con, GENERATED_QA_PAIRS_TABLE, "a", pairs("a", 3))
        replace_partition_rows(con, GENERATED_QA_PAIRS_TABLE, "b", pairs("b", 2))
        replace_partition_rows(con, GENERATED_QA_PAIRS_TABLE, "a", pairs("a", 4, "new"))

        def half_then_fail():
            con.execute(f"DELETE FROM {GENERATED_QA_PAIRS_TABLE} WHERE document_id = 'b'")
            raise RuntimeError("the writer died here")

        with pytest.raises(RuntimeError):
            in_transaction(con, half_then_fail)
    with database.shared_connection():
        assert ids_by_document(database) == {"a": [f"a-new{i}" for i in range(4)], "b": ["b-0", "b-1"]}


def _write_documents(catalog: str, data_path: str, documents: list[str], rounds: int) -> None:
    database = PipelineDatabase(ducklake_catalog=catalog, ducklake_data_path=data_path)
    for round_number in range(rounds):
        for document_id in documents:
            with database.get_connection() as con:
                replace_partition_rows(con, GENERATED_QA_PAIRS_TABLE, document_id,
                                       pairs(document_id, 5 + round_number, f"r{round_number}-"))


def _die_inside_a_write(catalog: str, data_path: str, document_id: str) -> None:
    database = PipelineDatabase(ducklake_catalog=catalog, ducklake_data_path=data_path)
    with database.get_connection() as con:
        con.execute("BEGIN TRANSACTION")
        con.execute(f"DELETE FROM {GENERATED_QA_PAIRS_TABLE} WHERE document_id = ?", [document_id])
        con.register("incoming", pairs(document_id, 50, "half-").assign(document_id=document_id))
        con.execute(f"INSERT INTO {GENERATED_QA_PAIRS_TABLE} BY NAME SELECT * FROM incoming")
        os._exit(9)  # killed before COMMIT


@pytest.fixture(scope="module")
def postgres():
    with postgres_server.running_server() as server:
        yield server


@needs_postgres
def test_four_processes_write_at_once_and_lose_nothing(postgres, tmp_path):
    catalog = "postgres:" + postgres.dsn(postgres.create_database("lake_writers"))
    data_path = str(tmp_path / "lake_data")
    rounds = 3
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_write_documents, args=(catalog, data_path, [f"w{n}-a", f"w{n}-b"], rounds))
               for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]

    found = ids_by_document(lake(tmp_path, catalog))
    last = rounds - 1
    assert found == {f"w{n}-{d}": sorted(f"w{n}-{d}-r{last}-{i}" for i in range(5 + last))
                     for n in range(4) for d in "ab"}

    # A writer killed inside its transaction leaves its partition as it was.
    killed = spawn.Process(target=_die_inside_a_write, args=(catalog, data_path, "w0-a"))
    killed.start()
    killed.join(timeout=120)
    assert killed.exitcode == 9
    assert ids_by_document(lake(tmp_path, catalog)) == found


def team_instance(home: Path, server, monkeypatch) -> dg.DagsterInstance:
    """A Dagster instance configured by deploy/team/dagster.yaml, on the test's server."""
    home.mkdir()
    shutil.copy(TEAM_DAGSTER_YAML, home / "dagster.yaml")
    for name, value in {"DAGSTER_PG_HOST": server.host, "DAGSTER_PG_PORT": str(server.port),
                        "DAGSTER_PG_DB": server.create_database("dagster"), "DAGSTER_PG_USERNAME": server.user,
                        "DAGSTER_PG_PASSWORD": ""}.items():
        monkeypatch.setenv(name, value)
    return dg.DagsterInstance.from_config(str(home))


def exported_rows(export_dir: Path) -> dict[str, list]:
    """The exported JSONL files, each as its sorted rows."""
    return {str(path.relative_to(export_dir)).split("/", 1)[-1]: sorted(path.read_text().splitlines())
            for path in sorted(export_dir.rglob("*.jsonl"))}


@needs_postgres
def test_team_profile_gives_the_embedded_results(postgres, pipeline_resources, instance, tmp_path, monkeypatch):
    embedded = run_all(build_definitions(pipeline_resources), instance, show_progress=False)

    team_resources = {**pipeline_resources,
                      "duckdb": lake(tmp_path / "team", "postgres:" + postgres.dsn(postgres.create_database("lake"))),
                      # A new resource, not model_copy: a copied resource keeps the config it
                      # was made with, which is what a run builds it from.
                      "export": type(pipeline_resources["export"])(
                          **{**pipeline_resources["export"].model_dump(), "export_dir": str(tmp_path / "team_exports")})}
    # Entered, as `make run` does: Dagster then reads its definitions state from this
    # instance, not from whichever instance an earlier test left current.
    with team_instance(tmp_path / "team_home", postgres, monkeypatch) as team_instance_:
        assert type(team_instance_.run_storage).__name__ == "PostgresRunStorage"
        assert type(team_instance_.event_log_storage).__name__ == "PostgresEventLogStorage"
        team = run_all(build_definitions(team_resources), team_instance_, show_progress=False)
        assert team["failed"] == {} and team["export_ok"], team
        counts = ("parsed", "chunks", "pairs_generated", "pairs_kept", "pairs_rejected")
        assert {k: team[k] for k in counts} == {k: embedded[k] for k in counts}
        assert embedded["parsed"] == 3 and embedded["pairs_kept"] > 0

        def kept(database: PipelineDatabase) -> list:
            with database.get_connection() as con:
                return con.execute("SELECT pair_id, question, answer FROM filtered_qa_pairs ORDER BY 1").fetchall()

        assert kept(team_resources["duckdb"]) == kept(pipeline_resources["duckdb"])
        embedded_exports = exported_rows(Path(embedded["export_dir"]))
        assert embedded_exports and exported_rows(Path(team["export_dir"])) == embedded_exports