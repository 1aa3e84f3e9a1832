"""Curate: keep the pairs worth training on; keep the others apart with their reasons."""


from collections import Counter

import pandas as pd

import dagster as dg

from synth_assets.assets.factory import document_asset
from synth_assets.batch import for_each_document
from synth_assets.core.dedup import DUPLICATE_QUESTION, NEAR_DUPLICATE_QUESTION
from synth_assets.core.filters import filter_pairs
from synth_assets.core.text import grounding_score
from synth_assets.core.previews import pairs_preview
from synth_assets.generation.base import JudgeRequest
from synth_assets.resources.curation import CurationResource
from synth_assets.resources.generation import GPU_POOL, GenerationResource
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.storage import (
    DOCUMENT_CHUNKS_TABLE,
    FILTERED_QA_PAIRS_TABLE,
    GENERATED_QA_PAIRS_TABLE,
    REJECTED_QA_PAIRS_TABLE,
    load_pairs_with_chunks,
    replace_partition_rows,
)

CURATE_GROUP = "curate"


@document_asset(
    group_name=CURATE_GROUP,
    kinds={"duckdb", "great_expectations"},
    # Joined by the configured filter settings in definitions.py: changing a threshold
    # marks this asset and everything below it stale.
    code_version="2",
    deps=["generated_qa_pairs"],
    # With the judge on, this step asks the generation model too: it queues for the GPU.
    pool=GPU_POOL,
)
def filtered_qa_pairs(
    context: dg.AssetExecutionContext,
    curation: CurationResource,
    generation: GenerationResource,
    duckdb: PipelineDatabase,
) -> dg.MaterializeResult:
    """The generated pairs that pass every filter: well-formed, English prose, grounded in
    their chunk, and not a repeat of an earlier question in the same document.

    With the judge on (SYNTH_ASSETS_USE_JUDGE=1), the generation model scores each pair
    from 1 to 10 with its chunk shown (the heuristic judge for the model-free backend),
    and pairs below the minimum score are rejected.

    Rejected pairs are not deleted: they go to rejected_qa_pairs with every reason that
    applied, and the counts per reason are shown here.
    """
    return for_each_document(
        context, duckdb, "filtered_qa_pairs", [FILTERED_QA_PAIRS_TABLE, REJECTED_QA_PAIRS_TABLE],
        lambda key: curate_one(context, key, curation, generation, duckdb),
    )


def curate_one(context, document_id: str, curation: CurationResource, generation: GenerationResource,
               duckdb: PipelineDatabase) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        pairs = load_pairs_with_chunks(con, GENERATED_QA_PAIRS_TABLE, document_id)
    config = curation.filter_config()
    records = pairs.to_dict("records")
    judge_metadata: dict = {"judge": "off (SYNTH_ASSETS_USE_JUDGE=1 turns it on)"}
    judgements: dict[str, tuple[int, str]] = {}
    if config.use_judge:
        judgements, judge_metadata = judge_pairs(context, generation, records, config)
    judge_scores = [judgements.get(p["pair_id"], (None, ""))[0] for p in records] if config.use_judge else None
    reasons = filter_pairs(records, config, judge_scores=judge_scores)
    pairs["judge_score"] = pd.array(
        [judgements[p][0] if p in judgements else None for p in pairs["pair_id"]], dtype="Int64"
    )
    pairs["judge_reason"] = [judgements[p][1] if p in judgements else None for p in pairs["pair_id"]]
    pairs["grounding"] = [
        grounding_score(answer or "", chunk or "")
        for answer, chunk in zip(pairs["answer"], pairs["chunk_text"])
    ]
    pairs["reject_reasons"] = reasons
    kept_mask = pairs["reject_reasons"].map(len) == 0
    preview = pairs_preview(pairs[kept_mask])
    kept = pairs[kept_mask].drop(columns=["chunk_text", "heading_path", "reject_reasons"])
    rejected = pairs[~kept_mask].drop(columns=["chunk_text", "heading_path"])
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
            "semantic_similarity": "on (all-MiniLM-L6-v2, min "
            f"{config.min_semantic_similarity})" if config.use_embeddings else "off",
            **judge_metadata,
            "preview": dg.MetadataValue.md(preview),
            "rejected_sample": dg.MetadataValue.md(
                rejects_sample[["reject_reasons", "question", "answer"]].to_markdown(index=False)
                if len(rejected)
                else "none rejected"
            ),
        }
    )


def judge_pairs(
    context: dg.AssetExecutionContext,
    generation: GenerationResource,
    records: list[dict],
    config,
) -> tuple[dict[str, tuple[int, str]], dict]:
    """Judge scores by pair_id, and metadata about the judging.

    Only pairs that pass the cheaper rules (or fail them only as duplicates, which the
    judge may change) are sent to the judge: a model call for a pair already rejected
    would be wasted. A pair the judge could not score is kept unjudged and counted.
    """
    cheap = config.model_copy(update={"use_judge": False})
    first_pass = filter_pairs(records, cheap)
    dedup_only = {DUPLICATE_QUESTION, NEAR_DUPLICATE_QUESTION}
    to_judge = [
        JudgeRequest(p["pair_id"], p["question"] or "", p["answer"] or "", p["chunk_text"] or "")
        for p, reasons in zip(records, first_pass)
        if set(reasons) <= dedup_only
    ]
    outcome = generation.judge(to_judge, context.log) if to_judge else None
    scores = outcome.scores if outcome else {}
    failures = outcome.failures if outcome else {}
    if failures:
        context.log.warning(
            f"the judge could not score {len(failures)} pairs; they are kept unjudged. "
            f"First error: {next(iter(failures.values()))}"
        )
    values = [score for score, _ in scores.values()]
    metadata = {
        "judge": f"{generation.backend} ({generation.model or 'heuristic judge'}), min score {config.min_judge_score}",
        "judged": len(scores),
        "judge_failures": len(failures),
        "judge_mean_score": round(sum(values) / len(values), 2) if values else 0.0,
        "judge_score_counts": dg.MetadataValue.json(dict(sorted(Counter(values).items()))),
    }
    return scores, metadata
