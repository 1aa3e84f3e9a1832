"""The synth_assets code location: the one Definitions object workspace.yaml points to."""

import dagster as dg

from synth_assets.assets.chunks import document_chunks
from synth_assets.assets.curate import filtered_qa_pairs
from synth_assets.assets.export import alpaca_examples, sharegpt_examples, training_dataset
from synth_assets.assets.generate import generated_qa_pairs
from synth_assets.assets.ingest import parsed_documents, raw_documents
from synth_assets.automation import automation_sensor
from synth_assets.checks import quality_checks
from synth_assets.jobs import build_training_dataset_job, process_documents_job
from synth_assets.resources.curation import CurationResource
from synth_assets.resources.documents import DocumentsFolder
from synth_assets.resources.export import ExportSettings
from synth_assets.resources.generation import GenerationResource
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.schedules import nightly_catch_up
from synth_assets.sensors import documents_failed_in_a_batch_run_alone, documents_sensor

PIPELINE_ASSETS = [
    raw_documents,
    parsed_documents,
    document_chunks,
    generated_qa_pairs,
    filtered_qa_pairs,
    alpaca_examples,
    sharegpt_examples,
    training_dataset,
]


def pipeline_resources() -> dict:
    """Resources on their embedded defaults, overridden by SYNTH_ASSETS_* variables."""
    return {
        "documents": DocumentsFolder.from_env(),
        "duckdb": PipelineDatabase.from_env(),
        "generation": GenerationResource.from_env(),
        "curation": CurationResource.from_env(),
        "export": ExportSettings.from_env(),
    }


def build_definitions(resources: dict | None = None) -> dg.Definitions:
    """The code location, with `resources` replacing the defaults (tests use this)."""
    return dg.Definitions(
        assets=PIPELINE_ASSETS,
        asset_checks=quality_checks,
        jobs=[process_documents_job, build_training_dataset_job],
        sensors=[documents_sensor, documents_failed_in_a_batch_run_alone, automation_sensor],
        schedules=[nightly_catch_up],
        resources={**pipeline_resources(), **(resources or {})},
    )


defs = build_definitions()
