"""The dataset card's counts kept per document (issue 29): training_dataset counts again
only the documents it takes in or whose rows changed, and sums every document's counts
in SQL. An incremental build's card statistics must equal those of a build from scratch,
and follow a document added, changed or removed."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from synth_assets.core.dedup import question_key
from synth_assets.core.exporting import GROUNDING_BINS, glance_charts
from synth_assets.dataset_index import drift, start_generation, take_in
from synth_assets.definitions import build_definitions
from synth_assets.run import run_all
from synth_assets.storage import (DATASET_SOURCES_TABLE, DATASET_STATS_TABLE, FILTERED_QA_PAIRS_TABLE,
                                  REJECTED_QA_PAIRS_TABLE, ensure_tables)
from synth_assets_tests.conftest import EXAMPLE_DOCUMENTS

# Metadata that names the build rather than describes the dataset.
BUILD_METADATA = {"version", "export_dir", "card", "task_chart_file", "index_generation", "index_generation_began",
                  "documents_taken_in", "documents_taken_out", "shards_written", "shards_kept_from_earlier_versions",
                  "new_version_written", "published_version", "preview",
                  # Where documents went: a build keeps the split of the documents already placed,
                  # a new generation places them all again.
                  "split_note", "train_documents", "validation_documents", "validation_share_of_rows",
                  "rows_per_format_and_split"}


def test_the_grounding_chart_counts_each_bin_as_its_table_does():
    # The bins' edges are the chart's: 0.3 starts a bin, 1.0 is in the last one.
    labels = [label for label, _, _ in GROUNDING_BINS]
    counts = dict.fromkeys(labels, 0) | {"0.3-0.4": 2, "0.9-1.0": 1}
    charts = glance_charts({"grounding_counts": counts, "judge_score_counts": {7: 3, 2: 1}})
    assert "| 0.3-0.4 | 2 |" in charts["grounding.png"]["markdown"]
    assert "| 7 | 3 |" in charts["judge_scores.png"]["markdown"] and "| 10 | 0 |" in charts["judge_scores.png"]["markdown"]
    assert charts["grounding.png"]["png"] != glance_charts({"grounding_counts": dict.fromkeys(labels, 1)})[
        "grounding.png"]["png"]
    assert "grounding.png" not in glance_charts({"grounding_counts": {}})


@pytest.mark.slow
def test_an_incremental_builds_card_statistics_equal_a_build_from_scratch(
        pipeline_resources, documents_dir: Path, instance, monkeypatch):
    written: list[dict] = []
    from synth_assets.assets import export

    real = export.write_version
    monkeypatch.setattr(export, "write_version", lambda *args: (written.append(args[3]), real(*args))[1])
    defs = build_definitions(pipeline_resources)
    database = pipeline_resources["duckdb"].database

    def build(**kwargs) -> tuple[dict, dict, int]:
        summary = run_all(defs, instance, show_progress=False, **kwargs)
        assert summary["export_ok"], summary["export_error"]
        metadata = instance.get_latest_materialization_event(
            dg.AssetKey("training_dataset")).asset_materialization.metadata
        stats = {k: v for k, v in written[-1].items() if k not in ("index_generation", "split_note")}
        return (stats, {k: getattr(v, "value", v) for k, v in metadata.items() if k not in BUILD_METADATA},
                metadata["documents_taken_in"].value)

    def in_the_dataset() -> tuple[int, int, int]:
        with duckdb.connect(database, read_only=True) as con:
            documents = [d for (d,) in con.execute(
                f"SELECT document_id FROM {DATASET_STATS_TABLE} WHERE stat = 'document'").fetchall()]
            return (len(documents),) + tuple(con.execute(
                f"SELECT count(*) FROM {table} WHERE document_id IN (SELECT unnest(?))", [documents]).fetchone()[0]
                for table in (FILTERED_QA_PAIRS_TABLE, REJECTED_QA_PAIRS_TABLE))

    before = build()[0]
    wiki = (documents_dir / "wiki.md").read_text()
    steps = {
        "added": lambda: shutil.copy(EXAMPLE_DOCUMENTS / "wiki_duck.html", documents_dir / "wiki_duck.html"),
        "changed": lambda: (documents_dir / "wiki.md").write_text(wiki[: len(wiki) * 2 // 3]),
        "removed": lambda: (documents_dir / "wiki_duck.html").unlink(),
    }
    for step, change in steps.items():
        change()
        stats, metadata, taken_in = build()
        assert taken_in == (0 if step == "removed" else 1), step  # incremental: the other documents kept their counts
        documents, kept, rejected = in_the_dataset()
        # What the card counts is what the dataset's documents hold now...
        assert (stats["documents"], stats["kept"], stats["generated"]) == (documents, kept, kept + rejected), step
        assert stats["files"].keys() >= {"tasks.png", "rejections.png", "coverage.png"}
        assert (stats["documents"], stats["kept"]) != (before["documents"], before["kept"]), step
        with duckdb.connect(database, read_only=True) as con:  # a removed document's source digest goes too
            sourced = {d for (d,) in con.execute(f"SELECT document_id FROM {DATASET_SOURCES_TABLE}").fetchall()}
        assert ("wiki_duck.html" in sourced) == (step != "removed"), step
        # ... and what a build from scratch (a new generation: every document counted again) gives.
        scratch, scratch_metadata, _ = build(rebuild_dataset=True)
        assert stats == scratch, step
        assert metadata == scratch_metadata, step
        before = stats


def test_the_index_word_counts_kept_up_to_date_equal_a_count_of_the_whole_index():
    from synth_assets.dataset_index import count_index_words, remove_documents
    from synth_assets.storage import DATASET_INDEX_WORDS_TABLE
    from synth_assets_tests.test_dataset_shards import planted_rows

    rows = planted_rows()
    con = duckdb.connect()
    ensure_tables(con)
    generation, frozen = start_generation(con, "f", "test", [question_key(q, "en") for q in rows["question"]])
    digests = dict.fromkeys(rows["document_id"], "digest")
    counted = lambda: dict(con.execute(f"SELECT word, questions FROM {DATASET_INDEX_WORDS_TABLE}").fetchall())  # noqa: E731

    def recounted() -> dict:
        kept = counted()
        count_index_words(con)
        again = counted()
        con.execute(f"DELETE FROM {DATASET_INDEX_WORDS_TABLE}")
        con.executemany(f"INSERT INTO {DATASET_INDEX_WORDS_TABLE} VALUES (?, ?)", list(kept.items()))
        return again

    early = rows["document_id"] < "doc05"
    take_in(con, generation, rows[early], digests, 0.2, 42, lambda r: set(), frozen=frozen, first_batch=True)
    # A repeat of an indexed question (doc05 repeats doc04) adds no question to its words.
    take_in(con, generation, rows[~early], digests, 0.2, 42, lambda r: set())
    assert counted() == recounted() and counted()
    assert drift(con) == pytest.approx(0.0, abs=1e-9)
    remove_documents(con, ["doc04.md", "doc08.md"])  # doc05 still holds a question of doc04
    assert counted() == recounted()
    assert drift(con) > 0
    # An index built before the counts were kept is counted once, whole.
    remove_documents(con, sorted(set(rows["document_id"])))
    assert counted() == {}
    take_in(con, generation, rows[early], digests, 0.2, 42, lambda r: set())
    expected = counted()
    con.execute(f"DELETE FROM {DATASET_INDEX_WORDS_TABLE}")
    drift(con)
    assert counted() == expected


def test_the_kept_source_digests_follow_a_documents_pairs_and_file():
    from synth_assets.assets.export import _source_digests_kept, source_digests

    con = duckdb.connect()
    ensure_tables(con)
    for i, (document, question) in enumerate([("a.md", "What is A?"), ("a.md", "Why A?"), ("b.md", "What is B?")]):
        con.execute("INSERT INTO filtered_qa_pairs (pair_id, document_id, chunk_id, question, answer, generator, "
                    "prompt_version) VALUES (?, ?, 'c', ?, 'An answer.', 'model-free', 'v1')",
                    [f"{document}#{i}", document, question])
    con.execute("INSERT INTO raw_documents (document_id, relative_path, file_name, format, size_bytes, sha256) "
                "VALUES ('a.md', 'a.md', 'a.md', 'md', 1, 'ff00')")
    documents = ["a.md", "b.md", "none.md"]
    assert _source_digests_kept(con, documents) == source_digests(con, documents)
    for change in ("UPDATE filtered_qa_pairs SET answer = 'Another answer.' WHERE pair_id = 'a.md#1'",
                   "UPDATE filtered_qa_pairs SET reasoning = 'Because.' WHERE pair_id = 'b.md#2'",
                   "DELETE FROM filtered_qa_pairs WHERE pair_id = 'a.md#0'",
                   "UPDATE raw_documents SET sha256 = 'ee11'",
                   "INSERT INTO raw_documents (document_id, relative_path, file_name, format, size_bytes, sha256) "
                   "VALUES ('b.md', 'b.md', 'b.md', 'md', 1, 'dd22')"):
        before = source_digests(con, documents)
        con.execute(change)
        assert source_digests(con, documents) != before, change
        assert _source_digests_kept(con, documents) == source_digests(con, documents), change
