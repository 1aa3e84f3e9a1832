"""Every setting of the code location, read from the environment once, here.

`Settings.from_env()` is called at the top (definitions.py, run.py); everything below
it receives plain values or configured resources. Each setting is declared once, as
a field of its resource (type, default, comment), and set with the environment
variable that `ENVIRONMENT` names for it; unset variables keep the field's default.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import dagster as dg

from synth_assets.core.parsing import find_layout_models_dir
from synth_assets.jobs import CELERY_EXECUTOR, IN_PROCESS_EXECUTOR, K8S_EXECUTOR, build_executor
from synth_assets.planning import (
    DEFAULT_SINGLE_RUN_MIN_DOCUMENTS,
    SINGLE_RUN_MIN_DOCUMENTS_ENV,
    default_single_run_min_documents,
    parse_single_run_min_documents,
)
from synth_assets.resources.curation import CurationResource
from synth_assets.resources.documents import CORPUS_SHARD_ENV, DOCUMENTS_DIR_ENV, DocumentsFolder
from synth_assets.resources.export import EVAL_SETS_ENV, HUB_REPO_ENV, ExportSettings
from synth_assets.resources.generation import COST_SETTINGS_ENV, GENERATION_MODEL_ENV, TASKS_ENV, GenerationResource
from synth_assets.resources.review import ReviewSettings
from synth_assets.resources.storage import PipelineDatabase

# Resource key in Definitions -> (resource class, {field: environment variable}).
ENVIRONMENT: dict[str, tuple[type[dg.ConfigurableResource], dict[str, str]]] = {
    "documents": (DocumentsFolder, {
        "path": DOCUMENTS_DIR_ENV,
        "max_file_mb": "SYNTH_ASSETS_MAX_FILE_MB",
        "on_removed": "SYNTH_ASSETS_ON_REMOVED",
        "shard": CORPUS_SHARD_ENV,
    }),
    "duckdb": (PipelineDatabase, {
        "database": "SYNTH_ASSETS_DUCKDB_PATH",
        # The team deployment (docs/DEPLOYMENT.md): set, the tables are a DuckLake.
        "ducklake_catalog": "SYNTH_ASSETS_DUCKLAKE_CATALOG",
        "ducklake_data_path": "SYNTH_ASSETS_DUCKLAKE_DATA_PATH",
    }),
    "generation": (GenerationResource, {
        "backend": "SYNTH_ASSETS_GENERATION_BACKEND",
        "model": GENERATION_MODEL_ENV,
        "pairs_per_chunk": "SYNTH_ASSETS_PAIRS_PER_CHUNK",
        "tasks": TASKS_ENV,
        "base_url": "SYNTH_ASSETS_OPENAI_BASE_URL",
        "base_urls": "SYNTH_ASSETS_OPENAI_BASE_URLS",  # comma-separated
        "api_key_env": "SYNTH_ASSETS_API_KEY_ENV",
        "max_concurrency": "SYNTH_ASSETS_MAX_CONCURRENCY",
        "cache_path": "SYNTH_ASSETS_GENERATION_CACHE",
        "vllm_executable": "SYNTH_ASSETS_VLLM_EXECUTABLE",
        "engine_batch_size": "SYNTH_ASSETS_ENGINE_BATCH_SIZE",
        "instance_dir": "DAGSTER_HOME",
        "service_idle_s": "SYNTH_ASSETS_SERVICE_IDLE_S",
        **COST_SETTINGS_ENV,  # throughput and prices
    }),
    # Every curation setting, under the name SYNTH_ASSETS_<FIELD>.
    "curation": (CurationResource, {name: f"SYNTH_ASSETS_{name.upper()}" for name in CurationResource.model_fields}),
    "export": (ExportSettings, {
        "export_dir": "SYNTH_ASSETS_EXPORT_DIR",
        "validation_ratio": "SYNTH_ASSETS_VALIDATION_RATIO",
        "include_provenance": "SYNTH_ASSETS_EXPORT_PROVENANCE",
        "hub_repo": HUB_REPO_ENV,
        "blocked_documents": "SYNTH_ASSETS_EXPORT_BLOCKED_DOCUMENTS",
        "eval_sets": EVAL_SETS_ENV,  # comma-separated
        "drift_limit": "SYNTH_ASSETS_DATASET_DRIFT_LIMIT",
        "buckets": "SYNTH_ASSETS_DATASET_BUCKETS",
    }),
    "review": (ReviewSettings, {
        "sample_size": "SYNTH_ASSETS_REVIEW_SAMPLE_SIZE",
        "random_share": "SYNTH_ASSETS_REVIEW_RANDOM_SHARE",
        "page_url": "SYNTH_ASSETS_REVIEW_PAGE_URL",
        "password_env": "SYNTH_ASSETS_REVIEW_PASSWORD_ENV",
        "allowed_hosts": "SYNTH_ASSETS_REVIEW_ALLOWED_HOSTS",  # comma-separated
        "lock_wait_s": "SYNTH_ASSETS_REVIEW_LOCK_WAIT_S",
        "human_data_dir": "SYNTH_ASSETS_HUMAN_DATA_DIR",
        "human_ratio": "SYNTH_ASSETS_HUMAN_RATIO",
    }),
}
# docling's layout models for PDFs: the first of these naming an existing folder.
LAYOUT_MODELS_ENV = ("SYNTH_ASSETS_DOCLING_ARTIFACTS", "DOCLING_ARTIFACTS_PATH")
CATCH_UP_CRON_ENV = "SYNTH_ASSETS_CATCH_UP_CRON"
DEFAULT_CATCH_UP_CRON = "0 2 * * *"  # 02:00 every night
SENSOR_INTERVAL_ENV = "SYNTH_ASSETS_SENSOR_INTERVAL_S"
DEFAULT_SENSOR_INTERVAL_S = 30
# How launched runs execute their steps (jobs.build_executor): in_process, celery on a
# worker pool whose broker and result backend are these Redis URLs, or k8s (a Kubernetes
# Job per step); docs/DEPLOYMENT.md.
EXECUTOR_ENV = "SYNTH_ASSETS_EXECUTOR"
CELERY_BROKER_ENV = "SYNTH_ASSETS_CELERY_BROKER"
CELERY_BACKEND_ENV = "SYNTH_ASSETS_CELERY_BACKEND"
DEFAULT_CELERY_URL = "redis://localhost:6379/0"
# `make migrate` (synth_assets/migrate.py) copies the embedded project into the team
# profile: its tables from SYNTH_ASSETS_DUCKDB_PATH, its Dagster instance from this folder.
MIGRATE_FROM_DAGSTER_HOME_ENV = "SYNTH_ASSETS_MIGRATE_FROM_DAGSTER_HOME"
DEFAULT_MIGRATE_FROM_DAGSTER_HOME = ".dagster_home"

# A corpus shard's own tables, exports and reply cache (docs/DEPLOYMENT.md, "Corpus
# shards"), unless set: two shards' runs never write the same DuckDB file.
SHARD_DATA_DIR = "data/shards"
SHARD_DEFAULTS = {
    "SYNTH_ASSETS_DUCKDB_PATH": "synth_assets.duckdb",
    "SYNTH_ASSETS_EXPORT_DIR": "exports",
    "SYNTH_ASSETS_GENERATION_CACHE": "generation_cache.duckdb",
}

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def shard_environment(environ: Mapping[str, str]) -> Mapping[str, str]:
    """The environment with a corpus shard's defaults filled in (SYNTH_ASSETS_CORPUS_SHARD
    set): its DuckDB file, exports and cache under data/shards/<shard>/. A shard is one
    sub-folder name of the documents folder."""
    shard = environ.get(CORPUS_SHARD_ENV, "").strip().rstrip("/")  # `emea/`, as a shell completes it
    if not shard:
        return {name: value for name, value in environ.items() if name != CORPUS_SHARD_ENV}
    if shard in {".", ".."} or "/" in shard or "\\" in shard or shard.startswith("."):
        raise ValueError(f"{CORPUS_SHARD_ENV}={shard!r} is not valid: name one sub-folder of the documents folder")
    defaults = {name: f"{SHARD_DATA_DIR}/{shard}/{leaf}" for name, leaf in SHARD_DEFAULTS.items()}
    return {**defaults, **environ, CORPUS_SHARD_ENV: shard}


@dataclass(frozen=True)
class Settings:
    """The configured resources and the automation settings."""

    resources: dict[str, dg.ConfigurableResource] = field(default_factory=dict)
    single_run_min_documents: int = DEFAULT_SINGLE_RUN_MIN_DOCUMENTS
    catch_up_cron: str = DEFAULT_CATCH_UP_CRON
    sensor_interval_s: int = DEFAULT_SENSOR_INTERVAL_S
    executor: dg.ExecutorDefinition = dg.in_process_executor
    migrate_from_dagster_home: str = DEFAULT_MIGRATE_FROM_DAGSTER_HOME

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults, overridden by the variables that are set. A value that does not fit its
        setting fails here, naming the variable."""
        environ = shard_environment(os.environ if environ is None else environ)
        models = find_layout_models_dir(environ.get(name, "") for name in LAYOUT_MODELS_ENV)
        found = {"documents": {"layout_models_dir": str(models) if models else None}}
        resources = {key: resource_from_env(resource, variables, environ, **found.get(key, {}))
                     for key, (resource, variables) in ENVIRONMENT.items()}
        try:
            resources["generation"].task_shares
        except ValueError as error:
            raise ValueError(f"{TASKS_ENV}={environ.get(TASKS_ENV, '')!r} is not valid: {error}") from None
        resources["generation"].check_cost_settings()  # a price or throughput must be positive
        return cls(
            resources=resources,
            single_run_min_documents=(
                parse_single_run_min_documents(environ[SINGLE_RUN_MIN_DOCUMENTS_ENV])
                if SINGLE_RUN_MIN_DOCUMENTS_ENV in environ
                else default_single_run_min_documents(resources["generation"].uses_a_model)),
            catch_up_cron=environ.get(CATCH_UP_CRON_ENV, DEFAULT_CATCH_UP_CRON),
            sensor_interval_s=_convert(int, environ.get(SENSOR_INTERVAL_ENV, str(DEFAULT_SENSOR_INTERVAL_S)),
                                       SENSOR_INTERVAL_ENV),
            executor=build_executor(
                _convert(Literal[IN_PROCESS_EXECUTOR, CELERY_EXECUTOR, K8S_EXECUTOR],
                         environ.get(EXECUTOR_ENV, IN_PROCESS_EXECUTOR), EXECUTOR_ENV),
                environ.get(CELERY_BROKER_ENV, DEFAULT_CELERY_URL), environ.get(CELERY_BACKEND_ENV, DEFAULT_CELERY_URL)),
            migrate_from_dagster_home=environ.get(MIGRATE_FROM_DAGSTER_HOME_ENV, DEFAULT_MIGRATE_FROM_DAGSTER_HOME),
        )


def resource_from_env(resource: type[dg.ConfigurableResource], variables: dict[str, str],
                      environ: Mapping[str, str], **values: Any) -> dg.ConfigurableResource:
    """The resource with its defaults, `values`, and each field whose variable is set
    converted to the field's type."""
    values.update({name: _convert(resource.model_fields[name].annotation, environ[variable], variable)
                   for name, variable in variables.items() if variable in environ})
    return resource(**values)


def _convert(kind: Any, text: str, variable: str) -> Any:
    text = text.strip()
    options = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # `X | None`: empty means None
        if not text:
            return None
        kind = next(option for option in options if option is not type(None))
        options = typing.get_args(kind)
    try:
        if typing.get_origin(kind) is Literal:
            if text not in options:
                raise ValueError(f"expected one of {', '.join(map(str, options))}")
            return text
        if typing.get_origin(kind) is list:  # comma-separated
            return [_convert(options[0], item, variable) for item in text.split(",") if item.strip()]
        if kind is bool:
            if text.lower() not in _TRUE | _FALSE:
                raise ValueError("expected 1/0, true/false, yes/no or on/off")
            return text.lower() in _TRUE
        return kind(text)
    except ValueError as error:
        name = getattr(kind, "__name__", str(kind))
        raise ValueError(f"{variable}={text!r} is not a valid {name}: {error}") from None
