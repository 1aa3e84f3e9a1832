"""Versions made of shards and a dedup index kept between builds (issue 29): an added
document rewrites one bucket's shards, decisions already exported do not move, an
incremental build equals a full one of the same generation, old versions stay loadable,
and the dataset check sees through the index what the shards it does not read hold."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import datasets
import duckdb
import pandas as pd
import pytest

from synth_assets.core.dedup import DUPLICATE_QUESTION, NEAR_DUPLICATE_QUESTION, cross_document_duplicates, question_key
from synth_assets.core.formats import split_order
from synth_assets.core.shards import read_manifest, read_split
from synth_assets.core.task_rules import dedup_text
from synth_assets.dataset_index import current_generation, drift, start_generation, take_in
from synth_assets.definitions import build_definitions
from synth_assets.run import run_all
from synth_assets.storage import DATASET_INDEX_TABLE, ensure_tables
from synth_assets_tests.conftest import EXAMPLE_DOCUMENTS

TOPICS = ["the boiler", "the cooling tower", "the pump seals", "the valve train", "the heat exchanger",
          "the control room", "the feed water", "the turbine blades", "the condenser", "the stack"]


def planted_rows(documents: int = 12) -> pd.DataFrame:
    """Questions of `documents` documents; every third document repeats (exactly or in
    other words) questions of the document before it."""
    rows = []
    for d in range(documents):
        for q, topic in enumerate(TOPICS[d % 5: d % 5 + 4]):
            question = f"How often is {topic} of unit {d} inspected?"
            if d % 3 == 2 and q < 2:  # a repeat of the previous document's question
                question = (f"How often is {TOPICS[(d - 1) % 5 + q]} of unit {d - 1} inspected?" if q == 0 else
                            f"How frequently does {TOPICS[(d - 1) % 5 + q]} of unit {d - 1} get inspected?")
            rows.append({"pair_id": f"doc{d:02d}#q{q}", "document_id": f"doc{d:02d}.md", "question": question,
                         "answer": f"Every {q + 1} months.", "language": "en", "task": "qa", "reasoning": None})
    return pd.DataFrame(rows)


def _index(rows: pd.DataFrame, batches: list[list[str]], keys_of: pd.DataFrame) -> dict:
    """Decisions of building `rows` in these batches of documents, with the generation's
    word weights frozen on `keys_of`."""
    con = duckdb.connect()
    ensure_tables(con)
    keys = [question_key(dedup_text(r), "en") for r in keys_of.to_dict("records")]
    generation, frozen = start_generation(con, "fingerprint", "test", keys)
    decided = {}
    for i, batch in enumerate(batches):
        part = rows[rows["document_id"].isin(batch)]
        taken = take_in(con, generation, part, dict.fromkeys(batch, "digest"), 0.2, 42, lambda r: set(),
                        frozen=frozen if i == 0 else None, first_batch=i == 0)
        decided.update({p: (s, d, sp) for p, s, d, sp in
                        zip(taken["pair_id"], taken["status"], taken["duplicate_of"], taken["split"])})
    return decided


def test_an_incremental_build_equals_a_full_one_of_the_same_generation():
    rows = planted_rows()
    order = split_order(set(rows["document_id"]), 42)
    full = _index(rows, [order], rows)
    steps = _index(rows, [order[:5], order[5:6], order[6:]], rows)
    assert steps == full
    removed = {p: v for p, v in full.items() if v[0] != "kept"}
    assert {v[0] for v in removed.values()} == {DUPLICATE_QUESTION, NEAR_DUPLICATE_QUESTION}
    assert len(removed) >= 6
    # And the same decisions as the whole-batch function, taken in the same order.
    rename = {d: f"{i:03d}" for i, d in enumerate(order)}
    reference = cross_document_duplicates(rows.assign(document_id=rows["document_id"].map(rename)).to_dict("records"))
    assert {p: (s, d) for p, (s, d, _) in removed.items()} == reference


def test_a_document_arriving_later_never_takes_a_question_from_one_already_exported():
    rows = planted_rows(3)  # doc02 repeats two questions of doc01
    first = _index(rows, [["doc02.md"], ["doc00.md", "doc01.md"]], rows)
    # doc02 was exported first: its copies are kept and doc01's questions are the repeats.
    assert first["doc02#q0"][0] == "kept" and first["doc01#q0"][0] == DUPLICATE_QUESTION
    assert first["doc01#q0"][1] == "doc02#q0"


def test_drift_grows_as_other_words_arrive():
    rows = planted_rows()
    con = duckdb.connect()
    ensure_tables(con)
    early = rows[rows["document_id"] < "doc03"]
    generation, frozen = start_generation(con, "f", "test", [question_key(q, "en") for q in early["question"]])
    digests = dict.fromkeys(rows["document_id"], "digest")
    take_in(con, generation, early, digests, 0.2, 42, lambda r: set(), frozen=frozen, first_batch=True)
    assert drift(con) == pytest.approx(0.0, abs=1e-9)
    take_in(con, generation, rows[rows["document_id"] >= "doc03"], digests, 0.2, 42, lambda r: set())
    assert drift(con) > 0.1
    assert current_generation(con).generation == 1


@pytest.mark.slow
def test_an_added_document_writes_its_buckets_shards_and_old_versions_still_load(
        pipeline_resources, documents_dir: Path, instance, monkeypatch):
    defs = build_definitions(pipeline_resources)
    first = run_all(defs, instance, show_progress=False)
    old = Path(first["export_dir"])
    old_rows = {fmt: datasets.load_dataset(str(old), fmt) for fmt in ("alpaca", "sharegpt", "messages")}
    shutil.copy(EXAMPLE_DOCUMENTS / "wiki_duck.html", documents_dir / "wiki_duck.html")
    second = run_all(defs, instance, show_progress=False)
    assert second["export_ok"], second["export_error"]
    new = Path(second["export_dir"])
    manifest = read_manifest(new)
    metadata = instance.get_latest_materialization_event(dg.AssetKey("training_dataset")).asset_materialization.metadata
    assert metadata["documents_taken_in"].value == 1 and metadata["index_generation"].value == 1
    # One bucket's shards, in each format and the added document's split, were written.
    assert {path.split("/")[0] for path in manifest["written_shards"]} == {"alpaca", "sharegpt", "messages"}
    assert len(manifest["written_shards"]) == 3
    assert metadata["shards_kept_from_earlier_versions"].value >= 3
    # The old version loads as it was, in all three formats, beside the new one.
    for fmt, rows in old_rows.items():
        again = datasets.load_dataset(str(old), fmt)
        assert {s: again[s].to_list() for s in again} == {s: rows[s].to_list() for s in rows}
        assert sum(len(s) for s in datasets.load_dataset(str(new), fmt).values()) > sum(len(s) for s in rows.values())
    # The rows of documents already exported did not move (same split, same rows).
    before = pd.concat([read_split(old, "alpaca", s).assign(split=s) for s in ("train", "validation")])
    after = pd.concat([read_split(new, "alpaca", s).assign(split=s) for s in ("train", "validation")])
    kept_before = before.set_index("pair_id")[["instruction", "output", "split"]]
    assert kept_before.equals(after.set_index("pair_id").loc[kept_before.index, ["instruction", "output", "split"]])

    # A full rebuild (a new generation) gives the same rows here: nothing was a repeat;
    # taken in one document a batch, as a large corpus is, against the index in SQL.
    monkeypatch.setattr("synth_assets.assets.export.DOCUMENTS_PER_BATCH", 1)
    rebuilt = run_all(defs, instance, show_progress=False, rebuild_dataset=True)
    metadata = instance.get_latest_materialization_event(dg.AssetKey("training_dataset")).asset_materialization.metadata
    assert metadata["index_generation"].value == 2 and "asked" in metadata["index_generation_began"].value
    full = pd.concat([read_split(Path(rebuilt["export_dir"]), "alpaca", s).assign(split=s) for s in ("train", "validation")])
    assert set(full["pair_id"]) == set(after["pair_id"])
    assert full.set_index("pair_id").sort_index()[["instruction", "output"]].equals(
        after.set_index("pair_id").sort_index()[["instruction", "output"]])


@pytest.mark.slow
def test_the_dataset_check_fails_on_what_the_index_says_of_shards_it_does_not_read(
        pipeline_resources, documents_dir: Path, instance, monkeypatch):
    defs = build_definitions(pipeline_resources)
    first = run_all(defs, instance, show_progress=False)
    assert first["export_ok"]
    # The index says a document is in both splits: the next build's check must fail,
    # though the shard holding that document is not rewritten.
    with duckdb.connect(pipeline_resources["duckdb"].database) as con:
        document, = con.execute(f"SELECT document_id FROM {DATASET_INDEX_TABLE} WHERE status = 'kept' "
                                "GROUP BY 1 HAVING count(*) > 1 LIMIT 1").fetchone()
        con.execute(f"UPDATE {DATASET_INDEX_TABLE} SET split = CASE split WHEN 'train' THEN 'validation' "
                    "ELSE 'train' END WHERE pair_id = (SELECT min(pair_id) FROM dataset_index WHERE document_id = ?)",
                    [document])
    shutil.copy(EXAMPLE_DOCUMENTS / "wiki_duck.html", documents_dir / "wiki_duck.html")
    second = run_all(defs, instance, show_progress=False)
    assert not second["export_ok"]
    assert "documents in both splits" in second["export_error"] or "whole version" in second["export_error"]
    assert second["published_version"] == first["published_version"]


def test_the_digests_of_many_documents_are_each_documents_own_and_change_with_its_pairs():
    from synth_assets.assets.export import source_digest, source_digests

    con = duckdb.connect()
    ensure_tables(con)
    for i, (document, question) in enumerate([("a.md", "What is A?"), ("a.md", "Why A?"), ("b.md", "What is B?")]):
        con.execute("INSERT INTO filtered_qa_pairs (pair_id, document_id, chunk_id, question, answer, generator, prompt_version) "
                    "VALUES (?, ?, 'c', ?, 'An answer.', 'model-free', 'v1')", [f"{document}#{i}", document, question])
    con.execute("INSERT INTO raw_documents (document_id, relative_path, file_name, format, size_bytes, sha256) "
                "VALUES ('a.md', 'a.md', 'a.md', 'md', 1, 'ff00')")
    many = source_digests(con, ["b.md", "a.md", "none.md"])
    assert many == {d: source_digest(con, d) for d in ("a.md", "b.md", "none.md")}
    assert many["b.md"].endswith("/no file") and many["none.md"].startswith("no pairs")
    con.execute("UPDATE filtered_qa_pairs SET answer = 'Another answer.' WHERE pair_id = 'a.md#1'")
    assert source_digest(con, "a.md") != many["a.md"] and source_digest(con, "b.md") == many["b.md"]
