"""Review: the pairs a domain expert looks at per document, and what the expert decided."""

import hashlib
from collections import Counter

import pandas as pd

import dagster as dg

from synth_assets.assets.factory import document_asset
from synth_assets.batch import for_each_document
from synth_assets.core.review import (
    precision_recall_markdown,
    reviewed_pairs,
    rule_precision_recall,
    select_review_sample,
)
from synth_assets.resources.curation import CurationResource
from synth_assets.resources.review import ReviewSettings
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.storage import (
    DOCUMENT_CHUNKS_TABLE,
    FILTERED_QA_PAIRS_TABLE,
    RAW_DOCUMENTS_TABLE,
    REJECTED_QA_PAIRS_TABLE,
    REVIEW_SAMPLE_TABLE,
    REVIEW_VERDICTS_TABLE,
    REVIEWED_QA_PAIRS_TABLE,
    read_partition,
    replace_partition_rows,
)

REVIEW_GROUP = "review"
PREVIEW_ROWS = 5


def _candidates(con, document_id: str) -> pd.DataFrame:
    """A document's kept and rejected pairs with the passage, heading, pages and file
    a reviewer needs beside them."""
    return con.execute(
        f"""
        WITH pairs AS (
            SELECT pair_id, document_id, chunk_id, question, answer, question_type, 'kept' AS status,
                   []::VARCHAR[] AS reject_reasons, grounding, judge_score, language, evidence_spans
            FROM {FILTERED_QA_PAIRS_TABLE} WHERE document_id = ?
            UNION ALL
            SELECT pair_id, document_id, chunk_id, question, answer, question_type, 'rejected',
                   reject_reasons, grounding, judge_score, language, evidence_spans
            FROM {REJECTED_QA_PAIRS_TABLE} WHERE document_id = ?
        )
        SELECT p.*, c.text AS chunk_text, c.heading_path, c.page_start, c.page_end, r.relative_path AS source_file
        FROM pairs p LEFT JOIN {DOCUMENT_CHUNKS_TABLE} c USING (chunk_id)
        LEFT JOIN {RAW_DOCUMENTS_TABLE} r ON r.document_id = p.document_id
        ORDER BY p.pair_id
        """,
        [document_id, document_id],
    ).df()


def page_link(review: ReviewSettings, document_id: str) -> str:
    return f"{review.page_url.rstrip('/')}/documents/{document_id}"


@document_asset(group_name=REVIEW_GROUP, kinds={"duckdb"}, code_version="2", deps=["filtered_qa_pairs"])
def review_sample(context: dg.AssetExecutionContext, duckdb: PipelineDatabase, curation: CurationResource,
                  review: ReviewSettings) -> dg.MaterializeResult:
    """The pairs of this document a domain expert should review, kept and rejected ones
    alike (so every filter rule gets a measured precision): the uncertain ones first (a
    judge score at the threshold, grounding that passed narrowly, a question type the
    document has few of, a pair only one rule rejected), then a random share
    (SYNTH_ASSETS_REVIEW_RANDOM_SHARE) so the estimates are not only about hard cases.
    SYNTH_ASSETS_REVIEW_SAMPLE_SIZE pairs per document; an unchanged document gets the
    same sample on every run. Each row carries its passage, heading, pages and file, and
    why it was picked. The review page (linked here) records the verdicts."""
    return for_each_document(context, duckdb, "review_sample", [REVIEW_SAMPLE_TABLE],
                             lambda key: _sample_one(key, duckdb, curation, review))


def _sample_one(document_id: str, duckdb: PipelineDatabase, curation: CurationResource,
                review: ReviewSettings) -> dg.MaterializeResult:
    config = curation.filter_config()
    with duckdb.get_connection() as con:
        candidates = _candidates(con, document_id)
    chosen = select_review_sample(candidates.to_dict("records"), size=review.sample_size,
                                  random_share=review.random_share, seed=review.seed,
                                  min_judge_score=config.min_judge_score, min_grounding=config.min_grounding)
    sample = pd.DataFrame(chosen, columns=[*candidates.columns, "why_sampled", "sampled_for", "priority"])
    reasons = Counter(kind for kinds in sample["sampled_for"] for kind in kinds)
    sample = sample.drop(columns="sampled_for")
    with duckdb.get_connection() as con:
        replace_partition_rows(con, REVIEW_SAMPLE_TABLE, document_id, sample)
    shown = sample.head(PREVIEW_ROWS).assign(reject_reasons=lambda f: f["reject_reasons"].map(", ".join))
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(sample),
        "candidates": len(candidates),
        "sampled_kept": int((sample["status"] == "kept").sum()),
        "sampled_rejected": int((sample["status"] == "rejected").sum()),
        "why_sampled": dg.MetadataValue.json(dict(reasons)),
        "review_page": dg.MetadataValue.url(page_link(review, document_id)),
        "preview": dg.MetadataValue.md(
            shown[["why_sampled", "status", "reject_reasons", "question", "answer"]].to_markdown(index=False)
            if len(sample) else "nothing to review (no pairs, or SYNTH_ASSETS_REVIEW_SAMPLE_SIZE=0)"),
    })


@document_asset(group_name=REVIEW_GROUP, kinds={"duckdb"}, code_version="1", deps=["review_sample"])
def reviewed_qa_pairs(context: dg.AssetExecutionContext, duckdb: PipelineDatabase,
                      curation: CurationResource) -> dg.MaterializeResult:
    """The sampled pairs an expert has reviewed, with the latest verdict on each (accept,
    edit or reject, who, when and why) and the text as the expert left it; the original
    text is kept beside an edit. The training dataset applies them: edits replace the
    generated text, rejected pairs are left out. Here, per document: the verdict counts
    and how often each filter rule and the judge agreed with the experts (precision and
    recall on the reviewed pairs). The reviewed_verdicts_sensor runs this when verdicts
    arrive."""
    return for_each_document(context, duckdb, "reviewed_qa_pairs", [REVIEWED_QA_PAIRS_TABLE],
                             lambda key: _reviewed_one(key, duckdb, curation))


def _reviewed_one(document_id: str, duckdb: PipelineDatabase, curation: CurationResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        sample = read_partition(con, REVIEW_SAMPLE_TABLE, document_id)
        verdicts = read_partition(con, REVIEW_VERDICTS_TABLE, document_id)
    reviewed, outdated = reviewed_pairs(sample, verdicts)
    with duckdb.get_connection() as con:
        replace_partition_rows(con, REVIEWED_QA_PAIRS_TABLE, document_id, reviewed)
    counts = Counter(reviewed["verdict"])
    table = rule_precision_recall(reviewed.to_dict("records"), curation.filter_config().min_judge_score)
    # The verdicts come from outside the graph (the review page), so the data version is
    # their content: a new verdict makes the training dataset stale, a rerun without one does not.
    content = reviewed[["pair_id", "verdict", "question", "answer"]].to_json(orient="values", force_ascii=False)
    return dg.MaterializeResult(data_version=dg.DataVersion(hashlib.sha256(content.encode()).hexdigest()[:16]),
                                metadata={
        "dagster/row_count": len(reviewed),
        "sampled": len(sample),
        "accepted": counts.get("accept", 0),
        "edited": counts.get("edit", 0),
        "rejected": counts.get("reject", 0),
        "verdicts_left_aside": outdated,
        "precision_recall": dg.MetadataValue.md(precision_recall_markdown(table)),
    })
