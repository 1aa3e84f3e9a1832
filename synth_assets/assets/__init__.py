"""The pipeline's assets, one module per stage: ingest, chunks, generate, curate, review, export."""

import dagster as dg

from synth_assets.assets.chunks import document_chunks
from synth_assets.assets.curate import filtered_qa_pairs
from synth_assets.assets.export import (
    alpaca_examples,
    published_dataset,
    rebuilt_after_documents_change,
    sharegpt_examples,
    training_dataset,
)
from synth_assets.assets.generate import generated_qa_pairs
from synth_assets.assets.human import human_examples
from synth_assets.assets.ingest import parsed_documents, raw_documents
from synth_assets.assets.review import review_sample, reviewed_qa_pairs
from synth_assets.resources.curation import CurationResource
from synth_assets.resources.generation import GenerationResource
from synth_assets.resources.review import ReviewSettings

PIPELINE_ASSETS = [
    raw_documents,
    parsed_documents,
    document_chunks,
    generated_qa_pairs,
    filtered_qa_pairs,
    alpaca_examples,
    sharegpt_examples,
    review_sample,
    reviewed_qa_pairs,
    human_examples,
    training_dataset,
    published_dataset,
]


def build_pipeline_assets(
    generation: GenerationResource, curation: CurationResource, catch_up_cron: str, review: ReviewSettings
) -> list[dg.AssetsDefinition]:
    """The assets as the configured resources make them: the settings that decide an
    asset's rows join its code version (so changing the model, the prompt version, a
    chunk size or a filter threshold marks that asset and what is below it stale, in
    the UI and for the catch-up), generated_qa_pairs shows the configured backend as a
    kind, and the dataset follows the catch-up cron."""
    settings_version = {
        document_chunks.key: generation.chunking_version(),
        generated_qa_pairs.key: generation.output_version(),
        filtered_qa_pairs.key: curation.output_version(),
        review_sample.key: f"size{review.sample_size}-random{review.random_share}-seed{review.seed}",
        # The folder and the ratio decide which human rows the dataset gets (stale, and rebuilt, when changed).
        human_examples.key: f"folder={review.human_data_dir}-ratio={review.human_ratio}",
    }

    def configured(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key == generated_qa_pairs.key:
            spec = spec.merge_attributes(kinds={generation.backend})
        if spec.key in settings_version:
            return spec.replace_attributes(code_version=f"{spec.code_version}+{settings_version[spec.key]}")
        if spec.key == training_dataset.key:
            return spec.replace_attributes(automation_condition=rebuilt_after_documents_change(catch_up_cron))
        return spec

    return [asset.map_asset_specs(configured) for asset in PIPELINE_ASSETS]
