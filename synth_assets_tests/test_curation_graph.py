"""Curation in the graph: the judge through the generation resource, and the
curation settings read from the environment."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from synth_assets.assets import PIPELINE_ASSETS
from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME
from synth_assets.generation.base import GeneratedPair, GenerationOutcome
from synth_assets.resources.curation import CurationResource
from synth_assets.settings import Settings
from synth_assets.resources.generation import GenerationResource
from synth_assets.storage import FILTERED_QA_PAIRS_TABLE, REJECTED_QA_PAIRS_TABLE

UP_TO_CURATION = ["raw_documents", "parsed_documents", "document_chunks", "generated_qa_pairs", "filtered_qa_pairs"]


class TerseEveryOtherAnswer(GenerationResource):
    """The model-free backend, but every other answer cut to its first six words: still
    grounded and long enough for the form rules, yet a weaker answer for the judge."""

    def create_backend(self, log=None):
        real = super().create_backend(log)

        class Backend:
            generator, model, prompt_version = real.generator, real.model, real.prompt_version
            judge = real.judge

            def generate(self, requests):
                outcome = real.generate(requests)
                pairs = [
                    GeneratedPair(p.chunk_id, p.question, " ".join(p.answer.split()[:6]) if i % 2 else p.answer,
                                  p.question_type, evidence=p.evidence)  # it still cites its sentence
                    for i, p in enumerate(outcome.pairs)
                ]
                return GenerationOutcome(pairs=pairs, failures=outcome.failures, stats=outcome.stats)

        return Backend()


def _curate_wiki(pipeline_resources, instance, curation: CurationResource):
    key = next(k for k in pipeline_resources["documents"].discover() if k.startswith("wiki"))
    instance.add_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME, [key])
    result = dg.materialize(
        PIPELINE_ASSETS,
        selection=UP_TO_CURATION,
        partition_key=key,
        resources={**pipeline_resources, "curation": curation},
        instance=instance,
    )
    assert result.success
    metadata = result.asset_materializations_for_node("filtered_qa_pairs")[0].metadata
    with duckdb.connect(pipeline_resources["duckdb"].database, read_only=True) as con:
        kept = con.execute(f"SELECT judge_score, judge_reason FROM {FILTERED_QA_PAIRS_TABLE}").fetchall()
        rejected = con.execute(f"SELECT judge_score, reject_reasons FROM {REJECTED_QA_PAIRS_TABLE}").fetchall()
    return metadata, kept, rejected


def test_the_judge_scores_pairs_and_rejects_those_below_the_minimum(pipeline_resources, instance):
    resources = {**pipeline_resources, "generation": TerseEveryOtherAnswer()}
    metadata, kept, rejected = _curate_wiki(
        resources, instance, CurationResource(use_judge=True, min_judge_score=10)
    )
    # model_free's judge is the heuristic one: full answers score 10, the terse ones less.
    assert "heuristic judge" in metadata["judge"].value
    assert metadata["judged"].value >= len(kept) > 0
    assert all(score == 10 and reason for score, reason in kept)
    low = [(score, reasons) for score, reasons in rejected if "low_judge_score" in reasons]
    assert low and all(score is not None and score < 10 for score, _ in low)
    assert metadata["rejections_by_reason"].value["low_judge_score"] == len(low)


def test_without_the_judge_no_pair_is_scored(pipeline_resources, instance):
    metadata, kept, _ = _curate_wiki(pipeline_resources, instance, CurationResource())
    assert metadata["judge"].value.startswith("off")
    assert kept and all(score is None for score, _ in kept)


def test_curation_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SYNTH_ASSETS_USE_JUDGE", "yes")
    monkeypatch.setenv("SYNTH_ASSETS_MIN_JUDGE_SCORE", "7")
    monkeypatch.setenv("SYNTH_ASSETS_MIN_GROUNDING", "0.6")
    config = Settings.from_env().resources["curation"].filter_config()
    assert config.use_judge and config.min_judge_score == 7 and config.min_grounding == 0.6
    assert not config.use_embeddings  # unset: the default

    monkeypatch.setenv("SYNTH_ASSETS_USE_EMBEDDINGS", "maybe")
    with pytest.raises(ValueError, match="SYNTH_ASSETS_USE_EMBEDDINGS='maybe'"):
        Settings.from_env()
