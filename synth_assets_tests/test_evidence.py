"""Evidence a reader can check (issue 27): quotes resolved to spans, claims checked
against them, spans highlighted on the review page."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from synth_assets.core.evidence import (
    CITATION_INVALID,
    UNSUPPORTED_CLAIM,
    highlight_parts,
    resolve_quote,
    resolve_quotes,
    spans_within,
    unsupported_claims,
)
from synth_assets.core.filters import filter_pairs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_evidence import planted_items, score  # noqa: E402

CHUNK = ("The mallard is a dabbling duck that breeds throughout the temperate Americas.\n"
         "Mallards feed by dabbling for plant food or grazing; they also eat insects and snails. "
         "The male has a glossy green head.")


def test_a_quote_is_found_verbatim_normalised_or_nearly():
    start, end, score = resolve_quote("The male has a glossy green head.", CHUNK)
    assert CHUNK[start:end] == "The male has a glossy green head." and score == 100
    start, end, score = resolve_quote("the mallard is a dabbling duck that breeds   throughout", CHUNK)
    assert CHUNK[start:end].lower().startswith("the mallard is a dabbling duck") and score == 100
    start, end, score = resolve_quote("Mallards feed by dabbling for plant food or by grazing", CHUNK)
    assert 90 <= score < 100 and "dabbling for plant food" in CHUNK[start:end]
    assert resolve_quote("green glossy a has male the head", CHUNK) is None  # words out of order
    assert resolve_quote("green head", CHUNK) is None  # too short to point anywhere


def test_quotes_are_looked_up_in_each_of_the_items_chunks():
    spans, missing = resolve_quotes(["The male has a glossy green head.", "Geese fly south in V shapes.",
                                     "Swans mate for life and guard their nests."],
                                    {"a": "Geese fly south in V shapes.", "b": CHUNK})
    assert [s["chunk_id"] for s in spans] == ["b", "a"]
    assert missing == ["Swans mate for life and guard their nests."]
    assert spans_within(spans, {"a": "Geese fly south in V shapes.", "b": CHUNK})
    assert not spans_within(spans, {"a": "", "b": CHUNK})  # a chunk shorter than its span
    assert not spans_within([{"chunk_id": "b", "start": 5, "end": len(CHUNK) + 1}], {"b": CHUNK})


def test_one_invented_sentence_beside_a_true_one_is_an_unsupported_claim():
    cited = ["The male has a glossy green head."]
    assert unsupported_claims(["The male has a glossy green head."], cited, 0.75) == []
    invented = "The male has a glossy green head. Mallards migrate to Antarctica every winter."
    assert unsupported_claims([invented], cited, 0.75) == ["Mallards migrate to Antarctica every winter."]


def record(answer: str, quotes: list[str], chunk: str = CHUNK) -> dict:
    return {"question": "What does the male mallard look like?", "answer": answer, "chunk_text": chunk,
            "chunk_id": "c1", "quotes": json.dumps(quotes)}


def test_the_curation_rules_reject_bad_citations_and_unsupported_claims_and_keep_good_ones():
    good = record("The male mallard has a glossy green head.", ["The male has a glossy green head."])
    invented = record("The male has a glossy green head. It weighs four kilograms and sings at night.",
                      ["The male has a glossy green head."])
    not_there = record("The male has a glossy green head.", ["The male has a shiny green and blue head."])
    uncited = record("The male has a glossy green head.", [])
    evidence: list[dict] = []
    reasons = filter_pairs([good, invented, not_there, uncited], evidence=evidence)
    assert reasons[0] == []
    assert UNSUPPORTED_CLAIM in reasons[1] and evidence[1]["details"][UNSUPPORTED_CLAIM] == [
        "It weighs four kilograms and sings at night."]
    assert CITATION_INVALID in reasons[2] and CITATION_INVALID in reasons[3]
    span = evidence[0]["spans"][0]
    assert CHUNK[span["start"]:span["end"]] == "The male has a glossy green head."


def test_the_planted_set_meets_recall_and_precision_of_0_9():
    """Answers with one supported and one invented sentence, quotes that do not occur,
    answers supported only by another chunk, and good items (benchmarks/bench_evidence.py)."""
    items, planted = planted_items(limit_chunks=12)
    figures = score(items, planted)
    for code in (UNSUPPORTED_CLAIM, CITATION_INVALID):
        assert figures[code]["recall"] >= 0.9 and figures[code]["precision"] >= 0.9, figures


def test_the_review_page_marks_the_cited_spans():
    spans = json.dumps([{"chunk_id": "c1", "start": 4, "end": 11}, {"chunk_id": "other", "start": 0, "end": 3}])
    assert highlight_parts(CHUNK, "c1", spans)[:2] == [("The ", False), ("mallard", True)]
    assert highlight_parts("text", "c1", None) == [("text", False)]
    assert highlight_parts("text", "c1", "not json") == [("text", False)]


def test_the_simulated_servers_wrong_quotes_are_rejected():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from sim_server import build_pairs

    document = CHUNK.replace("\n", " ")
    pairs = build_pairs(document, 3, bad_quote=1.0)
    records = [{**pair, "chunk_text": document, "chunk_id": "c1", "quotes": json.dumps(pair["quotes"])}
               for pair in pairs]
    assert all(CITATION_INVALID in reasons for reasons in filter_pairs(records))
    honest = build_pairs(document, 3)
    records = [{**pair, "chunk_text": document, "chunk_id": "c1", "quotes": json.dumps(pair["quotes"])}
               for pair in honest]
    assert not any(CITATION_INVALID in reasons for reasons in filter_pairs(records))


def _exported_rows_and_chunks(folder: Path, database: str):
    import duckdb
    import pandas as pd

    from synth_assets.core.shards import read_split

    rows = pd.concat([read_split(folder, "messages", split) for split in ("train", "validation")])
    with duckdb.connect(database, read_only=True) as con:
        texts = dict(con.execute("SELECT chunk_id, text FROM document_chunks").fetchall())
    return rows, texts


def _assert_every_row_has_evidence_found_at_its_offsets(rows, texts) -> None:
    from synth_assets.core.text import TOKEN

    assert len(rows)
    for evidence, messages in zip(rows["evidence"], rows["messages"]):
        assert evidence, "a row without evidence"
        stated = " ".join(m["content"] + " " + (m.get("reasoning_content") or "") for m in messages
                          if m["role"] == "assistant").lower()
        for span in evidence:
            text = texts[span["chunk_id"]]
            assert 0 <= span["start"] < span["end"] <= len(text)
            cited = text[span["start"]:span["end"]]
            # The model-free generator answers with its quotes: the cited words are stated.
            assert set(TOKEN.findall(cited.lower())) <= set(TOKEN.findall(stated)), (cited, stated)


@pytest.mark.slow
def test_every_exported_row_of_a_default_run_cites_spans_found_at_their_offsets(pipeline_resources, instance):
    from synth_assets.definitions import build_definitions
    from synth_assets.run import run_all

    run_all(build_definitions(pipeline_resources), instance, show_progress=False)
    exports = Path(pipeline_resources["export"].export_dir)
    folder = exports / (exports / "LATEST").read_text().strip()
    _assert_every_row_has_evidence_found_at_its_offsets(
        *_exported_rows_and_chunks(folder, pipeline_resources["duckdb"].database))


def test_with_the_judge_on_its_claim_check_rejects_what_the_lexical_one_let_through():
    """A reworded claim keeps enough words to pass the lexical check; the LLM judge's
    "unsupported" list names it, and the item is rejected as unsupported_claim."""
    from synth_assets.core.filters import FilterConfig

    item = record("The male mallard's head is green and glossy.", ["The male has a glossy green head."])
    assert filter_pairs([item], FilterConfig(use_judge=True), judge_scores=[9]) == [[]]
    evidence: list[dict] = []
    reasons = filter_pairs([item], FilterConfig(use_judge=True), judge_scores=[9], evidence=evidence,
                           judge_unsupported=[["The male mallard's head is green and glossy."]])
    assert reasons == [[UNSUPPORTED_CLAIM]]
    assert evidence[0]["details"][UNSUPPORTED_CLAIM] == ["(judge) The male mallard's head is green and glossy."]


def test_the_llm_judge_lists_the_claims_its_source_does_not_support():
    from benchmarks.sim_server import start_server_in_thread
    from synth_assets.generation.base import JudgeRequest
    from synth_assets.generation.openai_backend import OpenAIBackend

    base_url, _, stop = start_server_in_thread(slots=4, ttft=0.001, tpot=0.0001, output_tokens=10)
    try:
        chunk = "Ducks are birds that swim well in lakes and rivers. They eat plants, seeds and insects."
        outcome = OpenAIBackend(base_url=base_url, model="sim-model").judge([
            JudgeRequest("true", "What do ducks eat?", "They eat plants, seeds and insects.", chunk),
            JudgeRequest("half", "What do ducks eat?",
                         "They eat plants, seeds and insects. They also eat small sharks.", chunk)])
    finally:
        stop()
    assert "true" not in outcome.unsupported
    assert outcome.unsupported["half"] == ["They also eat small sharks."]
