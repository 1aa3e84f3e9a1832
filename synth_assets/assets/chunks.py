"""Chunk: cut each parsed document into token-bounded, overlapping, heading-aware chunks."""


import pandas as pd

import dagster as dg

from synth_assets.assets.factory import INGEST_GROUP, document_asset
from synth_assets.batch import for_each_document
from synth_assets.core.chunking import HEADING_SEPARATOR, chunk_document, load_tokenizer, no_text_reason
from synth_assets.core.parsing import NO_TEXT
from synth_assets.resources.generation import GenerationResource
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.storage import (
    DOCUMENT_CHUNKS_TABLE,
    NO_TEXT_DOCUMENTS_TABLE,
    PARSED_DOCUMENTS_TABLE,
    read_parsed_document,
    replace_partition_rows,
)


def chunk_id_for(document_id: str, chunk_index: int) -> str:
    return f"{document_id}#c{chunk_index:04d}"


@document_asset(
    group_name=INGEST_GROUP,
    kinds={"docling", "duckdb"},
    # Joined by the configured chunk sizes and tokenizer in build_pipeline_assets.
    code_version="1",
    deps=["parsed_documents"],
)
def document_chunks(
    context: dg.AssetExecutionContext, generation: GenerationResource, duckdb: PipelineDatabase
) -> dg.MaterializeResult:
    """The document cut into chunks the generation model can read in one prompt.

    Chunks follow the document's structure (each keeps its section headings as
    context) and hold at most max_seq_len - 2 x generation_tokens - buffer tokens of the
    generation model's tokenizer (an offline MiniLM tokenizer when the model's own is
    not available), with an overlap from the previous chunk. Navigation lists and other
    non-prose chunks are flagged as boilerplate and not sent to generation.

    A document none of whose chunks go to generation (no text, titles only, boilerplate
    only) ends here with the status "no text to learn from" and the reason: zero pairs
    below, not a failure, and up to date until its file changes.
    """
    tokenizer, tokenizer_name = load_tokenizer(generation.tokenizer_name)
    return for_each_document(
        context, duckdb, "document_chunks", [DOCUMENT_CHUNKS_TABLE, NO_TEXT_DOCUMENTS_TABLE],
        lambda key: chunk_one(context, key, tokenizer, tokenizer_name, generation, duckdb),
    )


def chunk_one(context, document_id: str, tokenizer, tokenizer_name: str, generation: GenerationResource,
              duckdb: PipelineDatabase) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        parsed = read_parsed_document(con, document_id)
    if parsed is None:
        raise dg.Failure(f"document '{document_id}' has not been parsed yet")
    document, file_name = parsed
    with duckdb.get_connection() as con:
        [(num_text_items, parsed_no_text)] = con.execute(
            f"SELECT num_text_items, no_text FROM {PARSED_DOCUMENTS_TABLE} WHERE document_id = ?", [document_id]
        ).fetchall()
    chunks = chunk_document(
        document,
        tokenizer=tokenizer,
        max_tokens=generation.chunk_tokens,
        overlap_tokens=generation.overlap_tokens,
    )
    rows = pd.DataFrame(
        [
            {
                "chunk_id": chunk_id_for(document_id, chunk.chunk_index),
                "chunk_index": chunk.chunk_index,
                "text": chunk.text,
                "body": chunk.body,
                "heading_path": HEADING_SEPARATOR.join(chunk.headings),
                "page_start": chunk.page_start,
                "page_end": chunk.page_end,
                "n_tokens": chunk.n_tokens,
                "overlap_tokens": chunk.overlap_tokens,
                "boilerplate": chunk.boilerplate,
                "language": chunk.language,
                "tokenizer": tokenizer_name,
            }
            for chunk in chunks
        ]
    )
    # A status, not a crash: the document ends with zero pairs, and says why.
    no_text = parsed_no_text or no_text_reason(num_text_items or 0, chunks)
    with duckdb.get_connection() as con:
        replace_partition_rows(con, DOCUMENT_CHUNKS_TABLE, document_id, rows)
        replace_partition_rows(con, NO_TEXT_DOCUMENTS_TABLE, document_id,
                               pd.DataFrame([{"reason": no_text}] if no_text else []))
    boilerplate = int(rows["boilerplate"].sum()) if len(rows) else 0
    if no_text:
        context.log.warning(f"{file_name}: {NO_TEXT}: {no_text}; 0 pairs")
    else:
        context.log.info(f"{file_name}: {len(rows)} chunks ({boilerplate} boilerplate) with {tokenizer_name}")
    return dg.MaterializeResult(
        metadata={
            "status": f"{NO_TEXT}: {no_text}" if no_text else f"{len(rows) - boilerplate} chunks for generation",
            "dagster/row_count": len(rows),
            "boilerplate_chunks": boilerplate,
            "max_tokens_per_chunk": generation.chunk_tokens,
            "overlap_tokens": generation.overlap_tokens,
            "largest_chunk_tokens": int(rows["n_tokens"].max()) if len(rows) else 0,
            "tokenizer": tokenizer_name,
            "preview": dg.MetadataValue.md(rows.head(5)[["chunk_id", "heading_path", "n_tokens", "boilerplate"]]
                                           .to_markdown(index=False)) if len(rows) else f"{NO_TEXT}: {no_text}",
        }
    )
