"""Shared fixtures: a test Dagster instance and pipeline resources in a temp folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Tests run offline: nothing may reach a model hub, and GX sends no usage statistics.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

EXAMPLE_DOCUMENTS = Path(__file__).resolve().parents[1] / "examples" / "documents"


@pytest.fixture
def documents_dir(tmp_path: Path) -> Path:
    """A documents folder with a few small example documents of different formats."""
    folder = tmp_path / "documents"
    folder.mkdir()
    for name in ("wiki.md", "asciidoc_02.asciidoc", "word_sample.docx"):
        shutil.copy(EXAMPLE_DOCUMENTS / name, folder / name)
    return folder


@pytest.fixture
def pipeline_resources(tmp_path: Path, documents_dir: Path) -> dict:
    from synth_assets.resources.curation import CurationResource
    from synth_assets.resources.documents import DocumentsFolder
    from synth_assets.resources.export import ExportSettings
    from synth_assets.resources.generation import GenerationResource
    from synth_assets.resources.review import ReviewSettings
    from synth_assets.resources.storage import PipelineDatabase

    return {
        "documents": DocumentsFolder(path=str(documents_dir)),
        "duckdb": PipelineDatabase(database=str(tmp_path / "db" / "test.duckdb")),
        "generation": GenerationResource(),
        "curation": CurationResource(),
        "export": ExportSettings(export_dir=str(tmp_path / "exports")),
        # Defaults, not the environment: no human data unless a test sets a folder.
        "review": ReviewSettings(),
    }


@pytest.fixture
def instance():
    import dagster as dg

    with dg.instance_for_test() as test_instance:
        yield test_instance
