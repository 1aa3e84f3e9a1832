"""docling's own sample documents of the shapes curation used to lose (an Arabic PDF, a
Word file of tables, an HTML receipt laid out as key-value pairs) give kept pairs with a
model backend, through the real pipeline (the simulated OpenAI-compatible server of
benchmarks/sim_server.py stands in for the model). The files and their licence are in
data/docling."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from benchmarks.sim_server import start_server_in_thread
from synth_assets.definitions import build_definitions
from synth_assets.resources.generation import GenerationResource
from synth_assets.run import run_all

SAMPLES = Path(__file__).parent / "data" / "docling"
# document -> the language its chunks must be recorded in
EXPECTED = {"right_to_left_01.pdf": "ar", "word_tables.docx": "en", "kvp_data_example.html": "en"}


@pytest.mark.slow  # parses a PDF, a DOCX and an HTML page and runs every asset: ~1 min on 2 cores
def test_arabic_pdf_word_tables_and_html_receipt_give_kept_pairs(pipeline_resources, instance, tmp_path):
    documents = Path(pipeline_resources["documents"].path)
    for existing in documents.iterdir():
        existing.unlink()
    for name in EXPECTED:
        shutil.copy(SAMPLES / name, documents / name)
    base_url, stats, stop = start_server_in_thread(slots=8, ttft=0.001, tpot=0.0001, output_tokens=20)
    try:
        generation = GenerationResource(
            backend="openai", model="sim-model", base_url=base_url, cache_path=str(tmp_path / "cache.duckdb")
        )
        summary = run_all(build_definitions({**pipeline_resources, "generation": generation}), instance,
                          show_progress=False)
    finally:
        stop()
    assert summary["failed"] == {}
    with duckdb.connect(pipeline_resources["duckdb"].database, read_only=True) as con:
        chunks = dict(con.execute(
            "SELECT document_id, string_agg(DISTINCT language, ',') FROM document_chunks"
            " WHERE NOT boilerplate GROUP BY 1").fetchall())
        kept = dict(con.execute("SELECT document_id, count(*) FROM filtered_qa_pairs GROUP BY 1").fetchall())
        languages = dict(con.execute("SELECT document_id, string_agg(DISTINCT language, ',') FROM alpaca_examples"
                                     " GROUP BY 1").fetchall())
    # Every document reaches the generator (none of its chunks is called boilerplate) in
    # its own language, and keeps pairs that reach the training rows with that language.
    assert chunks == EXPECTED
    assert all(kept.get(name, 0) > 0 for name in EXPECTED), kept
    assert languages == EXPECTED
