"""The requests a sample of documents would become, counted without sending any.

Each sampled file goes through what the pipeline does to it, in this process and
without writing anything (no database, no Dagster instance): the file checks, docling,
the chunker with the chunks' tokenizer, the task plan (generation/task_plan.py) and the
messages each request is sent as (model_backend.request_messages). Their prompt tokens
are counted with that tokenizer; core/estimate.py scales the counts to the folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synth_assets.core.chunking import chunk_document
from synth_assets.core.documents import DocumentError, check_document_file
from synth_assets.core.estimate import SampledDocument, text_size
from synth_assets.core.judge import build_judge_messages
from synth_assets.core.parsing import parse_document
from synth_assets.core.usage import count_prompt_tokens
from synth_assets.generation.base import GenerationRequest
from synth_assets.generation.model_backend import request_messages
from synth_assets.generation.task_plan import plan_requests


def sample_document(document_id: str, path: Path, *, tokenizer: Any, max_bytes: int, layout_models_dir: Path | None,
                    chunk_tokens: int, overlap_tokens: int, shares: dict[str, float], pairs_per_chunk: int,
                    use_judge: bool) -> SampledDocument:
    """One document's chunks and planned requests, with their prompt tokens; a file that
    cannot be used gives its reason in `error` (as raw_documents or parsed_documents would)."""
    size = text_size(path) if path.is_file() else 0
    try:
        check_document_file(path, max_bytes)
        parsed = parse_document(path, layout_models_dir=layout_models_dir)
    except DocumentError as error:
        return SampledDocument(document_id, size, error=error.reason)
    except Exception as error:  # noqa: BLE001 - the run would fail the document too; say why
        return SampledDocument(document_id, size, error=f"{type(error).__name__}: {error}")
    if parsed.no_text:  # a document, with nothing to generate from: zero requests
        return SampledDocument(document_id, size)
    chunks = chunk_document(parsed.document, tokenizer=tokenizer, max_tokens=chunk_tokens,
                            overlap_tokens=overlap_tokens)
    title = path.name.rsplit(".", 1)[0]
    # As generated_qa_pairs builds them: the prose chunks in order, boilerplate left out.
    prose = [GenerationRequest(document_id=document_id, chunk_id=f"{document_id}#c{chunk.chunk_index:04d}",
                               text=chunk.text, headings=tuple(filter(None, chunk.headings)), title=title)
             for chunk in sorted(chunks, key=lambda chunk: chunk.chunk_index) if not chunk.boilerplate]
    requests, _, _ = plan_requests(document_id, prose, shares, pairs_per_chunk)
    sampled = SampledDocument(document_id, size, chunks=len(chunks))
    for request in requests:
        n_items = request.n_items or pairs_per_chunk
        counts = sampled.tasks.setdefault(request.task, {"requests": 0, "prompt_tokens": 0, "items": 0})
        counts["requests"] += 1
        counts["prompt_tokens"] += count_prompt_tokens(tokenizer, request_messages(request, pairs_per_chunk))
        counts["items"] += n_items
        if use_judge:  # the judge is shown each item's source (its question and answer are added later)
            sources = (request.text, *(text for _, text in request.partners))
            shown = build_judge_messages("", "", request.text, request.task, sources)
            sampled.judge_prompt_tokens += n_items * count_prompt_tokens(tokenizer, shown)
    return sampled
