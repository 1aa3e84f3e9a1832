"""The asset graph on a test instance: what a user sees after `make run`."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import datasets
import duckdb
import pytest

from synth_assets.definitions import build_definitions
from synth_assets.generation.base import GeneratedPair, GenerationOutcome
from synth_assets.resources.generation import GenerationResource
from synth_assets.run import format_summary, run_all
from synth_assets.storage import (
    ALPACA_EXAMPLES_TABLE,
    FILTERED_QA_PAIRS_TABLE,
    GENERATED_QA_PAIRS_TABLE,
    REJECTED_QA_PAIRS_TABLE,
)


def table_counts(db_path: str) -> dict[str, int]:
    with duckdb.connect(db_path, read_only=True) as con:
        return {
            table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("raw_documents", "document_chunks", GENERATED_QA_PAIRS_TABLE,
                          FILTERED_QA_PAIRS_TABLE, REJECTED_QA_PAIRS_TABLE, ALPACA_EXAMPLES_TABLE,
                          "sharegpt_examples")
        }


def test_run_all_builds_a_dataset_and_is_idempotent(pipeline_resources, instance, tmp_path):
    defs = build_definitions(pipeline_resources)
    summary = run_all(defs, instance, show_progress=False)

    assert summary["failed"] == {} and summary["blocked_by_checks"] == {}
    assert summary["parsed"] == 3
    assert summary["pairs_kept"] > 10
    assert summary["pairs_generated"] == summary["pairs_kept"] + summary["pairs_rejected"]
    text = format_summary(summary, 1.0)
    assert "pairs kept" in text and str(tmp_path / "exports") in text

    db = pipeline_resources["duckdb"].database
    first = table_counts(db)
    # Every kept answer is found in its chunk's text (whitespace and case normalised).
    with duckdb.connect(db, read_only=True) as con:
        ungrounded = con.execute(
            """SELECT count(*) FROM filtered_qa_pairs p JOIN document_chunks c USING (chunk_id)
               WHERE strpos(lower(regexp_replace(c.text, '\\s+', ' ', 'g')),
                            lower(regexp_replace(trim(p.answer), '\\s+', ' ', 'g'))) = 0"""
        ).fetchone()[0]
        provenance = con.execute(
            "SELECT DISTINCT generator, prompt_version FROM generated_qa_pairs"
        ).fetchall()
    assert ungrounded == 0
    assert provenance and all(gen == "model-free" and version for gen, version in provenance)

    # Running again replaces rows: nothing is duplicated.
    run_all(defs, instance, show_progress=False)
    assert table_counts(db) == first

    # The exports load with `datasets`, and no document is in both splits.
    export_dir = Path(summary["export_dir"])
    alpaca = datasets.load_dataset(str(export_dir), "alpaca")
    assert set(alpaca) == {"train", "validation"}
    assert len(alpaca["train"]) + len(alpaca["validation"]) == summary["pairs_kept"]
    assert not set(alpaca["train"]["document_id"]) & set(alpaca["validation"]["document_id"])
    sharegpt = datasets.load_dataset(
        "json", data_files=[str(p) for p in (export_dir / "sharegpt" / "jsonl" / "train").glob("*.jsonl")], split="train"
    )
    assert [turn["from"] for turn in sharegpt[0]["conversations"]] == ["human", "gpt"]


def test_bad_document_fails_alone_with_its_name(pipeline_resources, documents_dir, instance):
    (documents_dir / "broken report.pdf").write_bytes(b"this is not a pdf at all")
    (documents_dir / "empty.md").write_bytes(b"")
    summary = run_all(build_definitions(pipeline_resources), instance, show_progress=False)

    [(key, reason)] = summary["failed"].items()
    assert "broken" in key and reason.startswith("broken report.pdf: could not be read as PDF")
    # An empty file is not broken: it has no text to learn from, a status of its own.
    assert summary["no_text"] == {"empty.md": "the file is empty (0 bytes)"}
    assert summary["parsed"] == 4 and summary["export_ok"]
    assert "no text:         1" in format_summary(summary, 1.0)


class EmptyAnswerForDocx(GenerationResource):
    """A generation backend double that writes an empty answer for the Word document."""

    def create_backend(self, log=None):
        real = super().create_backend(log)

        class Backend:
            generator, model, prompt_version = real.generator, real.model, real.prompt_version

            def generate(self, requests):
                outcome = real.generate(requests)
                pairs = [
                    GeneratedPair(p.chunk_id, p.question, "" if "docx" in p.chunk_id else p.answer, p.question_type,
                                  evidence=p.evidence)
                    for p in outcome.pairs
                ]
                return GenerationOutcome(pairs=pairs, failures=outcome.failures, stats=outcome.stats)

        return Backend()


def test_failing_check_blocks_only_its_document(pipeline_resources, instance):
    defs = build_definitions({**pipeline_resources, "generation": EmptyAnswerForDocx()})
    summary = run_all(defs, instance, show_progress=False)

    docx_key = next(key for key in summary["documents"] if "docx" in key)
    assert list(summary["blocked_by_checks"]) == [docx_key]
    assert "answer" in summary["blocked_by_checks"][docx_key]
    # The blocked document never reached curation or export; the others did.
    for asset in ("filtered_qa_pairs", "alpaca_examples"):
        materialized = instance.get_materialized_partitions(dg.AssetKey(asset))
        assert materialized == set(summary["documents"]) - {docx_key}
    with duckdb.connect(pipeline_resources["duckdb"].database, read_only=True) as con:
        exported = {row[0] for row in con.execute("SELECT DISTINCT document_id FROM alpaca_examples").fetchall()}
    assert docx_key not in exported


def test_project_instance_config_limits_the_gpu_pool_to_one(tmp_path):
    """dagster.yaml (what make run and make ui use) is valid and allows one GPU step at a time."""
    from synth_assets.assets.generate import generated_qa_pairs
    from synth_assets.resources.generation import GPU_POOL

    shutil.copy(Path(__file__).resolve().parents[1] / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as project_instance:
        config = project_instance.get_concurrency_config()
        assert config.pool_config.default_pool_limit == 1
        assert project_instance.run_monitoring_enabled
        assert not project_instance.nux_enabled  # no community modal in a new browser profile
    assert generated_qa_pairs.op.pool == GPU_POOL


def test_a_copied_document_adds_no_duplicate_training_rows(pipeline_resources, documents_dir, instance):
    shutil.copy(documents_dir / "wiki.md", documents_dir / "wiki copy.md")
    summary = run_all(build_definitions(pipeline_resources), instance, show_progress=False)
    assert summary["export_ok"], summary["export_error"]

    with duckdb.connect(pipeline_resources["duckdb"].database, read_only=True) as con:
        kept_in_copy = con.execute(
            "SELECT count(*) FROM filtered_qa_pairs WHERE document_id LIKE 'wiki_copy%'").fetchone()[0]
        removed = con.execute("SELECT reason, count(*) FROM cross_document_duplicates GROUP BY 1").fetchall()
    assert kept_in_copy > 0
    # The copy's repeated questions are left out, kept apart with the pair they repeat.
    # (Its "explain" questions name the file's title, "wiki copy", so a few differ.)
    assert sum(count for _, count in removed) >= 0.8 * kept_in_copy
    assert {reason for reason, _ in removed} <= {"duplicate_question", "near_duplicate_question"}
    rows = datasets.load_dataset(summary["export_dir"], "alpaca")
    questions = list(rows["train"]["instruction"]) + list(rows["validation"]["instruction"])
    assert len(questions) == len(set(questions))
    # The blocking check on training_dataset ran in the export run and passed.
    export_run = instance.get_runs(filters=dg.RunsFilter(job_name="build_training_dataset"), limit=1)[0]
    evaluations = [
        record.dagster_event.event_specific_data
        for record in instance.all_logs(export_run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    assert [(e.check_name, e.passed) for e in evaluations] == [
        ("training_dataset_has_no_cross_document_duplicates_or_split_leaks", True)
    ]
