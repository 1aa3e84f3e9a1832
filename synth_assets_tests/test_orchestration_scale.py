"""What keeps the documents sensor and `make run`'s look cheap at 100,000 documents
(issue 29; benchmarks/bench_orchestration.py measures them): a file that has not moved
since it was fingerprinted is not read again, and the sensor's cursor does not hold the
folder state (Dagster writes the cursor into the ticks table at every tick)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import pandas as pd

from synth_assets.core.documents import file_fingerprint, file_sha256
from synth_assets.planning import changed_documents, stored_state
from synth_assets.resources.documents import DocumentsFolder
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.sensors import build_documents_sensor, kept_folder_state
from synth_assets.storage import RAW_DOCUMENTS_TABLE, replace_partition_rows

documents_sensor = build_documents_sensor(minimum_interval_seconds=30, single_run_min_documents=10)


def _folder(tmp_path: Path, count: int) -> Path:
    folder = tmp_path / "documents"
    folder.mkdir()
    for i in range(count):
        (folder / f"doc_{i:03d}.md").write_text(f"# Document {i}\n\nText of document {i}.\n", encoding="utf-8")
    return folder


def test_make_runs_look_reads_only_files_that_moved(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 5)
    files = DocumentsFolder(path=str(folder)).discover()
    database = PipelineDatabase(database=str(tmp_path / "db.duckdb"))
    with database.get_connection() as con:  # what raw_documents records for each file
        for key, path in files.items():
            replace_partition_rows(con, RAW_DOCUMENTS_TABLE, key, pd.DataFrame([file_fingerprint(path, folder)]))
    read: list[str] = []

    def sha256(path: Path) -> str:
        read.append(path.name)
        return file_sha256(path)

    assert changed_documents(files, stored_state(database), sha256) == []
    assert read == []  # every file as fingerprinted: none read again

    touched, edited = files["doc_001.md"], files["doc_002.md"]
    os.utime(touched, ns=(time.time_ns(), time.time_ns() + 10**9))  # same bytes, new mtime
    edited.write_text("# Document 2\n\nIts text was edited since.\n", encoding="utf-8")
    assert changed_documents(files, stored_state(database), sha256) == ["doc_002.md"]
    assert sorted(read) == ["doc_001.md", "doc_002.md"]  # read because they moved; only one changed


def _tick(instance: dg.DagsterInstance, resources: dict, cursor: str | None) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return documents_sensor(context)


def test_the_sensors_cursor_names_the_folder_state_kept_in_the_instance(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 40)
    resources = {"documents": DocumentsFolder(path=str(folder)),
                 "duckdb": PipelineDatabase(database=str(tmp_path / "db.duckdb"))}
    with dg.instance_for_test() as instance:
        first = _tick(instance, resources, None)
        assert len(first.run_requests) == 1  # 40 new neighbours: one run over all of them
        # A few bytes whatever the number of files (the state was about 140 bytes a file).
        assert len(first.cursor) < 64
        kept = kept_folder_state(instance, first.cursor)
        assert sorted(kept) == sorted(resources["documents"].discover())

        # A restarted daemon with that cursor: nothing changed, nothing asked, same cursor.
        again = _tick(instance, resources, first.cursor)
        assert not again.run_requests and again.cursor == first.cursor

        (folder / "doc_007.md").write_text("# Document 7\n\nNew text.\n", encoding="utf-8")
        changed = _tick(instance, resources, again.cursor)
        assert [request.partition_key for request in changed.run_requests] == ["doc_007.md"]
        assert changed.cursor != again.cursor
        assert kept_folder_state(instance, changed.cursor)["doc_007.md"]["sha256"] == file_sha256(
            folder / "doc_007.md")
        # The state an earlier cursor named is gone: that cursor starts again from the
        # database (empty here, so every file is new again), never from a wrong state.
        assert kept_folder_state(instance, again.cursor) is None
        assert len(_tick(instance, resources, again.cursor).run_requests) == 1
