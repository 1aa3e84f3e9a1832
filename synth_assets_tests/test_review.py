"""Experts in the loop: the review sample, verdicts flowing back into the training
dataset, and each filter rule's precision and recall measured on the reviewed pairs."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from synth_assets.core.review import (
    ANY_RULE,
    NARROW_GROUNDING,
    NEAR_JUDGE,
    RANDOM,
    RARE_TYPE,
    SINGLE_RULE,
    apply_reviews,
    latest_verdicts,
    rule_precision_recall,
    select_review_sample,
)
from synth_assets.definitions import build_definitions
from synth_assets.jobs import PROCESS_DOCUMENTS_JOB
from synth_assets.sensors import REVIEWED_VERDICTS_SENSOR
from synth_assets.storage import REVIEW_SAMPLE_TABLE, REVIEWED_QA_PAIRS_TABLE, record_verdict


def pair(pair_id, *, status="kept", reasons=(), judge=None, grounding=1.0, kind="fact"):
    return {"pair_id": pair_id, "status": status, "reject_reasons": list(reasons), "judge_score": judge,
            "grounding": grounding, "question_type": kind}


# 20 plain kept pairs (nothing uncertain about them) and four uncertain ones.
PLAIN = [pair(f"p{i:02d}") for i in range(20)]
UNCERTAIN = [
    pair("judge-5", judge=5, status="rejected", reasons=["low_judge_score"]),  # judge at threshold + single rule
    pair("single", status="rejected", reasons=["ungrounded"], grounding=0.5),
    pair("narrow", grounding=0.82),
    pair("rare", kind="compare"),
]
SAMPLE_ARGS = {"random_share": 0.25, "seed": 7, "min_judge_score": 6, "min_grounding": 0.8}


def test_the_sample_puts_uncertain_pairs_first_then_a_random_share():
    sample = select_review_sample(PLAIN + UNCERTAIN, size=8, **SAMPLE_ARGS)
    assert len(sample) == 8
    # 8 - round(8 * 0.25) = 6 places for uncertain pairs; only 4 are uncertain, so the
    # random draw fills the other 4.
    assert [p["pair_id"] for p in sample[:4]] == ["judge-5", "single", "narrow", "rare"]
    assert sample[0]["sampled_for"] == [NEAR_JUDGE, SINGLE_RULE]
    assert "judge score 5, just below the minimum of 6" in sample[0]["why_sampled"]
    assert sample[2]["sampled_for"] == [NARROW_GROUNDING] and sample[3]["sampled_for"] == [RARE_TYPE]
    assert all(p["sampled_for"] == [RANDOM] and p["priority"] == 0 for p in sample[4:])
    assert [p["priority"] for p in sample] == sorted((p["priority"] for p in sample), reverse=True)


def test_the_random_share_is_kept_even_when_many_pairs_are_uncertain():
    many = [pair(f"n{i:02d}", grounding=0.81) for i in range(20)] + PLAIN
    sample = select_review_sample(many, size=8, **SAMPLE_ARGS)
    assert [p["sampled_for"] for p in sample].count([RANDOM]) == 2
    assert all(p["pair_id"].startswith("n") for p in sample[:6])


def test_the_sample_is_stable_for_a_seed_and_changes_with_it():
    pairs = PLAIN + UNCERTAIN
    first = [p["pair_id"] for p in select_review_sample(pairs, size=8, **SAMPLE_ARGS)]
    again = [p["pair_id"] for p in select_review_sample(list(reversed(pairs)), size=8, **SAMPLE_ARGS)]
    assert first == again
    other = [p["pair_id"] for p in select_review_sample(pairs, size=8, **{**SAMPLE_ARGS, "seed": 8})]
    assert first[:4] == other[:4] and first[4:] != other[4:]


def test_bad_sample_settings_are_refused():
    with pytest.raises(ValueError, match="random_share"):
        select_review_sample(PLAIN, size=8, **{**SAMPLE_ARGS, "random_share": 1.5})


# A reviewed sample, counted by hand below.
REVIEWED = [
    # status, reject reasons, judge score, verdict
    ("kept", [], 8, "accept"),
    ("kept", [], 6, "reject"),
    ("kept", [], 7, "edit"),
    ("rejected", ["ungrounded"], None, "reject"),
    ("rejected", ["ungrounded"], None, "accept"),
    ("rejected", ["ungrounded", "low_information"], None, "reject"),
    ("rejected", ["low_information"], None, "reject"),
    ("rejected", ["low_judge_score"], 4, "accept"),
    ("rejected", ["low_judge_score"], 5, "reject"),
]


def test_precision_and_recall_per_rule_match_a_hand_count():
    rows = [{"status": s, "reject_reasons": r, "judge_score": j, "verdict": v} for s, r, j, v in REVIEWED]
    table = {row["rule"]: row for row in rule_precision_recall(rows, min_judge_score=6)}
    # Bad (rejected by the expert): rows 2, 4, 6, 7, 9 -> 5.
    # ungrounded fired on 4, 5, 6; bad among them 4, 6 -> precision 2/3, recall 2/5.
    assert table["ungrounded"] == {"rule": "ungrounded", "reviewed": 9, "fired": 3, "bad": 5, "fired_and_bad": 2,
                                   "precision": 0.667, "recall": 0.4}
    # low_information fired on 6, 7, both bad -> precision 1, recall 2/5.
    assert (table["low_information"]["precision"], table["low_information"]["recall"]) == (1.0, 0.4)
    # low_judge_score fired on 8, 9; bad 9 -> 1/2, 1/5. The judge by score (< 6): the same two.
    assert (table["low_judge_score"]["precision"], table["low_judge_score"]["recall"]) == (0.5, 0.2)
    assert (table["judge (score < 6)"]["fired"], table["judge (score < 6)"]["precision"]) == (2, 0.5)
    # Rejected at all: rows 4-9 (6), bad 4, 6, 7, 9 -> 4/6, 4/5.
    assert (table[ANY_RULE]["precision"], table[ANY_RULE]["recall"]) == (0.667, 0.8)
    # Nothing bad, nothing fired: undefined, not 0.
    clean = rule_precision_recall([{"status": "kept", "reject_reasons": [], "judge_score": None,
                                    "verdict": "accept"}], min_judge_score=6)
    assert clean == [{"rule": ANY_RULE, "reviewed": 1, "fired": 0, "bad": 0, "fired_and_bad": 0,
                      "precision": None, "recall": None}]


def test_the_latest_verdict_counts_and_edits_replace_the_text():
    verdicts = pd.DataFrame([
        {"pair_id": "a", "verdict": "reject", "reviewed_at": pd.Timestamp("2026-01-01 10:00")},
        {"pair_id": "a", "verdict": "accept", "reviewed_at": pd.Timestamp("2026-01-01 11:00")},
        {"pair_id": "b", "verdict": "accept", "reviewed_at": pd.Timestamp("2026-01-01 10:00")},
    ])
    assert dict(zip(*latest_verdicts(verdicts)[["pair_id", "verdict"]].T.values)) == {"a": "accept", "b": "accept"}
    pairs = pd.DataFrame({"pair_id": ["a", "b", "c", "d"], "question": ["qa?", "qb?", "qc?", "qd?"],
                          "answer": ["A", "B", "C", "D"], "reasoning": ["r", "r", "r", "r"]})
    reviewed = pd.DataFrame({
        "pair_id": ["a", "b", "c", "d"], "verdict": ["accept", "edit", "reject", "reject"],
        "original_question": ["qa?", "qb?", "qc?", "an older question?"], "original_answer": ["A", "B", "C", "D"],
        "question": ["qa?", "better qb?", "qc?", "an older question?"], "answer": ["A", "B2", "C", "D"],
    })
    applied, counts = apply_reviews(pairs, reviewed)
    # d's verdict was about text it no longer has: not applied.
    assert applied[["pair_id", "question", "answer"]].values.tolist() == [
        ["a", "qa?", "A"], ["b", "better qb?", "B2"], ["d", "qd?", "D"]]
    assert applied["reasoning"].isna().tolist() == [False, True, False]
    assert counts == {"accept": 1, "edit": 1, "reject": 1}


def _rows(defs, table: str) -> pd.DataFrame:
    with defs.resources["duckdb"].get_connection() as con:
        return con.execute(f"SELECT * FROM {table} ORDER BY document_id, pair_id").df()


def test_verdicts_flow_back_into_the_training_dataset(pipeline_resources, instance):
    from synth_assets.run import run_all

    defs = build_definitions(pipeline_resources)
    first = run_all(defs, instance, show_progress=False)
    assert first["export_ok"], (first["export_error"], first.get("export_status"))
    sample = _rows(defs, REVIEW_SAMPLE_TABLE)
    kept = sample[(sample["status"] == "kept") & (sample["document_id"] == "wiki.md")]
    assert len(kept) >= 3, sample
    assert kept["chunk_text"].notna().all() and kept["source_file"].eq("wiki.md").all()
    assert sample.groupby("document_id").size().le(8).all() and sample["why_sampled"].str.len().gt(0).all()
    accepted, edited, rejected = kept["pair_id"].iloc[:3]
    with defs.resources["duckdb"].get_connection() as con:
        record_verdict(con, pair_id=accepted, verdict="accept", reviewer="ada")
        record_verdict(con, pair_id=edited, verdict="edit", reviewer="ada", reason="clearer",
                       edited_question="What does the expert's edited question ask?")
        record_verdict(con, pair_id=rejected, verdict="accept", reviewer="bob")
        record_verdict(con, pair_id=rejected, verdict="reject", reviewer="bob", reason="wrong")

    # The verdicts sensor asks for reviewed_qa_pairs of that document, once.
    sensor = defs.resolve_sensor_def(REVIEWED_VERDICTS_SENSOR)
    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
        tick = sensor(context)
        assert [(r.partition_key, r.asset_selection) for r in tick.run_requests] == [
            ("wiki.md", [dg.AssetKey("reviewed_qa_pairs")])]
        context.update_cursor(tick.cursor)
        assert isinstance(sensor(context), dg.SkipReason)
    result = defs.resolve_job_def(PROCESS_DOCUMENTS_JOB).execute_in_process(
        instance=instance, partition_key="wiki.md", asset_selection=tick.run_requests[0].asset_selection)
    assert result.success
    reviewed = _rows(defs, REVIEWED_QA_PAIRS_TABLE).set_index("pair_id")
    assert reviewed.loc[rejected, "verdict"] == "reject"  # the latest of bob's two verdicts
    assert reviewed.loc[edited, "question"] == "What does the expert's edited question ask?"
    assert reviewed.loc[edited, "original_question"] == kept.set_index("pair_id").loc[edited, "question"]

    # make run: nothing changed in the folder, but the reviewed pairs did.
    second = run_all(defs, instance, show_progress=False)
    assert second["processed"] == [], second["processed"]
    assert second["published_version"] != first["published_version"], (first, second)
    from synth_assets.core.shards import read_split

    alpaca = pd.concat([read_split(Path(second["export_dir"]), "alpaca", split) for split in ("train", "validation")])
    rows = alpaca.set_index("pair_id")
    assert rejected not in rows.index
    assert rows.loc[edited, "instruction"] == "What does the expert's edited question ask?"
    assert accepted in rows.index
    card = (Path(second["export_dir"]) / "README.md").read_text()
    assert "## Expert review" in card
    assert "3 sampled pairs reviewed by domain experts: 1 accepted,\n1 edited, 1 rejected" in card
    assert "1\nedits replace the generated text and 1 rejected pairs are left out" in card
    metadata = instance.get_latest_materialization_event(dg.AssetKey("training_dataset")).asset_materialization.metadata
    assert metadata["pairs_reviewed"].value == 3
    assert "| any rule (rejected at all)" in metadata["precision_recall_per_rule"].value
