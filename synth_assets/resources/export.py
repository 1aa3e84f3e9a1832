"""Where and how the training dataset is written."""

from __future__ import annotations

import os
from typing import Literal

import dagster as dg
from pydantic import Field

from synth_assets.core.exporting import ExportOptions
from synth_assets.core.shards import SHARD_BUCKETS

DEFAULT_EXPORT_DIR = "data/exports"
DEFAULT_VALIDATION_RATIO = 0.1
HUB_REPO_ENV = "SYNTH_ASSETS_HF_REPO"
EVAL_SETS_ENV = "SYNTH_ASSETS_EVAL_SETS"
SPLIT_SEED = 42


class ExportSettings(dg.ConfigurableResource):
    """The export folder, the train/validation split (by document, seeded), and what goes
    in the files. Pushing to the Hugging Face Hub happens only when `hub_repo` is set and
    a token is in the variable named by `hub_token_env`."""

    export_dir: str = DEFAULT_EXPORT_DIR
    validation_ratio: float = DEFAULT_VALIDATION_RATIO
    seed: int = SPLIT_SEED
    include_provenance: bool = True
    system_prompt: str | None = None
    license: str = "other"
    dataset_name: str = "synth_assets"
    hub_repo: str | None = None
    hub_token_env: str = "HF_TOKEN"
    hub_private: bool = True
    # A document whose new pairs a blocking check stopped: "leave_out" (the default) takes
    # it out of the next dataset, "keep_last_good" keeps the rows it last passed with.
    # Either way the dataset card and the asset's metadata list it.
    blocked_documents: Literal["leave_out", "keep_last_good"] = "leave_out"
    # Evaluation sets the dataset must not contain (core/decontamination.py): local files,
    # `path` or `path::column` (default column `question`); JSONL, Parquet, CSV, or a
    # `datasets` folder saved with save_to_disk. Empty: no decontamination.
    eval_sets: list[str] = []
    # How far the exported questions' words may drift from the word weights frozen when
    # the dedup index's generation began before a build takes every document in again
    # (synth_assets/dataset_index.py; total variation distance, 0 to 1).
    drift_limit: float = Field(default=0.2, gt=0, le=1)
    # Buckets of documents a version's rows are sharded into (core/shards.py): an added
    # document rewrites one bucket's files, 1/buckets of the rows. Around a hundred
    # documents a bucket is right; a change begins a new index generation (a whole build).
    buckets: int = Field(default=SHARD_BUCKETS, ge=1, le=65536)

    def options(self) -> ExportOptions:
        return ExportOptions(
            validation_ratio=self.validation_ratio,
            seed=self.seed,
            include_provenance=self.include_provenance,
            system_prompt=self.system_prompt,
            license=self.license,
            dataset_name=self.dataset_name,
        )

    def push_to_hub(self, folder: str, log) -> str | None:
        """Upload one export folder to the Hub dataset repository; None when not configured."""
        if not self.hub_repo:
            return None
        token = os.environ.get(self.hub_token_env)
        if not token:
            raise dg.Failure(
                f"{HUB_REPO_ENV} is set to {self.hub_repo!r} but {self.hub_token_env} holds no token"
            )
        api = self.hub_client(token)
        api.create_repo(self.hub_repo, repo_type="dataset", private=self.hub_private, exist_ok=True)
        commit = api.upload_folder(folder_path=folder, repo_id=self.hub_repo, repo_type="dataset")
        log.info(f"pushed {folder} to the Hub dataset {self.hub_repo}")
        return str(commit)

    def hub_client(self, token: str):
        """The Hub API the export is pushed with (tests replace it with one that records calls)."""
        from huggingface_hub import HfApi

        return HfApi(token=token)
