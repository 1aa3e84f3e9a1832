"""DuckDB partition writes and the training formats."""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest

from synth_assets.core.formats import sharegpt_roles, split_documents, to_alpaca, to_sharegpt
from synth_assets.storage import (
    RAW_DOCUMENTS_TABLE,
    read_partition,
    replace_partition_rows,
    table_columns,
)


def raw_row(name: str, size: int) -> dict:
    return {"relative_path": name, "file_name": name, "format": "markdown", "size_bytes": size, "sha256": "0" * 64}


def test_replacing_a_partition_never_duplicates_and_leaves_others_alone(tmp_path):
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    replace_partition_rows(con, RAW_DOCUMENTS_TABLE, "a", pd.DataFrame([raw_row("a.md", 1)]))
    replace_partition_rows(con, RAW_DOCUMENTS_TABLE, "b", pd.DataFrame([raw_row("b.md", 2)]))
    replace_partition_rows(con, RAW_DOCUMENTS_TABLE, "a", pd.DataFrame([raw_row("a.md", 3)]))
    rows = con.execute("SELECT document_id, size_bytes FROM raw_documents ORDER BY 1").fetchall()
    assert rows == [("a", 3), ("b", 2)]


def test_a_failed_write_keeps_the_previous_rows(tmp_path):
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    replace_partition_rows(con, RAW_DOCUMENTS_TABLE, "a", pd.DataFrame([raw_row("a.md", 1)]))
    bad = pd.DataFrame([{**raw_row("a.md", 1), "size_bytes": None}])  # violates NOT NULL
    with pytest.raises(duckdb.Error):
        replace_partition_rows(con, RAW_DOCUMENTS_TABLE, "a", bad)
    assert len(read_partition(con, RAW_DOCUMENTS_TABLE, "a")) == 1


def test_unknown_columns_are_an_error_not_dropped(tmp_path):
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    with pytest.raises(ValueError, match="unexpected columns"):
        replace_partition_rows(con, RAW_DOCUMENTS_TABLE, "a", pd.DataFrame([{**raw_row("a", 1), "oops": 1}]))
    assert "sha256" in table_columns(RAW_DOCUMENTS_TABLE)


def test_all_null_column_does_not_break_later_string_writes(tmp_path):
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    first = pd.DataFrame([{**raw_row("a", 1), "modified_at": None}])
    replace_partition_rows(con, RAW_DOCUMENTS_TABLE, "a", first)
    replace_partition_rows(con, RAW_DOCUMENTS_TABLE, "b", pd.DataFrame([{**raw_row("b", 1), "modified_at": 1.5}]))
    assert con.execute("SELECT count(*) FROM raw_documents").fetchone()[0] == 2


def test_formats():
    assert to_alpaca(" What is a duck? ", "A bird. ") == {"instruction": "What is a duck?", "input": "", "output": "A bird."}
    turns = to_sharegpt("Q?", "A.")
    assert [t["from"] for t in turns] == ["human", "gpt"]
    assert sharegpt_roles(json.dumps(to_sharegpt("Q?", "A.", system="Be brief."))) == "system,human,gpt"
    assert sharegpt_roles("not json") == "<unparseable>"


def test_split_is_by_document_deterministic_and_never_overlaps():
    documents = [f"doc{i}" for i in range(20)]
    splits = split_documents(documents, 0.1, seed=42)
    assert splits == split_documents(list(reversed(documents)), 0.1, seed=42)
    assert sum(1 for s in splits.values() if s == "validation") == 2
    assert split_documents(["only"], 0.1, seed=42) == {"only": "train"}
    assert list(split_documents(["a", "b"], 0.1, seed=1).values()).count("validation") == 1


def test_tables_from_an_older_schema_gain_new_columns(tmp_path):
    from synth_assets.storage import ensure_tables

    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    con.execute("CREATE TABLE generated_qa_pairs (pair_id VARCHAR, document_id VARCHAR, chunk_id VARCHAR)")
    ensure_tables(con)
    columns = {row[0] for row in con.execute("DESCRIBE generated_qa_pairs").fetchall()}
    assert {"reasoning", "prompt_version", "question"} <= columns


def test_writes_after_a_migration_go_to_the_right_columns(tmp_path):
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    con.execute("CREATE TABLE raw_documents (document_id VARCHAR, relative_path VARCHAR, file_name VARCHAR, "
                "format VARCHAR, size_bytes BIGINT, sha256 VARCHAR)")  # an older schema: no modified_at
    replace_partition_rows(con, RAW_DOCUMENTS_TABLE, "a", pd.DataFrame([{**raw_row("a.md", 7), "modified_at": 2.5}]))
    assert con.execute("SELECT size_bytes, modified_at FROM raw_documents").fetchall() == [(7, 2.5)]
