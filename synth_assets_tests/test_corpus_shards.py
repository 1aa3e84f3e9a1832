"""Corpus shards (issue 29): each sub-folder of the documents folder runs with its own
instance, tables and dataset, keeps the keys it would have unsharded, refuses another
shard's instance, and `make merge` makes one checked dataset of the shards' published
versions without a question twice."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import datasets
import pytest

from synth_assets.core.corpus_merge import merged_problems, plan_merge, question_key, row_question
from synth_assets.core.documents import discover_documents
from synth_assets.core.exporting import published_version
from synth_assets.core.shards import SHARD_STORE, read_manifest, read_shards, read_split, write_shard
from synth_assets.definitions import build_definitions
from synth_assets.merge import MERGED_DIR_ENV, SHARDS_DIR_ENV, build_merge_definitions, merge_all
from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME
from synth_assets.planning import claim_instance
from synth_assets.resources.documents import DocumentsFolder
from synth_assets.resources.export import ExportSettings
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.run import run_all
from synth_assets.settings import Settings
from synth_assets_tests.conftest import EXAMPLE_DOCUMENTS

SHARDS = {"a": ["wiki.md", "asciidoc_02.asciidoc"], "b": ["wiki.md", "word_sample.docx"]}


def test_a_shard_lists_its_sub_folder_under_the_keys_of_the_whole_corpus(tmp_path: Path):
    for shard, names in SHARDS.items():
        (tmp_path / shard).mkdir()
        for name in names:
            shutil.copy(EXAMPLE_DOCUMENTS / name, tmp_path / shard / name)
    whole = discover_documents(tmp_path)
    a = DocumentsFolder(path=str(tmp_path), shard="a").discover()
    assert len(a) == 2 and all(key.startswith("a__") for key in a)
    assert {k: whole[k] for k in a} == a  # the same keys and files as unsharded
    with pytest.raises(dg.Failure, match=r"corpus shard folder .*/c does not exist.*SYNTH_ASSETS_CORPUS_SHARD=c"):
        DocumentsFolder(path=str(tmp_path), shard="c").discover()


def test_a_shard_gets_its_own_tables_and_exports_unless_set():
    settings = Settings.from_env({"SYNTH_ASSETS_CORPUS_SHARD": "emea/"})
    assert settings.resources["documents"].shard == "emea"
    assert settings.resources["duckdb"].database == "data/shards/emea/synth_assets.duckdb"
    assert settings.resources["export"].export_dir == "data/shards/emea/exports"
    assert settings.resources["generation"].cache_path == "data/shards/emea/generation_cache.duckdb"
    chosen = Settings.from_env({"SYNTH_ASSETS_CORPUS_SHARD": "emea", "SYNTH_ASSETS_EXPORT_DIR": "/srv/emea"})
    assert chosen.resources["export"].export_dir == "/srv/emea"
    assert Settings.from_env({}).resources["duckdb"].database == "data/synth_assets.duckdb"
    with pytest.raises(ValueError, match="SYNTH_ASSETS_CORPUS_SHARD='../x' is not valid"):
        Settings.from_env({"SYNTH_ASSETS_CORPUS_SHARD": "../x"})


def test_a_shard_refuses_an_instance_that_holds_another_shards_documents(instance):
    instance.add_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME, ["a__wiki.md"])
    with pytest.raises(dg.Failure, match="holds documents of another shard.*a__wiki.md.*own DAGSTER_HOME"):
        claim_instance(instance, "b")
    claim_instance(instance, "a")
    claim_instance(instance, "a")  # its own: again and again
    with pytest.raises(dg.Failure, match="belongs to corpus shard 'a', not 'b'"):
        claim_instance(instance, "b")
    with pytest.raises(dg.Failure, match=r"belongs to corpus shard 'a', not '\(whole corpus\)'"):
        claim_instance(instance, None)


def test_every_format_names_the_same_first_question():
    question = "How often is the boiler inspected?"
    rows = [{"instruction": question, "input": "", "output": "x"},
            {"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": question}]},
            {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": question}]},
            {"prompt": question, "chosen": "x", "rejected": "y"},
            {"prompt": [{"role": "user", "content": question}], "chosen": [], "rejected": []}]
    assert {row_question(row) for row in rows} == {question}
    assert question_key("  How often is the BOILER\ninspected? ") == question_key(question)


def _run_shard(tmp_path: Path, shard: str) -> dict:
    documents = tmp_path / "corpus"
    resources = {
        "documents": DocumentsFolder(path=str(documents), shard=shard),
        "duckdb": PipelineDatabase(database=str(tmp_path / "shards" / shard / "synth_assets.duckdb")),
        "export": ExportSettings(export_dir=str(tmp_path / "shards" / shard / "exports")),
    }
    (tmp_path / "instances" / shard).mkdir(parents=True)
    with dg.instance_for_test(temp_dir=str(tmp_path / "instances" / shard)) as instance:
        return run_all(build_definitions(resources), instance, show_progress=False)


@pytest.mark.slow
def test_shards_run_apart_and_merge_into_one_checked_dataset_without_repeats(tmp_path: Path, monkeypatch):
    for shard, names in SHARDS.items():
        (tmp_path / "corpus" / shard).mkdir(parents=True)
        for name in names:
            shutil.copy(EXAMPLE_DOCUMENTS / name, tmp_path / "corpus" / shard / name)
    summaries = {shard: _run_shard(tmp_path, shard) for shard in SHARDS}
    assert len(summaries["b"]["documents"]) == 2 and all(k.startswith("b__") for k in summaries["b"]["documents"])
    exports = {shard: tmp_path / "shards" / shard / "exports" for shard in SHARDS}
    assert all(published_version(folder) for folder in exports.values())
    alone = {shard: read_split(folder / published_version(folder), "alpaca", "train").shape[0]
             + read_split(folder / published_version(folder), "alpaca", "validation").shape[0]
             for shard, folder in exports.items()}

    environ = {SHARDS_DIR_ENV: str(tmp_path / "shards"), MERGED_DIR_ENV: str(tmp_path / "merged")}
    defs = build_merge_definitions(environ)
    with dg.instance_for_test() as instance:
        assert merge_all(defs, instance).success
        merged = tmp_path / "merged" / published_version(tmp_path / "merged")
        metadata = instance.get_latest_materialization_event(dg.AssetKey("merged_dataset")).asset_materialization.metadata
        # b's copy of wiki.md asks what a's asks: left out of the merge, every format alike.
        repeats = metadata["repeats_across_shards_removed"].value
        assert repeats["alpaca"] > 0 and repeats["alpaca"] == repeats["sharegpt"] == repeats["messages"]
        assert metadata["shards_merged"].value.keys() == {"a", "b"}
        rows = {}
        for name in ("alpaca", "sharegpt", "messages"):
            loaded = datasets.load_dataset(str(merged), name)
            rows[name] = sum(loaded[split].num_rows for split in loaded)
        assert rows["alpaca"] == rows["sharegpt"] == rows["messages"] == sum(alone.values()) - repeats["alpaca"]
        questions = [question_key(row_question(r)) for r in read_split(merged, "alpaca", "train").to_dict("records")]
        assert len(questions) == len(set(questions))
        assert read_manifest(merged)["merged_from"] == {s: published_version(f) for s, f in exports.items()}
        assert merged_problems(tmp_path / "merged", merged) == []
        # The card sums the shards' own cards' figures.
        shard_stats = [read_manifest(f / published_version(f))["card_stats"] for f in exports.values()]
        assert read_manifest(merged)["card_stats"]["documents"] == sum(s["documents"] for s in shard_stats) > 0
        card = (merged / "README.md").read_text()
        assert f"written from {sum(s['documents'] for s in shard_stats)} source documents" in card
        assert f"{sum(s['kept'] for s in shard_stats)} kept" in card

        # The check blocks: a merge listing a file twice (its questions twice, its rows
        # counted twice) is not published.
        import synth_assets.merge as merge_module

        def doubled(corpora, merged_dir):
            plan = plan_merge(corpora, merged_dir)
            first = next(s for s in plan.shards if s.format == "alpaca" and s.rows)
            again = read_shards(merged_dir / SHARD_STORE, [first])
            plan.shards.append(write_shard(merged_dir / SHARD_STORE, "alpaca", first.split, 999, again))
            return plan
        monkeypatch.setattr(merge_module, "plan_merge", doubled)
        failed = merge_all(defs, instance)
        assert not failed.success
        evaluation = failed.get_asset_check_evaluations()[0]
        assert not evaluation.passed
        assert "questions appear twice" in evaluation.metadata["problems"].value
        assert "different numbers of rows" in evaluation.metadata["problems"].value
        assert published_version(tmp_path / "merged") == merged.name
        monkeypatch.undo()

        # A missing file is named.
        first = next(s for s in read_manifest(merged)["shards"])
        (merged / first["path"]).unlink()
        assert merged_problems(tmp_path / "merged", merged) == [f"{first['path']}: listed in the manifest, missing"]


def test_a_shards_sensor_asks_for_its_own_documents_and_refuses_another_shards_instance(tmp_path: Path):
    from synth_assets.sensors import build_documents_sensor

    sensor = build_documents_sensor(minimum_interval_seconds=30, single_run_min_documents=10)
    for shard, names in SHARDS.items():
        (tmp_path / shard).mkdir()
        for name in names:
            shutil.copy(EXAMPLE_DOCUMENTS / name, tmp_path / shard / name)

    def tick(instance, shard: str) -> dg.SensorResult:
        resources = {"documents": DocumentsFolder(path=str(tmp_path), shard=shard),
                     "duckdb": PipelineDatabase(database=str(tmp_path / f"{shard}.duckdb"))}
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            return sensor(context)

    with dg.instance_for_test() as instance:
        added = tick(instance, "a")
        asked = [key for request in added.dynamic_partitions_requests for key in request.partition_keys]
        assert len(asked) == 2 and all(key.startswith("a__") for key in asked)
        with pytest.raises(dg.Failure, match="belongs to corpus shard 'a', not 'b'"):
            tick(instance, "b")


def test_the_merge_sensor_asks_for_a_merge_when_a_shard_publishes_a_new_version(tmp_path: Path):
    from synth_assets.merge import shards_published_sensor

    defs = build_merge_definitions({SHARDS_DIR_ENV: str(tmp_path / "shards"), MERGED_DIR_ENV: str(tmp_path / "m")})
    resources = {"merge": defs.resources["merge"]}

    def tick(cursor):
        with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
            return shards_published_sensor(context)

    assert not tick(None).run_requests  # no shard yet
    (tmp_path / "shards" / "a" / "exports").mkdir(parents=True)
    (tmp_path / "shards" / "a" / "exports" / "LATEST").write_text("v1\n")
    first = tick(None)
    assert len(first.run_requests) == 1
    again = tick(first.cursor)
    assert not again.run_requests and again.cursor == first.cursor
    (tmp_path / "shards" / "a" / "exports" / "LATEST").write_text("v2\n")
    moved = tick(first.cursor)
    assert len(moved.run_requests) == 1 and moved.run_requests[0].run_key != first.run_requests[0].run_key
