"""Jobs: one document through the whole pipeline, and the merged export."""

import dagster as dg

from synth_assets.assets.export import training_dataset
from synth_assets.partitions import documents_partitions

PROCESS_DOCUMENTS_JOB = "process_documents"
BUILD_TRAINING_DATASET_JOB = "build_training_dataset"

process_documents_job = dg.define_asset_job(
    PROCESS_DOCUMENTS_JOB,
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets(training_dataset),
    partitions_def=documents_partitions,
    description="Ingest, chunk, generate, curate and format documents: one partition, or a range of them in one run.",
)

build_training_dataset_job = dg.define_asset_job(
    BUILD_TRAINING_DATASET_JOB,
    selection=dg.AssetSelection.assets(training_dataset),
    description="Merge every document's examples into the exported training dataset.",
)
