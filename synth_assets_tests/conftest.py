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



def pytest_collection_finish(session) -> None:
    """The objects of the imports, which live as long as the session, frozen out of the
    garbage collector's way: the collection at the end of each module
    (no_dagster_context_left_open) then costs 0.1 s, not 0.45 s."""
    import gc

    gc.collect()
    gc.freeze()


def dagster_context_left_open() -> bool:
    """Whether a Dagster test context (schedule, sensor, asset) was left unclosed, and was freed.

    Such a context that reached its instance holds it entered; when the garbage collector
    frees it, whenever that is, it puts back as Dagster's current instance state one that
    closed long ago, and a later test fails at random with "Attempted to resolve undefined
    DagsterInstance weakref". Collecting now makes that happen here. Clears what it finds.
    """
    import gc

    from dagster._core.storage.defs_state.base import DefsStateStorage, _current_storage

    gc.collect()
    if DefsStateStorage.get() is None:
        return False
    _current_storage.set(None)  # keep the leak from failing the modules after this one
    return True


@pytest.fixture(scope="module", autouse=True)
def no_dagster_context_left_open():
    """Fails a module that leaves a Dagster test context open: close them with `with`."""
    yield
    if dagster_context_left_open():
        pytest.fail("a Dagster context built in this module was left open: its instance was "
                    "exited by the garbage collector, not by `with`", pytrace=False)
