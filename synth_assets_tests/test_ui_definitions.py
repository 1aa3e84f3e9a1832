"""What the Dagster UI shows about the pipeline before anything runs: groups, kinds,
owners, descriptions and code versions on every asset, descriptions on every check,
and check results that show each expectation and a few failing rows."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from synth_assets.assets import PIPELINE_ASSETS
from synth_assets.assets.factory import OWNERS
from synth_assets.checks import _check_result, quality_checks
from synth_assets.quality import validate_filtered_pairs, validate_generated_pairs

# asset -> (group, kinds it must show)
EXPECTED = {
    "raw_documents": ("ingest", {"duckdb"}),
    "parsed_documents": ("ingest", {"docling", "duckdb"}),
    "document_chunks": ("ingest", {"docling", "duckdb"}),
    # and the kind of the configured backend (see test_the_code_versions_come_from...)
    "generated_qa_pairs": ("generate", {"duckdb", "great_expectations"}),
    "filtered_qa_pairs": ("curate", {"duckdb", "great_expectations"}),
    "alpaca_examples": ("export", {"duckdb", "great_expectations"}),
    "sharegpt_examples": ("export", {"duckdb", "great_expectations"}),
    "training_dataset": ("export", {"huggingface", "duckdb", "great_expectations"}),
    "published_dataset": ("export", {"huggingface"}),
    "human_examples": ("export", {"duckdb"}),
    "review_sample": ("review", {"duckdb"}),
    "reviewed_qa_pairs": ("review", {"duckdb"}),
}


def _specs() -> dict:
    # from the asset definitions themselves: resolving the Definitions object would touch
    # whatever Dagster instance an earlier test left current
    return {spec.key.to_user_string(): spec for asset in PIPELINE_ASSETS for spec in asset.specs}


def test_every_asset_has_its_group_kinds_owner_description_and_code_version() -> None:
    specs = _specs()
    assert set(specs) == set(EXPECTED)
    for name, (group, kinds) in EXPECTED.items():
        spec = specs[name]
        assert spec.group_name == group, name
        assert kinds <= set(spec.kinds), f"{name}: kinds {sorted(spec.kinds)}"
        assert list(spec.owners) == OWNERS, name
        assert spec.description and len(spec.description.split()) >= 8, f"{name} needs a description"
        assert spec.code_version, f"{name} has no code version: the UI could not show it stale"


def test_every_check_has_a_description_and_gx_checks_sit_on_gx_assets() -> None:
    specs = _specs()
    check_specs = [spec for check in quality_checks for spec in check.check_specs]
    assert len(check_specs) == 7
    for spec in check_specs:
        assert spec.description and len(spec.description.split()) >= 8, f"{spec.name} needs a description"
        if "Great Expectations" in spec.description:
            # checks cannot carry kinds: the asset they validate shows great_expectations
            assert "great_expectations" in specs[spec.asset_key.to_user_string()].kinds, spec.name
    assert sum("Great Expectations" in spec.description for spec in check_specs) == 5


def _code_versions(defs) -> dict[str, str]:
    return {key.to_user_string(): version
            for asset in defs.assets for key, version in asset.code_versions_by_key.items()}


def test_the_code_versions_come_from_the_resources_the_runs_use(tmp_path) -> None:
    from synth_assets.definitions import build_definitions
    from synth_assets.resources.curation import CurationResource
    from synth_assets.resources.generation import GenerationResource
    from synth_assets.settings import Settings

    settings = Settings.from_env({"SYNTH_ASSETS_DUCKDB_PATH": str(tmp_path / "t.duckdb")})
    default = _code_versions(build_definitions(settings=settings))
    generation = GenerationResource(backend="openai", model="some/model", max_seq_len=4096)
    configured = _code_versions(build_definitions(settings=settings, resources={
        "generation": generation, "curation": CurationResource(min_grounding=0.5)}))
    assert "some/model" in configured["generated_qa_pairs"]
    assert generation.prompt_version in configured["generated_qa_pairs"]
    assert configured["generated_qa_pairs"] != default["generated_qa_pairs"]
    assert configured["document_chunks"] != default["document_chunks"]  # bigger chunks
    assert configured["filtered_qa_pairs"] != default["filtered_qa_pairs"]
    assert configured["parsed_documents"] == default["parsed_documents"]
    kinds = {key.to_user_string(): set(spec.kinds) for asset in build_definitions(
        settings=settings, resources={"generation": generation}).assets for key, spec in
        ((spec.key, spec) for spec in asset.specs)}
    assert "openai" in kinds["generated_qa_pairs"] and "model_free" not in kinds["generated_qa_pairs"]
    # and from the environment, read once by the settings
    from_env = Settings.from_env({"SYNTH_ASSETS_GENERATION_BACKEND": "openai", "SYNTH_ASSETS_MODEL": "other/model"})
    assert "other/model" in _code_versions(build_definitions(settings=from_env))["generated_qa_pairs"]


def test_a_setting_that_does_not_fit_names_its_variable() -> None:
    from synth_assets.settings import Settings

    with pytest.raises(ValueError, match="SYNTH_ASSETS_GENERATION_BACKEND='gpt'"):
        Settings.from_env({"SYNTH_ASSETS_GENERATION_BACKEND": "gpt"})
    with pytest.raises(ValueError, match="SYNTH_ASSETS_MAX_CONCURRENCY='many'"):
        Settings.from_env({"SYNTH_ASSETS_MAX_CONCURRENCY": "many"})
    assert Settings.from_env({"SYNTH_ASSETS_MODEL": ""}).resources["generation"].model is None


def _pairs(overrides: dict | None = None) -> pd.DataFrame:
    rows = [
        {"pair_id": f"doc.md#c0000#q{i:02d}", "chunk_id": "doc.md#c0000", "document_id": "doc.md",
         "question": f"What does the duck number {i} eat in the pond?",
         "answer": f"The duck number {i} eats water plants and small insects in the pond.",
         "generator": "model-free", "prompt_version": "v1", "question_type": "what", "grounding": 1.0}
        for i in range(6)
    ]
    frame = pd.DataFrame(rows)
    for (index, column), value in (overrides or {}).items():
        frame.loc[index, column] = value
    return frame


CHUNKS = pd.DataFrame({"chunk_id": ["doc.md#c0000"],
                       "text": [" ".join(f"The duck number {i} eats water plants and small insects in the pond."
                                         for i in range(6))]})


def test_a_failed_check_shows_each_expectation_and_the_failing_rows() -> None:
    pairs = _pairs({(2, "answer"): None, (4, "answer"): "Swans migrate south across the mountains."})
    result = _check_result(validate_filtered_pairs(pairs, CHUNKS, set(), kept_bounds=(1, 6)))
    assert not result.passed
    metadata = {key: getattr(value, "value", value) for key, value in result.metadata.items()}
    assert metadata["validated_with"].startswith("Great Expectations 1.")
    assert metadata["suite"] == "filtered_qa_pairs_suite"
    table = metadata["expectations"]
    assert "| column_values_to_not_be_null[answer] | **failed** |" in table
    assert "| table_row_count_to_be_between[table] | passed | 6 |" in table  # the observed value
    failing = metadata["failing_rows"]
    assert "| column_values_to_not_be_null[answer] | doc.md#c0000#q02 | answer |" in failing
    assert "| column_values_to_be_between[answer_support] | doc.md#c0000#q04 | answer_support | 0.0 |" in failing
    assert "#q00" not in failing  # rows that pass are not listed


def test_a_passing_check_lists_no_failing_rows() -> None:
    pairs = _pairs()
    result = _check_result(validate_generated_pairs(pairs, {"doc.md#c0000"}))
    assert result.passed
    assert result.metadata["failing_rows"].value == "none"
    expectations = [key for key in result.metadata if "[" in key]  # e.g. column_values_to_be_unique[pair_id]
    assert len(expectations) == 10
    table = result.metadata["expectations"].value
    assert table.count("| passed |") == len(expectations) and "failed" not in table


@pytest.mark.parametrize("rows", [3, 12])
def test_failing_rows_are_capped_per_expectation(rows: int) -> None:
    from synth_assets.quality import FAILING_ROWS_PER_EXPECTATION

    pairs = pd.concat([_pairs()] * 2, ignore_index=True).head(rows)
    pairs["pair_id"] = [f"p{i}" for i in range(rows)]
    pairs["answer"] = "Swans migrate south across the mountains."
    result = validate_filtered_pairs(pairs, CHUNKS, set())
    grounding_rows = [r for r in result.failing_rows if r["column"] == "answer_support"]
    assert len(grounding_rows) == min(rows, FAILING_ROWS_PER_EXPECTATION)


def test_no_description_has_text_the_ui_would_take_for_html() -> None:
    # The UI renders descriptions as Markdown: "data/exports/<version>/" showed as "data/exports//".
    descriptions = [spec.description for spec in _specs().values()]
    descriptions += [spec.description for check in quality_checks for spec in check.check_specs]
    for description in descriptions:
        assert not re.search(r"<[A-Za-z_/][^>]*>", description), description
