"""Lineage reaches the row: the README's query leads from an exported training example
back to its chunk (heading, pages), its document and its file."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import duckdb

from synth_assets.definitions import build_definitions
from synth_assets.run import run_all

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = "word_sample.docx"


def readme_lineage_query() -> str:
    """The SQL block of the README's section on tracing a training example."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## From a training example back to its source", 1)[1]
    return re.search(r"```sql\n(.*?)```", section, re.S).group(1)


def test_the_readme_query_leads_from_an_exported_row_to_its_chunk_and_file(tmp_path, instance) -> None:
    from synth_assets.resources.curation import CurationResource
    from synth_assets.resources.documents import DocumentsFolder
    from synth_assets.resources.export import ExportSettings
    from synth_assets.resources.generation import GenerationResource
    from synth_assets.resources.storage import PipelineDatabase

    documents = tmp_path / "documents"
    documents.mkdir()
    shutil.copy(ROOT / "examples" / "documents" / DOCUMENT, documents / DOCUMENT)
    database = tmp_path / "lineage.duckdb"
    defs = build_definitions({
        "documents": DocumentsFolder(path=str(documents)),
        "duckdb": PipelineDatabase(database=str(database)),
        "generation": GenerationResource(),
        "curation": CurationResource(),
        "export": ExportSettings(export_dir=str(tmp_path / "exports")),
    })
    summary = run_all(defs, instance, show_progress=False)
    assert summary["export_ok"]

    # a row of the exported training file, as a fine-tuner would see it
    exports = tmp_path / "exports"
    version = (exports / "LATEST").read_text().strip()
    rows = [json.loads(line) for path in sorted((exports / version / "alpaca" / "jsonl").glob("*/*.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]
    assert rows
    example = rows[len(rows) // 2]

    query = readme_lineage_query().replace("'<pair_id from the export>'", "?")
    assert "?" in query, "the README's query no longer takes a pair_id"
    with duckdb.connect(str(database), read_only=True) as con:
        found = con.execute(query, [example["pair_id"]]).df()
        chunk_of_pair = con.execute("SELECT chunk_id FROM generated_qa_pairs WHERE pair_id = ?",
                                    [example["pair_id"]]).fetchone()[0]
        chunk_text = con.execute("SELECT text FROM document_chunks WHERE chunk_id = ?", [chunk_of_pair]).fetchone()[0]
    assert len(found) == 1
    row = found.iloc[0]
    assert row["instruction"] == example["instruction"] and row["output"] == example["output"]
    assert row["relative_path"] == DOCUMENT == example["source_file"]
    assert row["heading_path"] == example["heading_path"]
    assert row["chunk"] == chunk_text  # the very chunk the pair was generated from
    # the model-free generator answers with the chunk's own sentences
    assert example["output"][:40] in " ".join(chunk_text.split())
