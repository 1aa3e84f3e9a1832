"""Ingest: find each document, fingerprint it, and parse it with docling."""

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

import dagster as dg

from synth_assets.assets.factory import INGEST_GROUP, document_asset
from synth_assets.batch import for_each_document

from synth_assets.core.documents import DocumentError, check_document_file, file_fingerprint
from synth_assets.core.parsing import NO_TEXT, parse_document
from synth_assets.resources.documents import DocumentsFolder
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.storage import (
    PARSED_DOCUMENTS_TABLE,
    RAW_DOCUMENTS_TABLE,
    replace_partition_rows,
)

def _document_failure(error: DocumentError, stage: str) -> dg.Failure:
    # The description is what the UI and the run summary show: it names the file.
    return dg.Failure(
        description=str(error),
        metadata={"file": error.file_name, "reason": error.reason, "stage": stage},
        allow_retries=False,
    )


# The first asset follows the documents sensor and make run, not an upstream.
@document_asset(group_name=INGEST_GROUP, kinds={"python", "duckdb"}, code_version="1", automation_condition=None)
def raw_documents(
    context: dg.AssetExecutionContext, documents: DocumentsFolder, duckdb: PipelineDatabase
) -> dg.MaterializeResult:
    """The source file of one document: its path, format, size and SHA-256.

    The SHA-256 is the data version, so a document whose content has not changed
    does not make its downstream assets stale. Oversized or unsupported files fail
    here, naming the file and the reason (and the rows made from an earlier version of
    the file leave the next training dataset). An empty file passes: it has no text to
    learn from, which parsed_documents says.
    """
    discovered = documents.discover()  # once for the step's documents
    return for_each_document(context, duckdb, "raw_documents", [RAW_DOCUMENTS_TABLE],
                             lambda key: fingerprint_document(key, documents, duckdb, discovered))


def fingerprint_document(document_id: str, documents: DocumentsFolder, duckdb: PipelineDatabase,
                         discovered: Mapping[str, Path] | None = None) -> dg.MaterializeResult:
    path = documents.path_for(document_id, discovered)
    try:
        check_document_file(path, documents.max_bytes)
    except DocumentError as error:
        # The fingerprint of the file's last good version no longer describes it: without
        # it, the rows made from that version are refused by training_dataset.
        with duckdb.get_connection() as con:
            replace_partition_rows(con, RAW_DOCUMENTS_TABLE, document_id, pd.DataFrame())
        raise _document_failure(error, "raw_documents") from None
    fingerprint = file_fingerprint(path, documents.root)
    with duckdb.get_connection() as con:
        replace_partition_rows(con, RAW_DOCUMENTS_TABLE, document_id, pd.DataFrame([fingerprint]))
    return dg.MaterializeResult(
        data_version=dg.DataVersion(fingerprint["sha256"]),
        metadata={
            "file": fingerprint["relative_path"],
            "format": fingerprint["format"],
            "size_bytes": fingerprint["size_bytes"],
            "sha256": fingerprint["sha256"],
        },
    )


@document_asset(group_name=INGEST_GROUP, kinds={"docling", "duckdb"}, code_version="1", deps=[raw_documents])
def parsed_documents(
    context: dg.AssetExecutionContext, documents: DocumentsFolder, duckdb: PipelineDatabase
) -> dg.MaterializeResult:
    """The document converted by docling: its structure (DoclingDocument JSON) and Markdown.

    PDFs use docling's layout models when they are installed locally
    (SYNTH_ASSETS_DOCLING_ARTIFACTS) and otherwise the model-free native pipeline with
    paragraphs rebuilt from text lines. The parser that ran is recorded per document. A
    document without text (an empty file, scanned pages or images only, empty slides) is
    not a failure: its status says there is no text to learn from, and it gives no pairs.
    """
    discovered = documents.discover()  # once for the step's documents
    return for_each_document(context, duckdb, "parsed_documents", [PARSED_DOCUMENTS_TABLE],
                             lambda key: parse_one(context, key, documents, duckdb, discovered))


def parse_one(context, document_id: str, documents: DocumentsFolder, duckdb: PipelineDatabase,
              discovered: Mapping[str, Path] | None = None) -> dg.MaterializeResult:
    path = documents.path_for(document_id, discovered)
    try:
        parsed = parse_document(path, layout_models_dir=documents.layout_models_path)
    except DocumentError as error:
        raise _document_failure(error, "parsed_documents") from None
    row = {
        "file_name": path.name,
        "parser": parsed.parser,
        "num_pages": parsed.num_pages,
        "num_text_items": parsed.num_text_items,
        "markdown": parsed.markdown,
        "docling_json": parsed.document.model_dump_json(),
        "no_text": parsed.no_text,
    }
    with duckdb.get_connection() as con:
        replace_partition_rows(con, PARSED_DOCUMENTS_TABLE, document_id, pd.DataFrame([row]))
    if parsed.no_text:
        context.log.warning(f"{path.name}: {NO_TEXT}: {parsed.no_text}")
    else:
        context.log.info(f"{path.name}: parsed with {parsed.parser}, {parsed.num_text_items} text items")
    return dg.MaterializeResult(
        metadata={
            "status": f"{NO_TEXT}: {parsed.no_text}" if parsed.no_text else "parsed",
            "parser": parsed.parser,
            "pages": parsed.num_pages or 0,
            "text_items": parsed.num_text_items,
            "characters": len(parsed.markdown),
            "preview": dg.MetadataValue.md(parsed.markdown[:1500]),
        }
    )

