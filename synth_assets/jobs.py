"""Jobs: one document through the whole pipeline, and the merged export (checked, then published)."""

import dagster as dg

from synth_assets.assets.export import published_dataset, training_dataset
from synth_assets.partitions import documents_partitions

PROCESS_DOCUMENTS_JOB = "process_documents"
BUILD_TRAINING_DATASET_JOB = "build_training_dataset"

process_documents_job = dg.define_asset_job(
    PROCESS_DOCUMENTS_JOB,
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets(training_dataset, published_dataset),
    partitions_def=documents_partitions,
    description="Ingest, chunk, generate, curate and format documents: one partition, or a range of them in one run.",
    # In process on purpose, as `make run` runs it: Dagster's default for a launched run
    # (the UI, the sensor, the schedule) is a process per step, each importing the whole
    # stack and building its own resources (about 1.5 min for one document against 3 s
    # here) and, with a model backend, each loading or leasing the model on its own. The
    # steps of this job form one chain, so parallel steps would win nothing.
    executor_def=dg.in_process_executor,
)

build_training_dataset_job = dg.define_asset_job(
    BUILD_TRAINING_DATASET_JOB,
    selection=dg.AssetSelection.assets(training_dataset, published_dataset),
    description="Merge every document's examples into a candidate export, check it, then publish it.",
)
