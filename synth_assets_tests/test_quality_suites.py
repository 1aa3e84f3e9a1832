"""The filtered-pairs suite checks what the filter does not already guarantee; each
expectation is made to fail on purpose here, so none of them is one that cannot fail."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from synth_assets.quality import (
    answer_support,
    validate_alpaca,
    validate_filtered_pairs,
    validate_sharegpt,
)

CHUNK_TEXT = "Ducks eat water plants, small insects and seeds. They nest near ponds in spring."
CHUNKS = pd.DataFrame({"chunk_id": ["doc.md#c0000", "doc.md#c0001"], "text": [CHUNK_TEXT, "Swans migrate."]})


def kept(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame([
        {"pair_id": f"doc.md#c0000#q{i:02d}", "document_id": "doc.md", "chunk_id": "doc.md#c0000",
         "question": f"What do ducks eat, case {i}?", "answer": "Ducks eat water plants, small insects and seeds.",
         "generator": "model-free", "prompt_version": "v1"}
        for i in range(n)
    ])


def failed(result) -> set[str]:
    return set(result.failed)


def test_vetted_pairs_pass():
    result = validate_filtered_pairs(kept(), CHUNKS, {"doc.md#c0001#q00"}, kept_bounds=(1, 4))
    assert result.success, result.failed


@pytest.mark.parametrize(("change", "expectation"), [
    (lambda p: p.assign(answer=["Swans cross mountains every autumn."] + list(p["answer"][1:])),
     "column_values_to_be_between[answer_support]"),
    (lambda p: p.assign(chunk_id=["other.md#c0000"] + list(p["chunk_id"][1:])),
     "column_values_to_be_in_set[chunk_id]"),
    (lambda p: p.assign(pair_id=[p["pair_id"][1]] + list(p["pair_id"][1:])),
     "column_values_to_be_unique[pair_id]"),
    (lambda p: p.assign(question=["What do ducks eat, case 1?"] + list(p["question"][1:])),
     "column_values_to_be_unique[normalised_question]"),
    (lambda p: p.assign(answer=[None] + list(p["answer"][1:])), "column_values_to_not_be_null[answer]"),
])
def test_each_expectation_fails_on_its_own(change, expectation):
    result = validate_filtered_pairs(change(kept()), CHUNKS, set(), kept_bounds=(1, 4))
    assert expectation in failed(result), result.failed


def test_a_kept_pair_also_among_the_rejected_fails():
    result = validate_filtered_pairs(kept(), CHUNKS, {"doc.md#c0000#q02"})
    assert failed(result) == {"column_values_to_not_be_in_set[pair_id]"}


def test_the_retention_band_fails_outside_it():
    assert failed(validate_filtered_pairs(kept(), CHUNKS, set(), kept_bounds=(5, 10))) == {
        "table_row_count_to_be_between[table]"}


def test_a_chunk_rewritten_after_filtering_shows_as_unsupported_answers():
    rewritten = CHUNKS.assign(text=["Lorem ipsum dolor sit amet.", "Swans migrate."])
    assert "column_values_to_be_between[answer_support]" in failed(validate_filtered_pairs(kept(), rewritten, set()))
    assert answer_support("Ducks eat seeds.", CHUNK_TEXT) == 1.0
    assert answer_support("Ducks eat seeds.", None) == 0.0


def test_format_rows_fail_their_schema():
    provenance = {"pair_id": "p1", "chunk_id": "c1", "source_file": "doc.md"}
    alpaca = pd.DataFrame([{"instruction": "", "input": "", "output": "An answer.", **provenance}])
    assert "column_value_lengths_to_be_between[instruction]" in validate_alpaca(alpaca).failed
    sharegpt = pd.DataFrame([{"conversations": json.dumps([{"from": "gpt", "value": "A"}, {"from": "human", "value": "Q"}]),
                              **provenance}])
    assert "column_values_to_be_in_set[roles]" in validate_sharegpt(sharegpt).failed


def test_documents_validated_together_still_need_their_own_chunks() -> None:
    """checks.py validates the documents of a many-document step in one frame; a pair whose
    chunk belongs to another document of that step must still fail there."""
    import pandas as pd

    from synth_assets.checks import _scoped
    from synth_assets.quality import validate_generated_pairs

    def pair(document_id: str, chunk_id: str) -> dict:
        return {"pair_id": f"{document_id}#{chunk_id}#q01", "document_id": document_id, "chunk_id": chunk_id,
                "question": "What do ducks eat?", "answer": "Ducks eat plants.", "generator": "model_free",
                "prompt_version": "v1"}

    chunks = pd.DataFrame([{"document_id": "a.md", "chunk_id": "a.md#c0000"},
                           {"document_id": "b.md", "chunk_id": "b.md#c0000"}])
    keys = ["a.md", "b.md"]
    own = pd.DataFrame([pair("a.md", "a.md#c0000"), pair("b.md", "b.md#c0000")])
    crossed = pd.DataFrame([pair("a.md", "b.md#c0000"), pair("b.md", "b.md#c0000")])
    assert validate_generated_pairs(_scoped(own, keys), set(_scoped(chunks, keys)["chunk_id"])).success
    assert not validate_generated_pairs(_scoped(crossed, keys), set(_scoped(chunks, keys)["chunk_id"])).success
    # without the scoping, the crossed pair would pass: the check would be blind to it
    assert validate_generated_pairs(crossed, set(chunks["chunk_id"])).success


def test_many_documents_are_checked_in_halves_down_to_the_failing_ones() -> None:
    import dagster as dg

    from synth_assets.batch import _evaluate_in_halves

    keys = [f"doc{i:03d}" for i in range(64)]
    failing = {"doc007", "doc040"}
    together, alone = [], []

    def evaluate_all(batch: list[str]) -> dg.AssetCheckResult:
        together.append(batch)
        return dg.AssetCheckResult(passed=not failing & set(batch))

    def evaluate(key: str) -> dg.AssetCheckResult:
        alone.append(key)
        return dg.AssetCheckResult(passed=key not in failing, description=f"{key} checked alone")

    results = _evaluate_in_halves(keys, evaluate, evaluate_all)
    assert list(results) == keys
    assert {key for key, result in results.items() if not result.passed} == failing
    assert results["doc007"].description == "doc007 checked alone"
    assert len(together) + len(alone) < 30  # not one validation per document (64)
    assert len(_evaluate_in_halves(keys, evaluate, lambda batch: dg.AssetCheckResult(passed=True))) == 64
