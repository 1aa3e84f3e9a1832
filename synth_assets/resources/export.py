"""Where and how the training dataset is written."""

from __future__ import annotations

import os

import dagster as dg

EXPORT_DIR_ENV = "SYNTH_ASSETS_EXPORT_DIR"
DEFAULT_EXPORT_DIR = "data/exports"
VALIDATION_RATIO_ENV = "SYNTH_ASSETS_VALIDATION_RATIO"
DEFAULT_VALIDATION_RATIO = 0.1
SPLIT_SEED = 42


class ExportSettings(dg.ConfigurableResource):
    """The export folder and the train/validation split (made by document, seeded)."""

    export_dir: str = DEFAULT_EXPORT_DIR
    validation_ratio: float = DEFAULT_VALIDATION_RATIO
    seed: int = SPLIT_SEED

    @classmethod
    def from_env(cls) -> "ExportSettings":
        return cls(
            export_dir=os.environ.get(EXPORT_DIR_ENV, DEFAULT_EXPORT_DIR),
            validation_ratio=float(os.environ.get(VALIDATION_RATIO_ENV, DEFAULT_VALIDATION_RATIO)),
        )
