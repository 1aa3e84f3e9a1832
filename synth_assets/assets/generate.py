"""Generate: question-answer pairs for every chunk, from the configured backend."""


import pandas as pd

import dagster as dg

from synth_assets.assets.factory import document_asset
from synth_assets.batch import stopped_in_run
from synth_assets.core.chunking import HEADING_SEPARATOR
from synth_assets.core.previews import pairs_preview
from synth_assets.dagster_internals import add_partition_metadata
from synth_assets.assets.curate import pairs_to_judge
from synth_assets.generation.base import GenerationRequest, pair_record
from synth_assets.generation.task_plan import plan_requests, prompt_version_of
from synth_assets.generation.model_backend import ModelBackend
from synth_assets.resources.curation import CurationResource
from synth_assets.resources.generation import GPU_POOL, GenerationResource
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.storage import (
    DOCUMENT_CHUNKS_TABLE,
    GENERATED_QA_PAIRS_TABLE,
    GENERATION_FAILURES_TABLE,
    RAW_DOCUMENTS_TABLE,
    read_partition,
    replace_partition_rows,
)

GENERATE_GROUP = "generate"


def usage_per_document(requests: list[GenerationRequest], usage: dict[str, tuple[int, int, int]]) -> dict[str, dict]:
    """{document_id: {task: {requests, prompt_tokens, completion_tokens}}} of the replies
    this run received (cache hits cost nothing and are not counted)."""
    found: dict[str, dict] = {}
    for request in requests:
        if request.request_id not in usage:
            continue
        replies, prompt_tokens, completion_tokens = usage[request.request_id]
        task = found.setdefault(request.document_id, {}).setdefault(
            request.task, {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0})
        task["requests"] += replies
        task["prompt_tokens"] += prompt_tokens
        task["completion_tokens"] += completion_tokens
    return found


@document_asset(
    group_name=GENERATE_GROUP,
    # The configured backend (model_free, openai, vllm, vllm_serve) is added as a kind
    # by build_pipeline_assets, so the UI names the backend that writes the pairs.
    kinds={"duckdb", "great_expectations"},
    # Joined by the configured model, prompt version and sampling in build_pipeline_assets:
    # changing any of them marks this asset and its downstream stale.
    code_version="1",
    deps=["document_chunks"],
    # One run at a time on the GPU; the limit is set in dagster.yaml (concurrency.pools).
    pool=GPU_POOL,
)
def generated_qa_pairs(
    context: dg.AssetExecutionContext, generation: GenerationResource, curation: CurationResource,
    duckdb: PipelineDatabase,
) -> dg.MaterializeResult:
    """Question-answer pairs written for each chunk, grounded in that chunk's text.

    Each row records the generator, the model (if any) and the prompt version it came
    from. All chunks of every document in the run go to the backend in one call, so a
    GPU batches them. Chunks the backend could not answer are kept in
    generation_failures with their error, never dropped silently.

    With the judge on and a model server, each chunk's pairs are judged as soon as they
    arrive, while the other chunks are still being generated; the scores wait in the
    generation cache for filtered_qa_pairs.
    """
    keys = list(context.partition_keys)
    # In a run over many documents, those that failed or were blocked earlier are left out.
    stopped = stopped_in_run(duckdb, context.run_id) if len(keys) > 1 else {}
    document_ids = [key for key in keys if key not in stopped]
    if not document_ids:
        raise dg.Failure("every document of this run failed or was stopped before generation: "
                         + "; ".join(f"{key}: {reason}" for key, reason in stopped.items()))
    with duckdb.get_connection() as con:
        for key in stopped:
            replace_partition_rows(con, GENERATED_QA_PAIRS_TABLE, key, pd.DataFrame())
            replace_partition_rows(con, GENERATION_FAILURES_TABLE, key, pd.DataFrame())
            add_partition_metadata(context, {"skipped": f"stopped earlier in this run ({stopped[key]})"}, key)
    requests = []
    shares = generation.task_shares
    plans: dict[str, dict[str, int]] = {}
    shortfalls: dict[str, dict[str, str]] = {}
    chunk_language: dict[str, str | None] = {}
    boilerplate_skipped = 0
    with duckdb.get_connection() as con:
        for document_id in document_ids:
            chunks = read_partition(con, DOCUMENT_CHUNKS_TABLE, document_id)
            raw = read_partition(con, RAW_DOCUMENTS_TABLE, document_id)
            title = raw["file_name"].iloc[0].rsplit(".", 1)[0] if len(raw) else None
            prose = chunks[~chunks["boilerplate"]].sort_values("chunk_index")
            boilerplate_skipped += len(chunks) - len(prose)
            chunk_language.update((row.chunk_id, getattr(row, "language", None)) for row in prose.itertuples())
            chunk_requests = [
                GenerationRequest(
                    document_id=document_id,
                    chunk_id=row.chunk_id,
                    text=row.text,
                    headings=tuple(filter(None, (row.heading_path or "").split(HEADING_SEPARATOR))),
                    title=title,
                )
                for row in prose.itertuples()
            ]
            planned, plans[document_id], shortfalls[document_id] = plan_requests(
                document_id, chunk_requests, shares, generation.pairs_per_chunk)
            requests += planned
    backend = generation.create_backend(context.log)
    context.log.info(f"generating pairs for {len(requests)} chunks with {backend.generator} ({backend.model or 'no model'})")
    config = curation.filter_config()
    judge_stats = {}
    if config.use_judge and isinstance(backend, ModelBackend) and backend.cache is not None:
        texts = {chunk_id: text for request in requests
                 for chunk_id, text in ((request.chunk_id, request.text), *request.partners)}

        def judge_requests_for(request: GenerationRequest, pairs: list) -> list:
            records = []
            for index, pair in enumerate(pairs, 1):
                # A multi-hop item as the curate step shows it to the judge: its chunks, joined
                # as its source. (The curate step's rules read bodies, without the overlap: at
                # worst an item is judged here that curation then rejects.)
                hops = [texts.get(c, "") for c in pair.source_chunk_ids] if pair.task == "multi_hop" else None
                records.append({"pair_id": f"{request.request_id}#q{index:02d}", **pair_record(pair),
                                "chunk_text": "\n\n".join(hops) if hops else request.text,
                                "chunk_language": chunk_language.get(request.chunk_id),
                                "source_texts": hops, "judge_source_texts": hops})
            return pairs_to_judge(records, config)

        outcome, judged = backend.generate_and_judge(requests, judge_requests_for)
        judge_stats = judged.stats
    else:
        outcome = backend.generate(requests)

    provenance = {
        "generator": backend.generator,
        "model": backend.model,
        "prompt_version": backend.prompt_version,
    }
    document_of = {request.chunk_id: request.document_id for request in requests}
    heading_of = {request.chunk_id: " > ".join(request.headings) for request in requests}
    pair_rows, counters = [], {}
    for pair in outcome.pairs:
        counters[pair.chunk_id] = counters.get(pair.chunk_id, 0) + 1
        pair_rows.append(
            {
                "pair_id": f"{pair.chunk_id}#q{counters[pair.chunk_id]:02d}",
                "document_id": document_of[pair.chunk_id],
                "chunk_id": pair.chunk_id,
                **provenance,
                **pair_record(pair),
                "prompt_version": prompt_version_of(backend, pair.task),
            }
        )
    pairs = pd.DataFrame(pair_rows, columns=["pair_id", "document_id", "chunk_id", "question", "answer",
                                             "question_type", "evidence", "reasoning", *provenance,
                                             "task", "difficulty", "source_chunk_ids", "turns", "quotes"])
    failures = pd.DataFrame(
        [
            {"document_id": document_of[f.chunk_id], "chunk_id": f.chunk_id, "attempts": f.attempts,
             "error": f.error, **provenance}
            for f in outcome.failures
        ],
        columns=["document_id", "chunk_id", "attempts", "error", *provenance],
    )
    with duckdb.get_connection() as con:
        for document_id in document_ids:
            replace_partition_rows(con, GENERATED_QA_PAIRS_TABLE, document_id,
                                   pairs[pairs["document_id"] == document_id])
            replace_partition_rows(con, GENERATION_FAILURES_TABLE, document_id,
                                   failures[failures["document_id"] == document_id])
    single_metadata = {}
    usage = usage_per_document(requests, outcome.usage)
    for document_id in document_ids:
        got = pairs.loc[pairs["document_id"] == document_id, "task"].value_counts().to_dict()
        metadata = {"pairs": int(sum(got.values()))}
        if document_id in usage:  # what this document cost the model, per task
            metadata["model_usage"] = dg.MetadataValue.json(usage[document_id])
        if set(shares) != {"qa"}:
            metadata["items_per_task"] = dg.MetadataValue.json(
                {task: {"planned": plans[document_id].get(task, 0), "generated": int(got.get(task, 0))}
                 for task in shares})
            if shortfalls[document_id]:
                metadata["fewer_items"] = dg.MetadataValue.json(shortfalls[document_id])
        if len(keys) > 1:
            add_partition_metadata(context, metadata, document_id)
        else:
            single_metadata = {key: value for key, value in metadata.items() if key != "pairs"}
    for failure in outcome.failures:
        context.log.warning(f"{failure.chunk_id}: no pairs after {failure.attempts} attempts: {failure.error}")
    context.log.info(
        f"{len(pairs)} pairs from {len(requests)} chunks "
        f"({boilerplate_skipped} boilerplate chunks skipped, {len(failures)} failed)"
    )
    type_mix = pairs["question_type"].value_counts().to_dict() if len(pairs) else {}
    task_mix = pairs["task"].value_counts().to_dict() if len(pairs) else {}
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(pairs),
            "documents": len(document_ids),
            "chunks_sent": len(requests),
            "boilerplate_chunks_skipped": boilerplate_skipped,
            "failed_chunks": len(failures),
            "generator": backend.generator,
            "model": backend.model or "none",
            "prompt_version": backend.prompt_version,
            "question_types": dg.MetadataValue.json(type_mix),
            "tasks": dg.MetadataValue.json({"configured": shares, "generated": task_mix}),
            **{f"generation_{key}": value for key, value in outcome.stats.items()},
            **judge_stats,
            **single_metadata,
            "preview": dg.MetadataValue.md(pairs_preview(pairs.assign(heading_path=pairs["chunk_id"].map(heading_of)))),
        }
    )
