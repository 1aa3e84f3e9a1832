"""Pruning old dataset versions: the newest and the published versions stay whole and
loadable, the store keeps exactly what they and the next build need."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest

from synth_assets.core.exporting import publish
from synth_assets.core.pruning import prune_versions
from synth_assets.core.shards import SHARD_STORE, read_manifest, shards_of
from synth_assets_tests.test_exports import export, kept_pairs, load

FORMATS = ("alpaca", "sharegpt", "messages")


def _store_files(export_dir: Path) -> set[str]:
    store = export_dir / SHARD_STORE
    return {f.relative_to(store).as_posix() for f in store.rglob("*") if f.is_file()}


def _listed(export_dir: Path, version: str) -> set[str]:
    return {p for s in shards_of(read_manifest(export_dir / version)) for p in s.files()}


def three_versions(tmp_path: Path) -> tuple[Path, list[str]]:
    """Three versions, oldest first: all documents; alpha.md's answers changed; changed
    again, and gamma.docx gone."""
    pairs = kept_pairs()
    changed, again = pairs.copy(), pairs.copy()
    changed.loc[changed["document_id"] == "alpha.md", "answer"] = "alpha.md now says otherwise."
    again.loc[again["document_id"] == "alpha.md", "answer"] = "alpha.md says a third thing."
    results = [export(tmp_path, pairs), export(tmp_path, changed),
               export(tmp_path, again[again["document_id"] != "gamma.docx"])]
    for age, result in zip((300, 200, 100), results):  # written minutes apart, as builds are
        manifest = result.path / "manifest.json"
        os.utime(manifest, (manifest.stat().st_atime, manifest.stat().st_mtime - age))
    return tmp_path / "exports", [r.version for r in results]


def test_pruning_keeps_the_newest_and_the_published_versions_loadable_and_frees_the_rest(tmp_path):
    export_dir, (oldest, middle, newest) = three_versions(tmp_path)
    publish(export_dir, oldest)
    rows = {v: {fmt: load(type("R", (), {"path": export_dir / v}), fmt)["train"].to_list() for fmt in FORMATS}
            for v in (oldest, newest)}
    only_middle = _listed(export_dir, middle) - _listed(export_dir, oldest) - _listed(export_dir, newest)
    assert only_middle  # alpha.md's changed answers, in no other version

    dry = prune_versions(export_dir, 1, {oldest}, set(), dry_run=True)
    assert dry.versions_deleted == [middle] and (export_dir / middle).is_dir() and only_middle <= _store_files(export_dir)

    pruned = prune_versions(export_dir, 1, {oldest}, set())
    assert pruned.versions_deleted == [middle] and sorted(pruned.versions_kept) == sorted([oldest, newest])
    assert pruned.files_deleted == dry.files_deleted == len(only_middle) and pruned.bytes_freed > 0
    assert not (export_dir / middle).exists()
    assert _store_files(export_dir) == _listed(export_dir, oldest) | _listed(export_dir, newest)
    for version, formats in rows.items():  # as they were
        for fmt, expected in formats.items():
            assert load(type("R", (), {"path": export_dir / version}), fmt)["train"].to_list() == expected


def test_pruning_keeps_the_shards_the_next_build_starts_from_and_refuses_to_keep_none(tmp_path):
    export_dir, (oldest, middle, newest) = three_versions(tmp_path)
    current = _listed(export_dir, middle)  # say the last build's check failed on it, after newest was written
    prune_versions(export_dir, 1, set(), current)
    assert sorted(p.name for p in export_dir.iterdir() if not p.name.startswith(".")) == sorted([SHARD_STORE, newest])
    assert _store_files(export_dir) == _listed(export_dir, newest) | current
    with pytest.raises(ValueError, match="at least 1"):
        prune_versions(export_dir, 0, set(), set())


def test_make_prune_refuses_while_a_run_is_in_progress(tmp_path, monkeypatch, capsys):
    from synth_assets import definitions, prune
    from synth_assets.resources.export import ExportSettings
    from synth_assets.resources.storage import PipelineDatabase

    export_dir, (oldest, middle, newest) = three_versions(tmp_path)
    monkeypatch.setitem(definitions.settings.resources, "export", ExportSettings(export_dir=str(export_dir)))
    monkeypatch.setitem(definitions.settings.resources, "duckdb",
                        PipelineDatabase(database=str(tmp_path / "synth_assets.duckdb")))
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:  # DAGSTER_HOME, for the command
        under_way = dict(status=dg.DagsterRunStatus.STARTED)
        documents = instance.add_run(dg.DagsterRun(job_name="process_documents", run_id="documents-run", **under_way))
        automation = instance.add_run(dg.DagsterRun(
            job_name="__ASSET_JOB", run_id="automation-run", asset_selection=frozenset({dg.AssetKey("training_dataset")}),
            **under_way))
        build = instance.add_run(dg.DagsterRun(job_name="build_training_dataset", run_id="build-run", **under_way))
        for run, name in ((build, "build_training_dataset"), (automation, "__ASSET_JOB")):  # newest first
            assert prune.main(["--keep", "1"]) == 2
            assert f"{run.run_id} ({name}) builds the dataset and is in progress" in capsys.readouterr().err
            assert (export_dir / oldest).is_dir() and (export_dir / middle).is_dir()
            instance.report_run_canceled(run)

        # A run over documents alone writes no version: pruning goes ahead beside it.
        assert instance.get_run_by_id(documents.run_id).status == dg.DagsterRunStatus.STARTED
        assert prune.main(["--keep", "1", "--dry-run"]) == 0
        assert f"would delete {oldest}" in capsys.readouterr().out and (export_dir / oldest).is_dir()
        going = (_listed(export_dir, oldest) | _listed(export_dir, middle)) - _listed(export_dir, newest)
        assert prune.main(["--keep", "1"]) == 0
        assert f"deleted 2 version(s) and {len(going)} stored shard file(s)" in capsys.readouterr().out
        assert not (export_dir / oldest).exists() and (export_dir / newest).is_dir()


def test_make_prune_merged_prunes_the_merged_dataset_and_waits_for_a_merge(tmp_path, monkeypatch, capsys):
    from synth_assets import prune

    merged_dir, (oldest, middle, newest) = three_versions(tmp_path)  # laid out as a merged dataset is
    (merged_dir / "question_keys").mkdir()  # the merge's caches stay
    monkeypatch.setenv("SYNTH_ASSETS_MERGED_DIR", str(merged_dir))
    publish(merged_dir, middle)
    (tmp_path / "merge_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "merge_home")) as instance:
        merge = instance.add_run(dg.DagsterRun(job_name="merge_shards", run_id="merge-run",
                                               status=dg.DagsterRunStatus.STARTED))
        assert prune.main(["--keep", "1", "--merged"]) == 2
        assert "merge-run (merge_shards)" in capsys.readouterr().err and (merged_dir / oldest).is_dir()
        instance.report_run_canceled(merge)
        assert prune.main(["--keep", "1", "--merged"]) == 0
    assert f"deleted {oldest}" in capsys.readouterr().out
    assert sorted(p.name for p in merged_dir.iterdir() if p.is_dir()) == sorted(
        [SHARD_STORE, "question_keys", middle, newest])
    assert _store_files(merged_dir) == _listed(merged_dir, middle) | _listed(merged_dir, newest)
