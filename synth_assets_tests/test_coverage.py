"""Coverage (issue 27): which chunks and headings of each document the kept items draw on,
the warning check of SYNTH_ASSETS_MIN_COVERAGE, and the dataset card's section."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest

from synth_assets.core.coverage import (
    coverage_by_document,
    coverage_markdown,
    coverage_stats,
    dataset_coverage,
    document_coverage,
)
from synth_assets.core.exporting import ExportOptions, dataset_card
from synth_assets.resources.generation import GenerationResource


def _chunks() -> pd.DataFrame:
    rows = [
        # document a: one boilerplate chunk, four prose chunks under three headings
        ("a", "a#0", 0, None, True),
        ("a", "a#1", 1, "Intro", False),
        ("a", "a#2", 2, "Intro", False),
        ("a", "a#3", 3, "Habitat", False),
        ("a", "a#4", 4, "Diet", False),
        # document b: two prose chunks, no heading
        ("b", "b#0", 0, None, False),
        ("b", "b#1", 1, "", False),
    ]
    return pd.DataFrame(rows, columns=["document_id", "chunk_id", "chunk_index", "heading_path", "boilerplate"])


def _items() -> pd.DataFrame:
    return pd.DataFrame([
        # A multi-hop item covers both its chunks, not only the one it is filed under.
        {"document_id": "a", "chunk_id": "a#1", "source_chunk_ids": json.dumps(["a#1", "a#3"])},
        # No source_chunk_ids: its chunk_id. An item on boilerplate covers nothing counted.
        {"document_id": "a", "chunk_id": "a#1", "source_chunk_ids": None},
        {"document_id": "a", "chunk_id": "a#0", "source_chunk_ids": None},
        # Chunk ids are matched within their own document.
        {"document_id": "b", "chunk_id": "a#4", "source_chunk_ids": None},
    ])


def test_a_multi_hop_item_covers_each_of_its_chunks_and_boilerplate_is_not_counted() -> None:
    per_document = coverage_by_document(_chunks(), _items())
    a, b = per_document["a"], per_document["b"]
    assert (a.chunks, a.covered_chunks, a.chunk_share) == (4, 2, 0.5)
    assert a.uncovered_chunk_ids == ["a#2", "a#4"]
    assert (a.headings, a.covered_headings) == (3, 2)  # Intro and Habitat, not Diet
    assert (b.chunks, b.covered_chunks, b.headings, b.heading_share) == (2, 0, 0, None)

    total = dataset_coverage(per_document)
    assert (total.chunks, total.covered_chunks, total.headings, total.covered_headings) == (6, 2, 3, 2)
    assert total.uncovered_chunk_ids == ["a#2", "a#4", "b#0", "b#1"]


def test_a_document_of_boilerplate_only_has_nothing_to_cover() -> None:
    chunks = _chunks()
    coverage = document_coverage(chunks[chunks["chunk_id"] == "a#0"], {"a#0"})
    assert (coverage.chunks, coverage.chunk_share, coverage.heading_share) == (0, None, None)


def test_documents_are_listed_least_covered_first_and_the_table_is_capped() -> None:
    stats = coverage_stats(coverage_by_document(_chunks(), _items(), ["a", "b", "empty"]))
    assert list(stats["documents"]) == ["b", "a", "empty"]  # 0%, 50%, then nothing to cover
    assert stats["chunk_coverage"] == round(2 / 6, 3) and stats["uncovered_chunks"] == 4
    table = coverage_markdown(stats, max_rows=1)
    assert "`b`" in table and "`a`" not in table and "2 more documents" in table


def test_the_dataset_card_has_a_coverage_section() -> None:
    stats = {"coverage": coverage_stats(coverage_by_document(_chunks(), _items()))}
    rows = {"alpaca": {"train": 3, "validation": 1}}
    card = dataset_card("v1", rows, ExportOptions(), stats)
    section = " ".join(card.split("## Coverage", 1)[1].split("\n## ", 1)[0].split())
    assert "**33.3% of chunks** (2 of 6; 4 never covered)" in section
    assert "**66.7% of headings** (2 of 3)" in section
    assert section.index("`b`") < section.index("`a`")
    # No figures, no section.
    assert "## Coverage" not in dataset_card("v1", rows, ExportOptions(), {})


class FirstChunkOnly(GenerationResource):
    """The model-free backend, but only the document's first chunk gets items."""

    def create_backend(self, log=None):
        real = super().create_backend(log)

        class Backend:
            generator, model, prompt_version, judge = real.generator, real.model, real.prompt_version, real.judge

            def generate(self, requests):
                first = min(request.chunk_id for request in requests)
                return real.generate([request for request in requests
                                      if request.chunk_id == first and not request.partners])

        return Backend()


def test_the_coverage_check_warns_below_the_minimum_and_passes_above_it(pipeline_resources, instance) -> None:
    from synth_assets.assets import PIPELINE_ASSETS
    from synth_assets.checks import COVERAGE_CHECK, coverage_check
    from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME
    from synth_assets.resources.curation import CurationResource

    key = next(k for k in pipeline_resources["documents"].discover() if k.startswith("wiki"))
    instance.add_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME, [key])

    def curate(minimum: float | None, **resources) -> tuple[dict, dg.AssetCheckEvaluation]:
        result = dg.materialize(
            [*PIPELINE_ASSETS, coverage_check], partition_key=key, instance=instance,
            resources={**pipeline_resources, "curation": CurationResource(min_coverage=minimum), **resources},
            selection=dg.AssetSelection.assets("raw_documents", "parsed_documents", "document_chunks",
                                               "generated_qa_pairs", "filtered_qa_pairs")
            | dg.AssetSelection.checks(coverage_check))
        [found] = result.get_asset_check_evaluations()
        assert found.check_name == COVERAGE_CHECK
        return result.asset_materializations_for_node("filtered_qa_pairs")[0].metadata, found

    metadata, unset = curate(None)
    share = metadata["chunk_coverage"].value
    assert 0 < share <= 1 and metadata["chunks"].value >= 3 and "heading_coverage" in metadata
    assert unset.passed and unset.description.startswith("no minimum set")
    _, reached = curate(share)
    assert reached.passed and reached.metadata["chunk_coverage"].value == share

    # Items for the first chunk only: the document's coverage falls below the minimum.
    metadata, low = curate(0.5, generation=FirstChunkOnly())
    assert metadata["covered_chunks"].value == 1
    assert not low.passed and low.severity == dg.AssetCheckSeverity.WARN
    assert "of chunks covered (minimum 50%)" in low.description
    assert len(low.metadata["uncovered_chunk_ids"].value) == metadata["chunks"].value - 1
