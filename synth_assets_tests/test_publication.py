"""Gates that really gate: only vetted rows reach a published dataset, the dataset is
checked before it is published, and nothing to learn from is a status, not a crash.
Every test goes through real runs (run_all on the real definitions)."""

from __future__ import annotations

import shutil
from pathlib import Path

import datasets
import pytest

from synth_assets.core.exporting import LATEST_FILE
from synth_assets.core.formats import split_documents, split_note
from synth_assets.definitions import build_definitions
from synth_assets.resources.export import ExportSettings
from synth_assets.run import format_summary, run_all
from synth_assets_tests.conftest import EXAMPLE_DOCUMENTS

LOREM = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
         "et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris").split()
# Lorem-ipsum filler: every pair it gives is rejected as low information, so the retention
# gate blocks the document.
FILLER = "\n\n".join(
    f"## Part {i}\n\n" + " ".join(LOREM[i:] + LOREM[:i]).capitalize() + ". " + " ".join(LOREM[::-1][i:]) + "."
    for i in range(12)
)


class RecordingHub:
    """A fake Hub client: records every call, uploads nothing."""

    calls: list[tuple] = []

    def create_repo(self, *args, **kwargs):
        self.calls.append(("create_repo", args, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        return f"commit-{len(self.calls)}"


class RecordingExport(ExportSettings):
    def hub_client(self, token: str):
        return RecordingHub()


def exported_documents(summary: dict) -> set[str]:
    rows = datasets.load_from_disk(str(Path(summary["export_dir"]) / "alpaca" / "hf"))
    return set(rows["train"]["document_id"]) | set(rows["validation"]["document_id"])


def test_a_document_changed_so_that_a_check_blocks_it_leaves_the_next_published_dataset(
        pipeline_resources, documents_dir, instance):
    defs = build_definitions(pipeline_resources)
    first = run_all(defs, instance, show_progress=False)
    assert "wiki.md" in exported_documents(first)

    (documents_dir / "wiki.md").write_text("# Notes\n\n" + FILLER + "\n")
    second = run_all(defs, instance, show_progress=False)
    assert "wiki.md" in second["blocked_by_checks"]
    assert second["published_version"] != first["published_version"]
    assert "wiki.md" not in exported_documents(second)
    assert "blocked by checks" in second["excluded_documents"]["wiki.md"]
    card = (Path(second["export_dir"]) / "README.md").read_text()
    assert "`wiki.md`: blocked by checks" in card
    assert "wiki.md: blocked by checks" in format_summary(second, 1.0)


def test_a_blocked_document_keeps_its_last_good_rows_only_when_asked(pipeline_resources, documents_dir, instance):
    resources = {**pipeline_resources,
                 "export": ExportSettings(export_dir=pipeline_resources["export"].export_dir,
                                          blocked_documents="keep_last_good")}
    defs = build_definitions(resources)
    first = run_all(defs, instance, show_progress=False)
    (documents_dir / "wiki.md").write_text("# Notes\n\n" + FILLER + "\n")
    second = run_all(defs, instance, show_progress=False)
    assert "wiki.md" in second["blocked_by_checks"]
    assert second["excluded_documents"] == {}, second["excluded_documents"]
    assert second["published_version"] == first["published_version"]  # the same vetted rows as before


def test_a_failing_dataset_check_leaves_latest_and_the_hub_untouched(
        pipeline_resources, documents_dir, instance, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "test-token")
    RecordingHub.calls = []
    export_dir = Path(pipeline_resources["export"].export_dir)
    resources = {**pipeline_resources, "export": RecordingExport(export_dir=str(export_dir), hub_repo="me/data")}
    defs = build_definitions(resources)
    first = run_all(defs, instance, show_progress=False)
    assert first["export_ok"] and (export_dir / LATEST_FILE).read_text().strip() == first["published_version"]
    assert [call[0] for call in RecordingHub.calls] == ["create_repo", "upload_folder"]
    hub_calls = list(RecordingHub.calls)

    # A second document asking the same questions, and a cross-document dedup that misses
    # them: the dataset check sees the same question twice and must stop publication.
    shutil.copy(documents_dir / "wiki.md", documents_dir / "wiki copy.md")
    monkeypatch.setattr("synth_assets.assets.export.cross_document_duplicates", lambda pairs: {})
    second = run_all(defs, instance, show_progress=False)
    assert not second["export_ok"] and "training_dataset_has_no_cross_document_duplicates" in second["export_error"]
    assert (export_dir / LATEST_FILE).read_text().strip() == first["published_version"]
    assert second["published_version"] == first["published_version"]
    assert RecordingHub.calls == hub_calls
    assert "NOT published" in format_summary(second, 1.0)


def test_an_all_blocked_corpus_ends_with_a_summary_not_an_exception(pipeline_resources, documents_dir, instance):
    for path in documents_dir.iterdir():
        path.unlink()
    shutil.copy(EXAMPLE_DOCUMENTS / "lorem_ipsum.docx", documents_dir / "lorem_ipsum.docx")
    summary = run_all(build_definitions(pipeline_resources), instance, show_progress=False)
    assert list(summary["blocked_by_checks"]) == ["lorem_ipsum.docx"]
    assert summary["export_error"] is None and summary["published_version"] == "none"
    assert not summary["export_ok"]  # nothing published: make run exits 1
    text = format_summary(summary, 1.0)
    assert "none published: no document has vetted rows" in text
    assert not (Path(pipeline_resources["export"].export_dir) / LATEST_FILE).exists()


def test_a_powerpoint_without_text_ends_as_no_text(pipeline_resources, documents_dir, instance):
    from pptx import Presentation
    from pptx.enum.shapes import MSO_SHAPE
    from pptx.util import Inches

    for path in documents_dir.iterdir():
        path.unlink()
    deck = Presentation()
    for _ in range(2):
        slide = deck.slides.add_slide(deck.slide_layouts[6])  # the blank layout
        slide.shapes.add_shape(MSO_SHAPE.RECTANGLE, Inches(1), Inches(1), Inches(2), Inches(1))
    deck.save(documents_dir / "shapes only.pptx")
    summary = run_all(build_definitions(pipeline_resources), instance, show_progress=False)
    # Parsing already stops it with a message naming the file (not an internal KeyError).
    [(key, reason)] = summary["failed"].items()
    assert reason == "shapes only.pptx: no text could be extracted (scanned image or empty document)"
    assert summary["chunks"] == 0 and summary["pairs_generated"] == 0
    assert summary["export_error"] is None and summary["published_version"] == "none"


def test_the_validation_split_holds_near_the_asked_share_of_rows():
    # Nine documents of very different sizes, as in the examples.
    sizes = {"a": 40, "b": 20, "c": 12, "d": 10, "e": 8, "f": 6, "g": 5, "h": 3, "i": 2}
    rows = [d for d, n in sizes.items() for _ in range(n)]
    splits = split_documents(rows, 0.1, seed=42)
    share = sum(splits[d] == "validation" for d in rows) / len(rows)
    assert abs(share - 0.1) <= 0.05 and set(splits.values()) == {"train", "validation"}
    assert split_note(rows, splits, 0.1) == ""
    # Two documents, one large: whole documents cannot get near 10%; the note says so.
    few = ["big"] * 30 + ["small"] * 20
    assert "Too few documents" in split_note(few, split_documents(few, 0.1, seed=42), 0.1)


@pytest.mark.parametrize("ratio", [0.0, 0.5])
def test_the_split_keeps_documents_whole(ratio):
    rows = ["a"] * 5 + ["b"] * 3 + ["c"] * 4
    splits = split_documents(rows, ratio, seed=1)
    assert set(splits) == {"a", "b", "c"}
    assert ("validation" in splits.values()) == (ratio > 0)


def test_a_document_whose_new_version_fails_leaves_the_next_published_dataset(
        pipeline_resources, documents_dir, instance):
    defs = build_definitions(pipeline_resources)
    first = run_all(defs, instance, show_progress=False)
    assert "wiki.md" in exported_documents(first)

    (documents_dir / "wiki.md").write_bytes(b"# Notes\n\nLatin-1: caf\xe9 cr\xe8me.\n")  # fails to parse: not UTF-8
    second = run_all(defs, instance, show_progress=False)
    assert "wiki.md" in second["failed"], second
    assert "wiki.md" not in exported_documents(second)
    assert second["excluded_documents"]["wiki.md"] == (
        "its file or its pairs changed since its rows were formatted and checked")
