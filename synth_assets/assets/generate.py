"""Generate: question-answer pairs for every chunk, from the configured backend."""


import pandas as pd

import dagster as dg

from synth_assets.assets.factory import document_asset
from synth_assets.batch import stopped_in_run
from synth_assets.core.chunking import HEADING_SEPARATOR, load_tokenizer
from synth_assets.core.previews import pairs_preview
from synth_assets.core.estimate import History
from synth_assets.core.usage import NO_MODEL_REQUESTS, add_counts, count_prompt_tokens, usage_stats
from synth_assets.dagster_internals import add_partition_metadata, latest_storage_ids
from synth_assets.assets.curate import pairs_to_judge
from synth_assets.generation.base import GenerationRequest, pair_record
from synth_assets.generation.task_plan import plan_requests, prompt_version_of
from synth_assets.generation.model_backend import ModelBackend, add_usage, request_messages
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
    """{document_id: {task: {requests, prompt_tokens, completion_tokens}}} of the replies in
    `usage` (by request id; a judge reply by pair id, `<request id>#qNN`, counts as the
    task "judge" of its document)."""
    of = {request.request_id: (request.document_id, request.task) for request in requests}
    found: dict[str, dict] = {}
    for item_id, (replies, prompt_tokens, completion_tokens) in usage.items():
        if item_id in of:
            document_id, task = of[item_id]
        elif item_id.rsplit("#q", 1)[0] in of:
            document_id, task = of[item_id.rsplit("#q", 1)[0]][0], "judge"
        else:  # not a request of this step: not this step's cost
            continue
        add_counts(found.setdefault(document_id, {}).setdefault(task, {}),
                   {"requests": replies, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens})
    return found


def counted_per_document(requests: list[GenerationRequest], counted: dict[str, int]) -> dict[str, int]:
    """{document_id: replies whose tokens the tokenizer counted} (the server sent no usage)."""
    document_of = {request.request_id: request.document_id for request in requests}
    found: dict[str, int] = {}
    for item_id, replies in counted.items():
        document_id = document_of.get(item_id) or document_of.get(item_id.rsplit("#q", 1)[0])
        if document_id is not None:
            found[document_id] = found.get(document_id, 0) + replies
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
        add_usage(outcome, judged)  # the judge's requests are this step's cost too
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
    from_cache = usage_per_document(requests, outcome.usage_cached)
    counted = counted_per_document(requests, outcome.usage_counted)
    for document_id in document_ids:
        got = pairs.loc[pairs["document_id"] == document_id, "task"].value_counts().to_dict()
        metadata = {"pairs": int(sum(got.values()))}
        if not isinstance(backend, ModelBackend):  # zeros would pretend a model was asked
            metadata["model_usage"] = NO_MODEL_REQUESTS
        if document_id in usage:  # what this document cost the model, per task, this time
            metadata["model_usage"] = dg.MetadataValue.json(usage[document_id])
        if document_id in from_cache:  # what its replies from the cache cost when they were asked
            metadata["model_usage_from_cache"] = dg.MetadataValue.json(from_cache[document_id])
        if document_id in counted:
            metadata["usage_counted_with_tokenizer"] = dg.MetadataValue.json(
                {"requests": counted[document_id], "tokenizer": outcome.usage_tokenizer})
        if metadata["pairs"] and (document_id in usage or document_id in from_cache):
            spent = add_counts({}, {})
            for counts in (*usage.get(document_id, {}).values(), *from_cache.get(document_id, {}).values()):
                add_counts(spent, counts)
            metadata["model_tokens_per_generated_item"] = round(
                (spent["prompt_tokens"] + spent["completion_tokens"]) / metadata["pairs"], 1)
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
            **usage_of_step(outcome),
            **prompt_tokens_against_tokenizer(requests, outcome, generation),
            **judge_stats,
            **single_metadata,
            "preview": dg.MetadataValue.md(pairs_preview(pairs.assign(heading_path=pairs["chunk_id"].map(heading_of)))),
        }
    )


def usage_of_step(outcome) -> dict:
    """The step's model usage per server (a fleet's bill is per server), and the replies
    whose tokens the tokenizer counted because their server sent no usage."""
    metadata = {}
    if outcome.usage_by_server:
        metadata["model_usage_per_server"] = dg.MetadataValue.json(
            {url: dict(zip(("requests", "prompt_tokens", "completion_tokens"), counts))
             for url, counts in outcome.usage_by_server.items()})
    if outcome.usage_counted:
        metadata["usage_counted_with_tokenizer"] = dg.MetadataValue.json(
            {"requests": sum(outcome.usage_counted.values()), "tokenizer": outcome.usage_tokenizer})
    return metadata


# Requests whose prompts are counted again with the chunks' tokenizer, per step: enough
# for a ratio, cheap beside the requests themselves.
CALIBRATION_REQUESTS = 64


def prompt_tokens_against_tokenizer(requests: list[GenerationRequest], outcome, generation: GenerationResource) -> dict:
    """How the server's prompt tokens compare with the chunks' tokenizer's count of the same
    prompts (first requests answered at once, with the server's usage): the estimate
    scales its own counts by it, since that tokenizer may not be the model's and the
    server adds its chat template."""
    sample = [request for request in requests
              if outcome.usage.get(request.request_id, (0,))[0] == 1 and request.request_id not in outcome.usage_counted
              ][:CALIBRATION_REQUESTS]
    if not sample:
        return {}
    tokenizer, name = load_tokenizer(generation.tokenizer_name)
    counted = sum(count_prompt_tokens(tokenizer, request_messages(request, generation.pairs_per_chunk))
                  for request in sample)
    server = sum(outcome.usage[request.request_id][1] for request in sample)
    return {"prompt_tokens_against_tokenizer": dg.MetadataValue.json(
        {"requests": len(sample), "server": server, "tokenizer_count": counted, "tokenizer": name})}


GENERATED_QA_PAIRS_KEY = dg.AssetKey("generated_qa_pairs")
CURATED_KEY = dg.AssetKey("filtered_qa_pairs")  # downstream: named, not imported


def _value(metadata, key: str):
    return metadata[key].value if key in metadata else None


def latest_generation_metadata(instance: dg.DagsterInstance, document_ids: list[str],
                               asset_key: dg.AssetKey = GENERATED_QA_PAIRS_KEY) -> dict[str, dict]:
    """{document_id: metadata of its latest materialization of `asset_key` (generated_qa_pairs)}."""
    latest = latest_storage_ids(instance, asset_key, dg.DagsterEventType.ASSET_MATERIALIZATION)
    ids = [latest[key] for key in document_ids if key in latest]
    found = {}
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=part), limit=len(part)).records
        found.update({record.partition_key: record.asset_materialization.metadata for record in records})
    return found


def documents_usage(instance: dg.DagsterInstance, document_ids: list[str]) -> dict[str, dict]:
    """What the model was asked for each of these documents' items, from its latest
    generated_qa_pairs: per task, the replies it asked for and those it took from the cache
    (as they cost when they were asked), and how many requests were counted with the
    tokenizer (the server sent no usage)."""
    found: dict[str, dict] = {}
    for document_id, metadata in latest_generation_metadata(instance, document_ids).items():
        usage = found[document_id] = {"tasks": {}, "counted_requests": 0, "tokenizer": None}
        for key in ("model_usage", "model_usage_from_cache"):
            if isinstance(_value(metadata, key), dict):
                for task, counts in _value(metadata, key).items():
                    add_counts(usage["tasks"].setdefault(task, {}), counts)
        if isinstance(tokenized := _value(metadata, "usage_counted_with_tokenizer"), dict):
            usage["counted_requests"], usage["tokenizer"] = tokenized["requests"], tokenized["tokenizer"]
    # The curate step's own requests: judge requests generation had not made, closed-book answers.
    for document_id, metadata in latest_generation_metadata(instance, document_ids, CURATED_KEY).items():
        if isinstance(_value(metadata, "model_usage"), dict):
            usage = found.setdefault(document_id, {"tasks": {}, "counted_requests": 0, "tokenizer": None})
            for task, counts in _value(metadata, "model_usage").items():
                add_counts(usage["tasks"].setdefault(task, {}), counts)
    return found


def dataset_usage(per_document: dict[str, dict], kept_items: int, *, uses_a_model: bool, prices=None) -> dict:
    """The dataset card's usage figures (core.usage.usage_stats) from documents_usage."""
    counted = {"requests": sum(u["counted_requests"] for u in per_document.values()),
               "tokenizer": next((u["tokenizer"] for u in per_document.values() if u["tokenizer"]), None)}
    return usage_stats({d: u["tasks"] for d, u in per_document.items() if u["tasks"]}, kept_items,
                       uses_a_model=uses_a_model, counted=counted, prices=prices)


def recorded_history(instance: dg.DagsterInstance, model: str | None, limit: int = 5000) -> History:
    """What the recorded generation runs of `model` measured (the newest `limit`
    materializations): completion tokens per request per task, and the throughput."""
    per_task: dict[str, dict[str, int]] = {}
    runs: dict[str, tuple[int, float]] = {}
    calibration: dict[str, dict] = {}  # run -> prompt_tokens_against_tokenizer
    peak: dict[str, int] = {}  # run -> requests in flight at most
    records = instance.fetch_materializations(GENERATED_QA_PAIRS_KEY, limit=limit).records
    for record in records:
        metadata = record.asset_materialization.metadata
        if model is None or _value(metadata, "model") != model:
            continue
        if isinstance(usage := _value(metadata, "model_usage"), dict):
            for task, counts in usage.items():
                add_counts(per_task.setdefault(task, {}), counts)
        # The step's figures are on each of its documents' events: once per run.
        completion, seconds = _value(metadata, "generation_completion_tokens"), _value(metadata, "generation_seconds")
        if record.run_id not in runs and completion and seconds:
            runs[record.run_id] = (int(completion), float(seconds))
            peak[record.run_id] = int(_value(metadata, "generation_peak_in_flight") or 0)
        if isinstance(against := _value(metadata, "prompt_tokens_against_tokenizer"), dict):
            calibration.setdefault(record.run_id, against)
    return History(per_task, sum(c for c, _ in runs.values()), sum(s for _, s in runs.values()), len(runs),
                   prompt_calibration={name: sum(c[name] for c in calibration.values())
                                       for name in ("requests", "server", "tokenizer_count")} if calibration else {},
                   calibration_tokenizers=tuple(sorted({c["tokenizer"] for c in calibration.values()})),
                   peak_in_flight=max(peak.values(), default=0))
