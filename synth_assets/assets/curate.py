"""Curate: keep the pairs worth training on; keep the others apart with their reasons."""


import json
from collections import Counter

import pandas as pd

import dagster as dg

from synth_assets.assets.factory import document_asset
from synth_assets.batch import for_each_document, stopped_in_run
from synth_assets.core.dedup import DUPLICATE_QUESTION, NEAR_DUPLICATE_QUESTION
from synth_assets.core.coverage import covered_chunk_ids, document_coverage
from synth_assets.core.filters import filter_pairs, language_metadata, pair_languages
from synth_assets.core.task_rules import difficulty_of, judge_view, task_of
from synth_assets.core.text import as_text
from synth_assets.core.text import grounding_score
from synth_assets.core.previews import pairs_preview
from synth_assets.generation.base import JudgeOutcome, JudgeRequest
from synth_assets.resources.curation import CurationResource
from synth_assets.resources.generation import GPU_POOL, GenerationResource
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.storage import (
    DOCUMENT_CHUNKS_TABLE,
    FILTERED_QA_PAIRS_TABLE,
    GENERATED_QA_PAIRS_TABLE,
    REJECTED_QA_PAIRS_TABLE,
    load_pairs_with_chunks,
    read_partition,
    replace_partition_rows,
)

CURATE_GROUP = "curate"


@document_asset(
    group_name=CURATE_GROUP,
    kinds={"duckdb", "great_expectations"},
    # Joined by the configured filter settings in definitions.py: changing a threshold
    # marks this asset and everything below it stale.
    code_version="3",
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
    """The generated pairs that pass every filter: well-formed, natural prose in the
    language of their chunk (detected and recorded in `language`), free of text aimed at
    a model, grounded in their chunk, and not a repeat of an earlier question in the
    same document. Rules with no word list for a language are skipped for it (counted
    under rules_skipped_by_language), never a reason to reject.

    With the judge on (SYNTH_ASSETS_USE_JUDGE=1), the generation model scores each pair
    from 1 to 10 with its chunk shown (the heuristic judge for the model-free backend),
    and pairs below the minimum score are rejected.

    Rejected pairs are not deleted: they go to rejected_qa_pairs with every reason that
    applied, and the counts per reason are shown here.
    """
    judged = {}
    if curation.filter_config().use_judge:
        # Every document's judge requests go out in one backend call before any document
        # is finished: the server (or LLM.chat) gets them all at once and never idles
        # while Python filters and writes one document after another.
        keys = list(context.partition_keys)
        stopped = stopped_in_run(duckdb, context.run_id) if len(keys) > 1 else {}
        judged = judge_documents(context, generation, duckdb, curation.filter_config(),
                                 [key for key in keys if key not in stopped])
    return for_each_document(
        context, duckdb, "filtered_qa_pairs", [FILTERED_QA_PAIRS_TABLE, REJECTED_QA_PAIRS_TABLE],
        lambda key: curate_one(context, key, curation, generation, duckdb, judged.get(key)),
    )


def curate_one(context, document_id: str, curation: CurationResource, generation: GenerationResource,
               duckdb: PipelineDatabase, judged: tuple[dict, dict] | Exception | None = None,
               ) -> dg.MaterializeResult:
    """Filter one document's pairs and write them. `judged` is the document's share of
    judge_documents (scores by pair_id, metadata); without it, and with the judge on,
    this document is judged on its own."""
    with duckdb.get_connection() as con:
        pairs = load_items(con, document_id)
    config = curation.filter_config()
    pairs["language"] = pair_languages(pairs.to_dict("records"))
    records = pairs.to_dict("records")
    judge_metadata: dict = {"judge": "off (SYNTH_ASSETS_USE_JUDGE=1 turns it on)"}
    judgements: dict[str, tuple[int, str]] = {}
    if config.use_judge:
        judged = judged or judge_documents(context, generation, duckdb, config, [document_id])[document_id]
        if isinstance(judged, Exception):  # met while preparing its judge requests: its own failure
            raise judged
        judgements, judge_metadata = judged
    judge_scores = [judgements.get(p["pair_id"], (None, ""))[0] for p in records] if config.use_judge else None
    evidence: list[dict] = []
    judge_unsupported = [judgements[p["pair_id"]][2] if p["pair_id"] in judgements and len(judgements[p["pair_id"]]) > 2
                         else [] for p in records] if config.use_judge else None
    reasons = filter_pairs(records, config, judge_scores=judge_scores, evidence=evidence,
                           judge_unsupported=judge_unsupported)
    pairs["evidence_spans"] = [json.dumps(found["spans"]) if found["spans"] else None for found in evidence]
    pairs["reason_details"] = [json.dumps(found["details"], ensure_ascii=False) if found["details"] else None
                               for found in evidence]
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
    pairs["difficulty_proxy"] = pd.array([difficulty_of(p) for p in records], dtype="Int64")
    # The generator's own difficulty when it gave one; the measured proxy otherwise.
    pairs["difficulty"] = pd.array(pairs["difficulty"], dtype="Int64").fillna(pairs["difficulty_proxy"])
    scratch = ["chunk_text", "heading_path", "chunk_language", "source_texts", "judge_source_texts", "document_text",
               "source_map"]
    kept = pairs[kept_mask].drop(columns=[*scratch, "reject_reasons", "reason_details"], errors="ignore")
    rejected = pairs[~kept_mask].drop(columns=scratch, errors="ignore")
    with duckdb.get_connection() as con:
        replace_partition_rows(con, FILTERED_QA_PAIRS_TABLE, document_id, kept)
        replace_partition_rows(con, REJECTED_QA_PAIRS_TABLE, document_id, rejected)
        chunks = read_partition(con, DOCUMENT_CHUNKS_TABLE, document_id)
    coverage = document_coverage(chunks, covered_chunk_ids(kept))

    reason_counts = Counter(reason for row in reasons for reason in row)
    tasks = pairs["task"].fillna("qa")
    per_task = {task: {"generated": int((tasks == task).sum()), "kept": int((tasks[kept_mask] == task).sum())}
                for task in sorted(set(tasks))}
    pass_rate = len(kept) / len(pairs) if len(pairs) else 0.0
    context.log.info(f"{document_id}: kept {len(kept)} of {len(pairs)} pairs; rejected {dict(reason_counts)}")
    rejects_sample = rejected.head(5).assign(reject_reasons=lambda f: f["reject_reasons"].map(", ".join))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(kept),
            "generated": len(pairs),
            "rejected": len(rejected),
            "pass_rate": round(pass_rate, 3),
            # Which of the document's non-boilerplate chunks and headings the kept items draw on.
            **{key: value for key, value in coverage.summary().items() if value is not None},
            "uncovered_chunk_ids": dg.MetadataValue.json(coverage.uncovered_chunk_ids[:50]),
            "rejections_by_reason": dg.MetadataValue.json(dict(reason_counts)),
            "items_per_task": dg.MetadataValue.json(per_task),
            "semantic_similarity": "on (all-MiniLM-L6-v2, min "
            f"{config.min_semantic_similarity})" if config.use_embeddings else "off",
            **judge_metadata,
            **language_metadata(pairs["language"]),
            "preview": dg.MetadataValue.md(preview),
            "rejected_sample": dg.MetadataValue.md(
                rejects_sample[["reject_reasons", "question", "answer"]].to_markdown(index=False)
                if len(rejected)
                else "none rejected"
            ),
        }
    )


def pairs_to_judge(records: list[dict], config) -> list[JudgeRequest]:
    """The pairs worth a judge's request: those that pass the cheaper rules, or fail
    them only as duplicates (which the judge may change). A model call for a pair
    already rejected would be wasted."""
    cheap = config.model_copy(update={"use_judge": False})
    dedup_only = {DUPLICATE_QUESTION, NEAR_DUPLICATE_QUESTION}
    return [
        JudgeRequest(p["pair_id"], *judge_view(p), as_text(p.get("chunk_text")), task_of(p),
                     tuple(as_text(t) for t in p.get("judge_source_texts") or ()))
        for p, reasons in zip(records, filter_pairs(records, cheap))
        if set(reasons) <= dedup_only
    ]


def load_items(con, document_id: str) -> pd.DataFrame:
    """A document's generated items with their chunk's text, and what the task rules
    read besides: a multi-hop item's chunks (their text joined as its source, their
    bodies, without the overlap from the chunk before, in `source_texts`), and for an
    unanswerable item the whole document (`document_text`)."""
    pairs = load_pairs_with_chunks(con, GENERATED_QA_PAIRS_TABLE, document_id)
    pairs["task"] = pairs["task"].fillna("qa") if "task" in pairs else "qa"
    if not (pairs["task"] != "qa").any():
        return pairs
    chunks = read_partition(con, DOCUMENT_CHUNKS_TABLE, document_id).sort_values("chunk_index")
    text, body = dict(zip(chunks["chunk_id"], chunks["text"])), dict(zip(chunks["chunk_id"], chunks["body"]))
    sources = [json.loads(ids) if isinstance(ids, str) else [chunk] for ids, chunk in
               zip(pairs["source_chunk_ids"], pairs["chunk_id"])]
    multi_hop = pairs["task"] == "multi_hop"
    pairs["source_texts"] = [[body.get(c, "") for c in ids] if hop else None for ids, hop in zip(sources, multi_hop)]
    # The judge sees each chunk whole, as generation's judging did (same prompt, cache hit).
    pairs["judge_source_texts"] = [[text.get(c, "") for c in ids] if hop else None
                                   for ids, hop in zip(sources, multi_hop)]
    pairs.loc[multi_hop, "chunk_text"] = ["\n\n".join(text.get(c, "") for c in ids)
                                         for ids, hop in zip(sources, multi_hop) if hop]
    # Where a multi-hop item's quotes are looked up: each of its chunks (evidence spans
    # are offsets into one chunk's text).
    pairs["source_map"] = [{c: text.get(c, "") for c in ids} if hop else None for ids, hop in zip(sources, multi_hop)]
    whole = "\n".join(chunks.loc[~chunks["boilerplate"], "body"])
    pairs["document_text"] = [whole if task == "unanswerable" else None for task in pairs["task"]]
    return pairs


def judge_documents(
    context: dg.AssetExecutionContext,
    generation: GenerationResource,
    duckdb: PipelineDatabase,
    config,
    document_ids: list[str],
) -> dict[str, tuple[dict[str, tuple[int, str]], dict] | Exception]:
    """Per document: judge scores by pair_id and metadata about the judging, or the
    error met while preparing its requests (that document's failure, not the others').

    The judge requests of every document go to the backend in one call (the openai
    backend keeps its bounded concurrency full across documents; vllm makes one
    LLM.chat call); only pairs_to_judge are sent. With a cache, the generation step has
    usually judged them already while generating (generate_and_judge), and these are
    cache hits. A pair the judge could not score is kept unjudged and counted.
    """
    requests: dict[str, list[JudgeRequest]] = {}
    prepared: dict = {}
    with duckdb.get_connection() as con:
        for document_id in document_ids:
            try:
                records = load_items(con, document_id).to_dict("records")
                requests[document_id] = pairs_to_judge(records, config)
            except Exception as error:  # noqa: BLE001 - raised again by that document's curate_one
                prepared[document_id] = error
    to_judge = [request for batch in requests.values() for request in batch]
    outcome = generation.judge(to_judge, context.log) if to_judge else JudgeOutcome()
    if outcome.failures:
        context.log.warning(
            f"the judge could not score {len(outcome.failures)} pairs; they are kept unjudged. "
            f"First error: {next(iter(outcome.failures.values()))}"
        )
    for document_id, batch in requests.items():
        # (score, reason, the claims the judge found unsupported)
        scores = {r.pair_id: (*outcome.scores[r.pair_id], outcome.unsupported.get(r.pair_id, []))
                  for r in batch if r.pair_id in outcome.scores}
        failures = sum(r.pair_id in outcome.failures for r in batch)
        values = [score for score, *_ in scores.values()]
        prepared[document_id] = scores, {
            "judge": f"{generation.backend} ({generation.model or 'heuristic judge'}), "
                     f"min score {config.min_judge_score}",
            "judged": len(scores),
            "judge_failures": failures,
            "judge_mean_score": round(sum(values) / len(values), 2) if values else 0.0,
            "judge_score_counts": dg.MetadataValue.json(dict(sorted(Counter(values).items()))),
        }
    return prepared
