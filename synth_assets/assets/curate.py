"""Curate: keep the pairs worth training on; keep the others apart with their reasons."""


from collections import Counter

import pandas as pd

import dagster as dg

from synth_assets.assets.generate import generated_qa_pairs, pairs_preview
from synth_assets.core.filters import filter_pairs, grounding_score
from synth_assets.partitions import documents_partitions
from synth_assets.resources.curation import CurationResource
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.storage import (
    DOCUMENT_CHUNKS_TABLE,
    FILTERED_QA_PAIRS_TABLE,
    GENERATED_QA_PAIRS_TABLE,
    REJECTED_QA_PAIRS_TABLE,
    replace_partition_rows,
)

CURATE_GROUP = "curate"


def load_pairs_with_chunks(con, table: str, document_id: str) -> pd.DataFrame:
    """Pairs of one document joined to the text of the chunk they came from."""
    return con.execute(
        f"""
        SELECT p.*, c.text AS chunk_text
        FROM {table} p LEFT JOIN {DOCUMENT_CHUNKS_TABLE} c USING (chunk_id)
        WHERE p.document_id = ? ORDER BY p.pair_id
        """,
        [document_id],
    ).df()


@dg.asset(
    partitions_def=documents_partitions,
    deps=[generated_qa_pairs],
    group_name=CURATE_GROUP,
    kinds={"duckdb"},
    code_version="1",
)
def filtered_qa_pairs(
    context: dg.AssetExecutionContext, curation: CurationResource, duckdb: PipelineDatabase
) -> dg.MaterializeResult:
    """The generated pairs that pass every filter: well-formed, English prose, grounded in
    their chunk, and not a repeat of an earlier question in the same document.

    Rejected pairs are not deleted: they go to rejected_qa_pairs with every reason that
    applied, and the counts per reason are shown here.
    """
    document_id = context.partition_key
    with duckdb.get_connection() as con:
        pairs = load_pairs_with_chunks(con, GENERATED_QA_PAIRS_TABLE, document_id)
    reasons = filter_pairs(pairs.to_dict("records"), curation.filter_config())
    pairs["grounding"] = [
        grounding_score(answer or "", chunk or "")
        for answer, chunk in zip(pairs["answer"], pairs["chunk_text"])
    ]
    pairs["reject_reasons"] = reasons
    kept_mask = pairs["reject_reasons"].map(len) == 0
    kept = pairs[kept_mask].drop(columns=["chunk_text", "reject_reasons"])
    rejected = pairs[~kept_mask].drop(columns=["chunk_text"])
    with duckdb.get_connection() as con:
        replace_partition_rows(con, FILTERED_QA_PAIRS_TABLE, document_id, kept)
        replace_partition_rows(con, REJECTED_QA_PAIRS_TABLE, document_id, rejected)

    reason_counts = Counter(reason for row in reasons for reason in row)
    pass_rate = len(kept) / len(pairs) if len(pairs) else 0.0
    context.log.info(f"{document_id}: kept {len(kept)} of {len(pairs)} pairs; rejected {dict(reason_counts)}")
    rejects_sample = rejected.head(5).assign(reject_reasons=lambda f: f["reject_reasons"].map(", ".join))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(kept),
            "generated": len(pairs),
            "rejected": len(rejected),
            "pass_rate": round(pass_rate, 3),
            "rejections_by_reason": dg.MetadataValue.json(dict(reason_counts)),
            "preview": dg.MetadataValue.md(pairs_preview(kept)),
            "rejected_sample": dg.MetadataValue.md(
                rejects_sample[["reject_reasons", "question", "answer"]].to_markdown(index=False)
                if len(rejected)
                else "none rejected"
            ),
        }
    )
