"""Gates that really gate: only vetted rows reach a published dataset, the dataset is
checked before it is published, and nothing to learn from is a status, not a crash.
Every test goes through real runs (run_all on the real definitions)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import dagster as dg
import datasets
import duckdb
import pytest

from synth_assets.core.documents import document_key
from synth_assets.core.exporting import LATEST_FILE, publish, published_version
from synth_assets.core.formats import split_documents, split_note
from synth_assets.core.parsing import NO_EXTRACTABLE_TEXT
from synth_assets.definitions import build_definitions
from synth_assets.resources.documents import DocumentsFolder
from synth_assets.resources.export import ExportSettings
from synth_assets.run import format_summary, run_all
from synth_assets_tests.conftest import EXAMPLE_DOCUMENTS
from synth_assets_tests.test_exports import export

DOCLING_DATA = Path(__file__).parent / "data" / "docling"

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
    rows = datasets.load_dataset(summary["export_dir"], "alpaca")
    return {d for split in rows.values() for d in split["document_id"]}


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
    monkeypatch.setattr("synth_assets.dataset_index.decide_batch",
                        lambda batch, *args, **kwargs: [(None, None, True)] * len(batch))
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


def _shapes_only_deck(path: Path) -> None:
    """A PowerPoint whose slides hold only shapes: docling extracts no text item at all."""
    from pptx import Presentation
    from pptx.enum.shapes import MSO_SHAPE
    from pptx.util import Inches

    deck = Presentation()
    for _ in range(2):
        slide = deck.slides.add_slide(deck.slide_layouts[6])  # the blank layout
        slide.shapes.add_shape(MSO_SHAPE.RECTANGLE, Inches(1), Inches(1), Inches(2), Inches(1))
    deck.save(path)


def _latest_metadata(instance, asset: str, partition: str) -> dict:
    [record] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1).records
    return {key: value.value for key, value in record.asset_materialization.metadata.items()}


def test_documents_without_text_end_as_no_text(pipeline_resources, documents_dir, instance):
    for name in ("asciidoc_02.asciidoc", "word_sample.docx"):
        (documents_dir / name).unlink()
    # docling's own text-less sample: one slide holding only a title.
    shutil.copy(DOCLING_DATA / "powerpoint_bad_text.pptx", documents_dir / "powerpoint_bad_text.pptx")
    _shapes_only_deck(documents_dir / "shapes only.pptx")
    defs = build_definitions(pipeline_resources)
    first = run_all(defs, instance, show_progress=False)

    assert first["failed"] == {} and first["blocked_by_checks"] == {}
    assert first["no_text"] == {
        "powerpoint_bad_text.pptx": "its 1 text item(s) are titles or headings only, with no body text",
        document_key("shapes only.pptx"): NO_EXTRACTABLE_TEXT,
    }, first["no_text"]
    no_text = list(first["no_text"])
    with duckdb.connect(pipeline_resources["duckdb"].database, read_only=True) as con:
        for table in ("document_chunks", "generated_qa_pairs", "filtered_qa_pairs", "alpaca_examples"):
            assert con.execute(f"SELECT count(*) FROM {table} WHERE document_id IN (SELECT unnest(?))",
                               [no_text]).fetchone()[0] == 0, table
    text = format_summary(first, 1.0)
    assert "  failed:          0\n" in text
    assert ("  no text:         2 (nothing to learn from: 0 pairs, not a failure)\n"
            "    - powerpoint_bad_text.pptx: its 1 text item(s) are titles or headings only") in text
    # The UI: the partition's status on parsed_documents and document_chunks.
    assert _latest_metadata(instance, "document_chunks", "powerpoint_bad_text.pptx")["status"] == (
        "no text to learn from: its 1 text item(s) are titles or headings only, with no body text")
    assert _latest_metadata(instance, "parsed_documents", no_text[1])["status"] == (
        f"no text to learn from: {NO_EXTRACTABLE_TEXT}")
    # The dataset holds wiki.md; the card lists the decks as "no text", not as failing.
    assert exported_documents(first) == {"wiki.md"} and first["excluded_documents"] == {}
    card = (Path(first["export_dir"]) / "README.md").read_text()
    assert "- `powerpoint_bad_text.pptx`: no text: its 1 text item(s) are titles or headings only" in card

    # Not a failure tried again on every run: up to date until the file changes.
    second = run_all(defs, instance, show_progress=False)
    assert second["processed"] == [] and second["no_text"] == first["no_text"]
    shutil.copy(EXAMPLE_DOCUMENTS / "powerpoint_sample.pptx", documents_dir / "powerpoint_bad_text.pptx")
    third = run_all(defs, instance, show_progress=False)
    assert third["processed"] == ["powerpoint_bad_text.pptx"] and list(third["no_text"]) == [no_text[1]]


def test_a_document_failing_at_raw_documents_leaves_the_next_published_dataset(
        pipeline_resources, documents_dir, instance):
    resources = {**pipeline_resources,
                 "documents": DocumentsFolder(path=str(documents_dir), max_file_mb=0.2)}
    defs = build_definitions(resources)
    first = run_all(defs, instance, show_progress=False)
    assert "wiki.md" in exported_documents(first)

    with (documents_dir / "wiki.md").open("a") as handle:  # now over the size limit
        handle.write("\n\nMore notes. " * 20000)
    second = run_all(defs, instance, show_progress=False)
    assert "over the limit" in second["failed"]["wiki.md"], second["failed"]
    assert "wiki.md" not in exported_documents(second)
    assert second["published_version"] != first["published_version"]
    reason = "its file failed at raw_documents (unreadable, too large or gone): its rows describe an older version"
    assert second["excluded_documents"] == {"wiki.md": reason}
    assert f"- `wiki.md`: {reason}" in (Path(second["export_dir"]) / "README.md").read_text()
    assert f"    - wiki.md: {reason}" in format_summary(second, 1.0)


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


# Writing and publishing a version (issue 28, item 11): LATEST is replaced whole, and two
# runs writing the same version both succeed.
def test_latest_is_replaced_whole_so_a_reader_never_sees_it_empty(tmp_path):
    exports = tmp_path / "exports"
    versions = [export(tmp_path).version, export(tmp_path, dataset_name="other").version]
    publish(exports, versions[0])
    reader = (exports / LATEST_FILE).open()  # a fine-tuner that opened LATEST just before
    publish(exports, versions[1])
    assert reader.read().strip() == versions[0]  # the file it opened was not rewritten under it
    reader.close()

    seen, done = set(), threading.Event()

    def read_while_publishing() -> None:
        while not done.is_set():
            seen.add(published_version(exports))

    thread = threading.Thread(target=read_while_publishing)
    thread.start()
    for number in range(300):
        publish(exports, versions[number % 2])
    done.set()
    thread.join()
    assert seen <= set(versions), seen  # never None (empty) nor a part of a version
    assert sorted(path.name for path in exports.iterdir() if path.is_file()) == [LATEST_FILE]  # no temp file left
    assert (exports / LATEST_FILE).stat().st_mode & 0o044 == 0o044  # readable by the team, as before


def test_two_runs_writing_the_same_version_both_succeed(tmp_path):
    start = threading.Barrier(2)
    results, errors = [], []

    def run() -> None:
        start.wait()  # both find the version missing, then both write it
        try:
            results.append(export(tmp_path))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({result.version for result in results}) == 1 and sorted(r.created for r in results) == [False, True]
    version = results[0].version
    # No staging folder or file left: the version and the shard store it links to.
    assert sorted(path.name for path in (tmp_path / "exports").iterdir()) == sorted([version, "shards"])
    assert not [path for path in (tmp_path / "exports" / "shards").rglob(".*")]
    assert datasets.load_dataset(str(tmp_path / "exports" / version), "alpaca")["train"].num_rows


class _ReformatsBetweenReads:
    """A connection that, right after training_dataset reads the Alpaca rows, has another
    connection re-format one document's ShareGPT rows (as a concurrent run would)."""

    def __init__(self, con, document_id: str) -> None:
        self._con, self._document_id = con, document_id

    def __getattr__(self, name):
        return getattr(self._con, name)

    def execute(self, query, *args):
        result = self._con.execute(query, *args)
        if query.startswith("SELECT * FROM alpaca_examples"):
            writer = self._con.cursor()  # another connection to the same database
            writer.execute("UPDATE sharegpt_examples SET source_digest = 'reformatted meanwhile' "
                           "WHERE document_id = ?", [self._document_id])
            writer.close()
        return result


def test_training_dataset_reads_the_alpaca_and_sharegpt_rows_in_one_snapshot(pipeline_resources, instance):
    """Issue 28 item 10: read in two statements, a document re-formatted between them looked
    made from different pairs and was left out of the dataset."""
    from contextlib import contextmanager

    from synth_assets.assets.export import training_dataset
    from synth_assets.resources.storage import PipelineDatabase

    run_all(build_definitions(pipeline_resources), instance, show_progress=False)
    database = pipeline_resources["duckdb"].database
    with duckdb.connect(database, read_only=True) as con:
        document_id = con.execute("SELECT min(document_id) FROM sharegpt_examples").fetchone()[0]

    class Interleaved(PipelineDatabase):
        @contextmanager
        def get_connection(self):
            with super().get_connection() as con:
                yield _ReformatsBetweenReads(con, document_id)

    resources = {**pipeline_resources, "duckdb": Interleaved(database=database)}
    result = dg.materialize([training_dataset], resources=resources, instance=instance)
    metadata = result.asset_materializations_for_node("training_dataset")[0].metadata
    assert document_id not in metadata["excluded_documents"].value
