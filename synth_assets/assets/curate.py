"""Curate: keep the pairs worth training on; keep the others apart with their reasons."""


import json
from collections import Counter

import pandas as pd

import dagster as dg

from synth_assets.assets.factory import document_asset
from synth_assets.batch import for_each_document, stopped_in_run
from synth_assets.core.dedup import DUPLICATE_QUESTION, NEAR_DUPLICATE_QUESTION
from synth_assets.core.coverage import covered_chunk_ids, document_coverage
from synth_assets.core.filters import closed_book_reasons, filter_pairs, language_metadata, pair_languages
from synth_assets.core.preference import (
    CANDIDATE_COLUMNS,
    CLOSED_BOOK,
    PREFERENCE_TASKS,
    answer_rules,
    generator_candidates,
)
from synth_assets.core.task_rules import difficulty_of, judge_view, task_of
from synth_assets.core.text import as_text
from synth_assets.core.text import grounding_score
from synth_assets.core.previews import pairs_preview
from synth_assets.generation.base import JudgeOutcome, JudgeRequest
from synth_assets.generation.model_backend import ModelBackend
from synth_assets.generation.model_free_tasks import MODEL_FREE_CLOSED_BOOK_VERSION, closed_book_stand_ins
from synth_assets.generation.task_prompts import (
    CLOSED_BOOK_PROMPT_VERSION,
    ClosedBookOutcome,
    ClosedBookRequest,
    closed_book_request_id,
)
from synth_assets.resources.curation import CurationResource
from synth_assets.resources.generation import GPU_POOL, GenerationResource
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.storage import (
    DOCUMENT_CHUNKS_TABLE,
    FILTERED_QA_PAIRS_TABLE,
    GENERATED_QA_PAIRS_TABLE,
    PREFERENCE_CANDIDATES_TABLE,
    REJECTED_QA_PAIRS_TABLE,
    load_pairs_with_chunks,
    read_partition,
    replace_partition_rows,
)

CURATE_GROUP = "curate"
FILTERED_QA_PAIRS_KEY = dg.AssetKey("filtered_qa_pairs")


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

    With preference pairs on (SYNTH_ASSETS_PREFERENCE_PAIRS=1), each qa question that
    passes the cheap rules is also answered without its source (closed-book, in the same
    backend call as the judge's requests; without a model, the best-matching sentence of
    another chunk), that answer filtered against the question's chunk like any other, and
    the other answers to the kept questions written to preference_candidates with the
    rules they failed (core/preference.py builds the pairs from them at export).
    """
    judged: dict = {}
    closed: dict = {}
    if curation.filter_config().use_judge or curation.preference_pairs:
        # Every document's judge (and closed-book) requests go out in one backend call
        # before any document is finished: the server (or LLM.chat) gets them all at once
        # and never idles while Python filters and writes one document after another.
        keys = list(context.partition_keys)
        stopped = stopped_in_run(duckdb, context.run_id) if len(keys) > 1 else {}
        judged = judge_documents(context, generation, duckdb, curation.filter_config(),
                                 [key for key in keys if key not in stopped],
                                 closed_book=closed if curation.preference_pairs else None)
    return for_each_document(
        context, duckdb, "filtered_qa_pairs",
        [FILTERED_QA_PAIRS_TABLE, REJECTED_QA_PAIRS_TABLE, PREFERENCE_CANDIDATES_TABLE],
        lambda key: curate_one(context, key, curation, generation, duckdb, judged.get(key), closed.get(key)),
    )


def curate_one(context, document_id: str, curation: CurationResource, generation: GenerationResource,
               duckdb: PipelineDatabase, judged: tuple[dict, dict] | Exception | None = None,
               closed: dict | None = None) -> dg.MaterializeResult:
    """Filter one document's pairs and write them. `judged` is the document's share of
    judge_documents (scores by pair_id, metadata), `closed` its closed-book answers (with
    preference pairs on); without them, this document is judged and asked on its own."""
    with duckdb.get_connection() as con:
        pairs = load_items(con, document_id)
    config = curation.filter_config()
    pairs["language"] = pair_languages(pairs.to_dict("records"))
    records = pairs.to_dict("records")
    judge_metadata: dict = {"judge": "off (SYNTH_ASSETS_USE_JUDGE=1 turns it on)"}
    judgements: dict[str, tuple[int, str]] = {}
    if isinstance(judged, Exception):  # met while preparing its judge requests: its own failure
        raise judged
    if (config.use_judge and judged is None) or (curation.preference_pairs and closed is None):
        asked: dict = {}
        judged = judge_documents(context, generation, duckdb, config, [document_id],
                                 closed_book=asked if curation.preference_pairs else None)[document_id]
        if isinstance(judged, Exception):
            raise judged
        closed = asked.get(document_id)
    if config.use_judge:
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
    candidates = pd.DataFrame(columns=CANDIDATE_COLUMNS)
    preference_metadata = {}
    if curation.preference_pairs:
        candidates, preference_metadata = preference_candidates(pairs, kept_mask, closed or {}, config)
    with duckdb.get_connection() as con:
        replace_partition_rows(con, FILTERED_QA_PAIRS_TABLE, document_id, kept)
        replace_partition_rows(con, REJECTED_QA_PAIRS_TABLE, document_id, rejected)
        # Always written: turning preference pairs off leaves no candidates behind.
        replace_partition_rows(con, PREFERENCE_CANDIDATES_TABLE, document_id, candidates)
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
            **preference_metadata,
            **language_metadata(pairs["language"]),
            "preview": dg.MetadataValue.md(preview),
            "rejected_sample": dg.MetadataValue.md(
                rejects_sample[["reject_reasons", "question", "answer"]].to_markdown(index=False)
                if len(rejected)
                else "none rejected"
            ),
        }
    )


def pairs_to_judge(records: list[dict], config, passing: list[bool] | None = None) -> list[JudgeRequest]:
    """The pairs worth a judge's request: those that pass the cheaper rules, or fail
    them only as duplicates (which the judge may change). A model call for a pair
    already rejected would be wasted. `passing`: passes_cheap_rules(records, config),
    when already known."""
    if passing is None:
        passing = passes_cheap_rules(records, config)
    return [
        JudgeRequest(p["pair_id"], *judge_view(p), as_text(p.get("chunk_text")), task_of(p),
                     tuple(as_text(t) for t in p.get("judge_source_texts") or ()))
        for p, ok in zip(records, passing) if ok
    ]


def passes_cheap_rules(records: list[dict], config) -> list[bool]:
    """Per item: whether it passes every rule but the judge, duplicates aside (the judge
    may change which copy is kept)."""
    cheap = config.model_copy(update={"use_judge": False})
    dedup_only = {DUPLICATE_QUESTION, NEAR_DUPLICATE_QUESTION}
    return [set(reasons) <= dedup_only for reasons in filter_pairs(records, cheap)]


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
    closed_book: dict | None = None,
) -> dict[str, tuple[dict[str, tuple[int, str]], dict] | Exception]:
    """Per document: judge scores by pair_id and metadata about the judging, or the
    error met while preparing its requests (that document's failure, not the others').

    With `closed_book` (a dict, preference pairs on), the qa questions that pass the
    cheap rules are also answered without their source, in the same backend call as the
    judge requests (answer_closed_book), and `closed_book[document_id]` filled.

    The judge requests of every document go to the backend in one call (the openai
    backend keeps its bounded concurrency full across documents; vllm makes one
    LLM.chat call); only pairs_to_judge are sent. With a cache, the generation step has
    usually judged them already while generating (generate_and_judge), and these are
    cache hits. A pair the judge could not score is kept unjudged and counted.
    """
    requests: dict[str, list[JudgeRequest]] = {}
    asked: dict[str, list[dict]] = {}
    prepared: dict = {}
    with duckdb.get_connection() as con:
        for document_id in document_ids:
            try:
                records = load_items(con, document_id).to_dict("records")
                passing = passes_cheap_rules(records, config)
                requests[document_id] = pairs_to_judge(records, config, passing) if config.use_judge else []
                if closed_book is not None:
                    asked[document_id] = [r for r, ok in zip(records, passing)
                                          if ok and task_of(r) in PREFERENCE_TASKS]
            except Exception as error:  # noqa: BLE001 - raised again by that document's curate_one
                prepared[document_id] = error
    to_judge = [request for batch in requests.values() for request in batch]
    if closed_book is not None:
        outcome = answer_closed_book(context, generation, duckdb, config, asked, to_judge, closed_book)
    else:
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
        # What this step asked the model for the document (generation's requests are on
        # generated_qa_pairs): judge requests the generation step had not made, closed-book ones.
        usage = {"judge": _summed(outcome.usage, [r.pair_id for r in batch]),
                 **(closed_book or {}).get(document_id, {}).get("usage", {})}
        usage = {task: counts for task, counts in usage.items() if counts["requests"]}
        prepared[document_id] = scores, {
            **({"model_usage": dg.MetadataValue.json(usage)} if usage else {}),
            "judge": f"{generation.backend} ({generation.model or 'heuristic judge'}), "
                     f"min score {config.min_judge_score}",
            "judged": len(scores),
            "judge_failures": failures,
            "judge_mean_score": round(sum(values) / len(values), 2) if values else 0.0,
            "judge_score_counts": dg.MetadataValue.json(dict(sorted(Counter(values).items()))),
        }
    return prepared


def _summed(usage: dict[str, tuple[int, int, int]], item_ids: list[str]) -> dict[str, int]:
    """The requests and tokens of these items (usage: item id -> replies, prompt, completion)."""
    found = [usage[i] for i in item_ids if i in usage]
    return {"requests": sum(u[0] for u in found), "prompt_tokens": sum(u[1] for u in found),
            "completion_tokens": sum(u[2] for u in found)}


def answer_closed_book(context, generation: GenerationResource, duckdb: PipelineDatabase, config,
                       asked: dict[str, list[dict]], to_judge: list[JudgeRequest], out: dict) -> JudgeOutcome:
    """Each asked item's question answered without its source, and the outcome of the
    judge requests `to_judge`, sent in ONE backend call; then the closed-book answers that
    pass the cheap rules judged (with the judge on) in a second call, all documents at
    once. Fills `out[document_id]` with {"records": the closed-book answers as items of the
    document (pair_id: the request id, answer: the closed-book one), "scores": {request id:
    (score, reason, unsupported)}, "failures", "source"}.

    Without a model (model_free) there is no memory to answer from: the stand-in is the
    sentence of another chunk of the document that best matches the question
    (model_free_tasks.closed_book_stand_ins), filtered the same way."""
    backend = generation.create_backend(context.log)
    requests = [ClosedBookRequest(r["pair_id"], as_text(r.get("question"))) for found in asked.values() for r in found]
    if isinstance(backend, ModelBackend):
        source = {"generator": backend.generator, "model": backend.model, "prompt_version": CLOSED_BOOK_PROMPT_VERSION}
        answered, outcome = (backend.closed_book(requests, judge=to_judge) if requests or to_judge
                             else (ClosedBookOutcome(), JudgeOutcome()))
    else:
        outcome = generation.judge(to_judge, context.log) if to_judge else JudgeOutcome()
        answered = ClosedBookOutcome()
        with duckdb.get_connection() as con:
            for document_id, found in asked.items():
                chunks = read_partition(con, DOCUMENT_CHUNKS_TABLE, document_id)
                prose = chunks[~chunks["boilerplate"]]
                answered.answers.update(closed_book_stand_ins(
                    {r["pair_id"]: (as_text(r.get("question")), r["chunk_id"]) for r in found},
                    dict(zip(prose["chunk_id"], prose["body"]))))
        source = {"generator": backend.generator, "model": None, "prompt_version": MODEL_FREE_CLOSED_BOOK_VERSION}
    if answered.failures:
        context.log.warning(f"{len(answered.failures)} closed-book questions got no answer; their items get no "
                            f"closed-book candidate. First error: {next(iter(answered.failures.values()))}")
    cheap = config.model_copy(update={"use_judge": False})
    second: list[JudgeRequest] = []
    for document_id, found in asked.items():
        records = [{**r, "pair_id": closed_book_request_id(r["pair_id"]), "item_id": r["pair_id"],
                    "answer": answered.answers[r["pair_id"]], "evidence": None, "reasoning": None}
                   for r in found if r["pair_id"] in answered.answers]
        out[document_id] = {"records": records, "scores": {}, "source": source,
                            "failures": sum(r["pair_id"] in answered.failures for r in found),
                            "asked": len(found),
                            "usage": {"closed_book": _summed(answered.usage, [r["pair_id"] for r in found])}}
        if config.use_judge and records:
            reasons, _ = closed_book_reasons(records, cheap)
            second += [JudgeRequest(r["pair_id"], *judge_view(r), as_text(r.get("chunk_text")), task_of(r))
                       for r, found_reasons in zip(records, reasons) if not found_reasons]
    if second:
        judged = generation.judge(second, context.log)
        for entry in out.values():
            entry["usage"]["judge_closed_book"] = _summed(judged.usage, [r["pair_id"] for r in entry["records"]])
            for record in entry["records"]:
                request_id = record["pair_id"]
                if request_id in judged.scores:
                    entry["scores"][request_id] = (*judged.scores[request_id], judged.unsupported.get(request_id, []))
    return outcome


def preference_candidates(pairs: pd.DataFrame, kept_mask: pd.Series, closed: dict, config
                          ) -> tuple[pd.DataFrame, dict]:
    """The other answers to the questions of a document's kept qa items, each with every
    rule it failed against the item's chunk (preference_candidates rows), and metadata:
    the closed-book answers asked, got, rejected (by rule) and passed (not used), and the
    generator's own rejected answers to a kept question.

    `pairs`: the document's items as curated (reject_reasons set); `closed`: its share of
    answer_closed_book. A closed-book answer is kept as a candidate only when its item was
    kept: the chosen side of a pair is always a kept item."""
    kept_ids = set(pairs.loc[kept_mask, "pair_id"])
    records = [r for r in closed.get("records", []) if r["item_id"] in kept_ids]
    scores = closed.get("scores", {})
    judge_scores = ([scores[r["pair_id"]][0] if r["pair_id"] in scores else None for r in records]
                    if config.use_judge else None)
    unsupported = [scores[r["pair_id"]][2] if r["pair_id"] in scores else [] for r in records]
    reasons, details = closed_book_reasons(records, config, judge_scores=judge_scores,
                                           judge_unsupported=unsupported if config.use_judge else None)
    source = closed.get("source", {})
    rows = [{
        "candidate_id": r["pair_id"], "pair_id": r["item_id"], "document_id": r["document_id"],
        "chunk_id": r["chunk_id"], "task": task_of(r), "origin": CLOSED_BOOK, "question": r.get("question"),
        "answer": r["answer"], "reject_reasons": found,
        "reason_details": json.dumps(detail, ensure_ascii=False) if detail else None,
        "judge_score": scores[r["pair_id"]][0] if r["pair_id"] in scores else None,
        "grounding": grounding_score(r["answer"], as_text(r.get("chunk_text"))), **source,
    } for r, found, detail in zip(records, reasons, details)]
    closed_rows = pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)
    kept, rejected = pairs[kept_mask], pairs[~kept_mask]
    own = generator_candidates(kept, rejected)
    candidates = pd.concat([frame for frame in (closed_rows, own) if len(frame)], ignore_index=True) \
        if len(closed_rows) or len(own) else closed_rows
    candidates["judge_score"] = pd.array(candidates["judge_score"], dtype="Int64")
    by_rule = Counter(rule for found in reasons for rule in answer_rules(found))
    metadata = {"preference_candidates": dg.MetadataValue.json({
        "closed_book_asked": closed.get("asked", 0),
        "closed_book_answered": len(closed.get("records", [])),
        "closed_book_failed": closed.get("failures", 0),
        "closed_book_of_kept_items": len(records),
        "closed_book_rejected": sum(bool(answer_rules(found)) for found in reasons),
        "closed_book_passed_not_used": sum(not found for found in reasons),
        "closed_book_rejected_by_rule": dict(by_rule.most_common()),
        "generator_rejected_same_question": len(own),
    })}
    return candidates, metadata
