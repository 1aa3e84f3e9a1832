"""Export: training formats per document, and the merged dataset fine-tuners load."""


import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd

import dagster as dg

from synth_assets.assets.curate import filtered_qa_pairs
from synth_assets.core.formats import split_documents, to_alpaca, to_sharegpt
from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME, documents_partitions
from synth_assets.quality import validate_alpaca, validate_sharegpt
from synth_assets.resources.export import ExportSettings
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.storage import (
    ALPACA_EXAMPLES_TABLE,
    DOCUMENT_CHUNKS_TABLE,
    FILTERED_QA_PAIRS_TABLE,
    RAW_DOCUMENTS_TABLE,
    SHAREGPT_EXAMPLES_TABLE,
    replace_partition_rows,
)

EXPORT_GROUP = "export"
PROVENANCE_COLUMNS = [
    "pair_id", "document_id", "chunk_id", "source_file", "heading_path",
    "page_start", "page_end", "generator", "model", "prompt_version",
]


def load_kept_pairs_with_provenance(con, document_id: str) -> pd.DataFrame:
    """Kept pairs of one document with the file, heading and pages they came from."""
    return con.execute(
        f"""
        SELECT p.pair_id, p.document_id, p.chunk_id, p.question, p.answer,
               r.relative_path AS source_file, c.heading_path, c.page_start, c.page_end,
               p.generator, p.model, p.prompt_version
        FROM {FILTERED_QA_PAIRS_TABLE} p
        LEFT JOIN {DOCUMENT_CHUNKS_TABLE} c USING (chunk_id)
        LEFT JOIN {RAW_DOCUMENTS_TABLE} r ON r.document_id = p.document_id
        WHERE p.document_id = ? ORDER BY p.pair_id
        """,
        [document_id],
    ).df()


def _format_partition(context, duckdb: PipelineDatabase, table: str, to_row) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        pairs = load_kept_pairs_with_provenance(con, context.partition_key)
    rows = pd.DataFrame(
        [{**to_row(p.question, p.answer), **{c: getattr(p, c) for c in PROVENANCE_COLUMNS}} for p in pairs.itertuples()],
        columns=None if len(pairs) else PROVENANCE_COLUMNS,
    )
    with duckdb.get_connection() as con:
        replace_partition_rows(con, table, context.partition_key, rows)
    preview = rows.head(3).drop(columns=[c for c in PROVENANCE_COLUMNS if c != "source_file"])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "preview": dg.MetadataValue.md(preview.to_markdown(index=False) if len(rows) else "no rows"),
        }
    )


@dg.asset(
    partitions_def=documents_partitions,
    deps=[filtered_qa_pairs],
    group_name=EXPORT_GROUP,
    kinds={"duckdb"},
    code_version="1",
)
def alpaca_examples(context: dg.AssetExecutionContext, duckdb: PipelineDatabase) -> dg.MaterializeResult:
    """Kept pairs as Alpaca rows ({instruction, input, output}) with their provenance beside them."""
    return _format_partition(context, duckdb, ALPACA_EXAMPLES_TABLE, to_alpaca)


@dg.asset(
    partitions_def=documents_partitions,
    deps=[filtered_qa_pairs],
    group_name=EXPORT_GROUP,
    kinds={"duckdb"},
    code_version="1",
)
def sharegpt_examples(context: dg.AssetExecutionContext, duckdb: PipelineDatabase) -> dg.MaterializeResult:
    """Kept pairs as ShareGPT conversations ({from: human, value}, {from: gpt, value})."""
    return _format_partition(
        context, duckdb, SHAREGPT_EXAMPLES_TABLE, lambda q, a: {"conversations": json.dumps(to_sharegpt(q, a))}
    )


def _write_format(rows: pd.DataFrame, name: str, splits: dict[str, str], target: Path) -> dict[str, int]:
    """Write one format as an HF DatasetDict (save_to_disk) and one JSONL file per split."""
    import datasets

    datasets.disable_progress_bars()  # one bar per shard would flood the run log
    rows = rows.assign(_split=rows["document_id"].map(splits))
    counts, parts = {}, {}
    for split in ("train", "validation"):
        part = rows[rows["_split"] == split].drop(columns=["_split"]).reset_index(drop=True)
        counts[split] = len(part)
        parts[split] = datasets.Dataset.from_pandas(part, preserve_index=False)
        part.to_json(target / f"{name}_{split}.jsonl", orient="records", lines=True, force_ascii=False)
    datasets.DatasetDict(parts).save_to_disk(str(target / name))
    return counts


@dg.asset(
    deps=[alpaca_examples, sharegpt_examples],
    group_name=EXPORT_GROUP,
    kinds={"huggingface", "duckdb"},
    code_version="1",
)
def training_dataset(
    context: dg.AssetExecutionContext, duckdb: PipelineDatabase, export: ExportSettings
) -> dg.MaterializeResult:
    """Every document's examples merged into one dataset, split into train and validation
    by document (no document in both), written as HF DatasetDicts (load_from_disk) and
    JSONL files under the export folder.

    Documents that are no longer registered, or whose formatted rows fail their checks,
    are left out and listed here.
    """
    registered = set(context.instance.get_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME))
    with duckdb.get_connection() as con:
        alpaca = con.execute(f"SELECT * FROM {ALPACA_EXAMPLES_TABLE} ORDER BY pair_id").df()
        sharegpt = con.execute(f"SELECT * FROM {SHAREGPT_EXAMPLES_TABLE} ORDER BY pair_id").df()

    excluded: dict[str, str] = {}
    for document_id in sorted(set(alpaca["document_id"]) | set(sharegpt["document_id"])):
        if document_id not in registered:
            excluded[document_id] = "no longer registered"
            continue
        for label, frame, validate in (("alpaca", alpaca, validate_alpaca), ("sharegpt", sharegpt, validate_sharegpt)):
            result = validate(frame[frame["document_id"] == document_id])
            if not result.success:
                excluded[document_id] = f"{label} check failed: {', '.join(result.failed)}"
    alpaca = alpaca[~alpaca["document_id"].isin(excluded)]
    sharegpt = sharegpt[~sharegpt["document_id"].isin(excluded)]
    sharegpt = sharegpt.assign(conversations=sharegpt["conversations"].map(json.loads))

    splits = split_documents(list(alpaca["document_id"]), export.validation_ratio, export.seed)
    export_dir = Path(export.export_dir)
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    # Write into a fresh folder and swap it in, so a crash never leaves half an export.
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=export_dir.parent))
    counts = {
        "alpaca": _write_format(alpaca, "alpaca", splits, staging),
        "sharegpt": _write_format(sharegpt, "sharegpt", splits, staging),
    }
    if export_dir.exists():
        shutil.rmtree(export_dir)
    staging.rename(export_dir)
    for document_id, reason in excluded.items():
        context.log.warning(f"{document_id} left out of the training dataset: {reason}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(alpaca),
            "export_dir": str(export_dir.resolve()),
            "documents": len(splits),
            "train_documents": sum(1 for s in splits.values() if s == "train"),
            "validation_documents": sum(1 for s in splits.values() if s == "validation"),
            "rows_per_split": dg.MetadataValue.json(counts),
            "excluded_documents": dg.MetadataValue.json(excluded),
            "preview": dg.MetadataValue.md(
                alpaca.head(5)[["instruction", "output", "source_file"]].to_markdown(index=False) if len(alpaca) else "empty"
            ),
        }
    )
