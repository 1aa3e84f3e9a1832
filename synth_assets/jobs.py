"""Jobs: one document through the whole pipeline, and the merged export (checked, then published)."""

import dagster as dg
from dagster_celery import celery_executor

from synth_assets.assets.export import published_dataset, training_dataset
from synth_assets.assets.human import human_examples
from synth_assets.partitions import documents_partitions

PROCESS_DOCUMENTS_JOB = "process_documents"
BUILD_TRAINING_DATASET_JOB = "build_training_dataset"

process_documents_job = dg.define_asset_job(
    PROCESS_DOCUMENTS_JOB,
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets(human_examples, training_dataset, published_dataset),
    partitions_def=documents_partitions,
    description="Ingest, chunk, generate, curate and format documents: one partition, or a range of them in one run.",
)

build_training_dataset_job = dg.define_asset_job(
    BUILD_TRAINING_DATASET_JOB,
    selection=dg.AssetSelection.assets(human_examples, training_dataset, published_dataset),
    description="Read the human-labelled examples, merge them and every document's examples into a candidate "
                "export, check it, then publish it.",
)

# The executors SYNTH_ASSETS_EXECUTOR chooses from (settings.py passes the one chosen to
# Definitions, so every job of the code location runs its steps with it).
IN_PROCESS_EXECUTOR = "in_process"
CELERY_EXECUTOR = "celery"
K8S_EXECUTOR = "k8s"


def build_executor(name: str, celery_broker: str, celery_backend: str) -> dg.ExecutorDefinition:
    """How a launched run (the UI, the sensor, the schedule) executes its steps.

    `in_process` (the default) runs them in the run's own process, as `make run` does.
    Dagster's own default, a process per step, would import the whole stack and build
    the resources again for every step (about 1.5 min for one document against 3 s)
    and, with a model backend, load or lease the model once per step; the steps form
    one chain, so parallel processes on one machine win nothing.

    `celery` (the team deployment, docs/DEPLOYMENT.md) sends each step to whichever
    Celery worker is free, on any machine that reaches the broker, the PostgreSQL
    instance and the DuckLake tables.

    `k8s` (Kubernetes, deploy/kubernetes/values.yaml) runs each step in a Kubernetes Job
    of its own; it needs the `k8s` extra (dagster-k8s)."""
    if name == K8S_EXECUTOR:
        # Imported here: dagster-k8s and its Kubernetes client are installed only where
        # the code location runs on Kubernetes.
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if name == CELERY_EXECUTOR:
        return celery_executor.configured({"broker": celery_broker, "backend": celery_backend})
    if name == IN_PROCESS_EXECUTOR:
        return dg.in_process_executor
    raise ValueError(f"unknown executor {name!r}: expected {IN_PROCESS_EXECUTOR}, {CELERY_EXECUTOR} or {K8S_EXECUTOR}")
