"""The dataset check and the publication act on their own run's candidate (issue 28,
item 2), and the dataset check can fail on what can go wrong in a candidate (item 3)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synth_assets.candidates import TRAINING_DATASET_CHECK, TRAINING_DATASET_KEY
from synth_assets.checks import _vetted_rows, candidate_rows
from synth_assets.core.exporting import LATEST_FILE, SPLITS
from synth_assets.core.shards import read_manifest, read_shards, shards_of
from synth_assets.definitions import build_definitions
from synth_assets.jobs import BUILD_TRAINING_DATASET_JOB
from synth_assets.quality import validate_training_dataset
from synth_assets.resources.export import ExportSettings
from synth_assets.run import QUIET_CONSOLE, run_all

# -- item 2: another run's candidate between this run's steps -----------------------


def _tamper_duplicates(folder: Path) -> None:
    """Every format's train rows written twice: a candidate no check may pass."""
    _each_format(folder, lambda frames: {**frames, "train": pd.concat([frames["train"]] * 2, ignore_index=True)})


@pytest.mark.slow
@pytest.mark.parametrize("intruder_after", ["materialization", "check"])
def test_check_and_publish_act_on_their_own_runs_candidate(pipeline_resources, documents_dir, instance, monkeypatch,
                                                          intruder_after):
    """Another run materialises a candidate (a bad one) right after this run's
    training_dataset (so the check would read it as the latest) or right after this run's
    check passed (so the publication would): the check validates, and the publication
    publishes, this run's own candidate."""
    (documents_dir / "word_sample.docx").unlink()
    defs = build_definitions(pipeline_resources)
    first = run_all(defs, instance, show_progress=False)
    own = first["published_version"]
    export_dir = Path(pipeline_resources["export"].export_dir)
    shutil.copytree(export_dir / own, export_dir / "intruder")
    _tamper_duplicates(export_dir / "intruder")
    (export_dir / LATEST_FILE).unlink()  # so this run's publication is seen

    real = dg.DagsterInstance.handle_new_event
    state = {"reported": False}

    def handle_new_event(self, event, *args, **kwargs):
        real(self, event, *args, **kwargs)
        dagster_event = event.dagster_event
        if state["reported"] or dagster_event is None:
            return
        if intruder_after == "materialization":
            trigger = (dagster_event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
                       and dagster_event.asset_key == TRAINING_DATASET_KEY)
        else:
            trigger = (dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
                       and dagster_event.event_specific_data.asset_check_key.name == TRAINING_DATASET_CHECK)
        if trigger:
            state["reported"] = True
            self.report_runless_asset_event(dg.AssetMaterialization(
                TRAINING_DATASET_KEY, metadata={"version": "intruder", "dagster/row_count": 1}))

    monkeypatch.setattr(dg.DagsterInstance, "handle_new_event", handle_new_event)
    result = defs.resolve_job_def(BUILD_TRAINING_DATASET_JOB).execute_in_process(
        instance=instance, raise_on_error=False, run_config=QUIET_CONSOLE)
    assert state["reported"]
    [evaluation] = [e for e in result.get_asset_check_evaluations()
                    if e.asset_check_key.name == TRAINING_DATASET_CHECK]
    assert evaluation.passed, evaluation.description
    assert evaluation.metadata["version"].value == own
    assert (export_dir / LATEST_FILE).read_text().strip() == own


# -- item 3: a candidate the check must stop ------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One real export of three documents, in both splits (run once for the module)."""
    from synth_assets_tests.conftest import EXAMPLE_DOCUMENTS
    from synth_assets.resources.curation import CurationResource
    from synth_assets.resources.documents import DocumentsFolder
    from synth_assets.resources.generation import GenerationResource
    from synth_assets.resources.review import ReviewSettings
    from synth_assets.resources.storage import PipelineDatabase

    root = tmp_path_factory.mktemp("exported")
    folder = root / "documents"
    folder.mkdir()
    for name in ("wiki.md", "asciidoc_02.asciidoc", "word_sample.docx"):
        shutil.copy(EXAMPLE_DOCUMENTS / name, folder / name)
    resources = {
        "documents": DocumentsFolder(path=str(folder)),
        "duckdb": PipelineDatabase(database=str(root / "db" / "test.duckdb")),
        "generation": GenerationResource(), "curation": CurationResource(),
        "export": ExportSettings(export_dir=str(root / "exports"), validation_ratio=0.4),
        "review": ReviewSettings(),
    }
    with dg.instance_for_test() as instance:
        summary = run_all(build_definitions(resources), instance, show_progress=False)
        event = instance.get_latest_materialization_event(TRAINING_DATASET_KEY)
        recorded = {key: value.value for key, value in event.asset_materialization.metadata.items()}
    with duckdb.connect(resources["duckdb"].database, read_only=True) as con:
        vetted = _vetted_rows(con)
    return Path(summary["export_dir"]), recorded, vetted


def _validate(folder: Path, recorded: dict, vetted: pd.DataFrame):
    return validate_training_dataset(*candidate_rows(folder, read_manifest(folder), vetted))


def _shards(folder: Path, fmt: str, split: str) -> list:
    return [s for s in shards_of(read_manifest(folder)) if s.format == fmt and s.split == split]


def _read(folder: Path, fmt: str, split: str) -> pd.DataFrame:
    return read_shards(folder, _shards(folder, fmt, split))


def _write(folder: Path, fmt: str, split: str, frame: pd.DataFrame) -> None:
    """The rows back into the split's shards, each shard as many rows as before (the last
    takes what was added or removed). The files are hard links into the shard store: each
    is replaced, not written through (that would change every version sharing it)."""
    shards = _shards(folder, fmt, split)
    start = 0
    for i, shard in enumerate(shards):
        end = len(frame) if i == len(shards) - 1 else start + shard.rows
        path = folder / shard.path()
        path.unlink()
        pq.write_table(pa.Table.from_pandas(frame.iloc[start:end].reset_index(drop=True), preserve_index=False), path)
        start = end


def _formats(folder: Path) -> list[str]:
    return sorted(read_manifest(folder)["rows"])


def _each_format(folder: Path, change) -> None:
    """Apply change(frames by split) -> frames by split to every format alike."""
    for fmt in _formats(folder):
        frames = change({split: _read(folder, fmt, split) for split in SPLITS})
        for split, frame in frames.items():
            _write(folder, fmt, split, frame)


def _a_document_in_both_splits(frames):
    # The last train row of the last train document moves to validation.
    train, validation = frames["train"], frames["validation"]
    return {"train": train.iloc[:-1], "validation": pd.concat([validation, train.iloc[-1:]], ignore_index=True)}


def _a_pair_twice(frames):
    return {**frames, "train": pd.concat([frames["train"], frames["train"].iloc[:1]], ignore_index=True)}


def _a_row_left_out(frames):
    return {**frames, "train": frames["train"].iloc[1:]}


def _a_question_of_another_document(frames):
    """The first validation row asks the first train row's question (another document's)."""
    train, validation = frames["train"].copy(), frames["validation"].copy()
    for column in ("instruction", "conversations", "messages"):
        if column not in validation:
            continue
        if column == "instruction":
            validation.loc[0, column] = train.loc[0, column]
        else:
            turns = [dict(turn) for turn in validation.loc[0, column]]
            source = next(t for t in train.loc[0, column] if t.get("from", t.get("role")) in ("human", "user"))
            for turn in turns:
                if turn.get("from", turn.get("role")) in ("human", "user"):
                    turn.update(source)
                    break
            validation.at[0, column] = turns
    return {"train": train, "validation": validation}


def _a_forged_pair(frames):
    train = frames["train"].copy()
    train.loc[0, "pair_id"] = "forged-pair"
    return {**frames, "train": train}


def _no_provenance(frames):
    keep = {"instruction", "input", "output", "conversations", "messages"}
    return {split: frame[[c for c in frame.columns if c in keep]] for split, frame in frames.items()}


def test_the_real_candidate_passes(exported, tmp_path):
    folder, recorded, vetted = exported
    result = _validate(folder, recorded, vetted)
    assert result.success, result.failed
    copy = tmp_path / "candidate"
    shutil.copytree(folder, copy)
    _each_format(copy, _no_provenance)
    result = _validate(copy, recorded, vetted)
    assert result.success, result.failed


@pytest.mark.parametrize(("tamper", "expected"), [
    ([_a_document_in_both_splits], {"column_values_to_be_in_set[splits_of_document]",
                                    "column_pair_values_to_be_equal[table] (row counts)"}),
    ([_a_document_in_both_splits, _no_provenance], {"column_values_to_be_in_set[splits_of_document]"}),
    ([_a_pair_twice], {"column_values_to_be_unique[pair_id]", "column_values_to_be_unique[instruction_and_output]",
                       "column_pair_values_to_be_equal[table] (row counts)"}),
    ([_a_pair_twice, _no_provenance], {"column_values_to_be_unique[instruction_and_output]"}),
    ([_a_row_left_out], {"column_pair_values_to_be_equal[table] (row counts)"}),
    ([_a_question_of_another_document], {"column_values_to_be_in_set[documents_asking_question]"}),
    # Without provenance the row is traced, by its question, to the document asking it
    # (in the other split): shown as that document in both splits.
    ([_a_question_of_another_document, _no_provenance], {"column_values_to_be_in_set[splits_of_document]"}),
    ([_a_forged_pair], {"column_values_to_be_in_set[from_vetted_rows]"}),
])
def test_each_expectation_fails_on_a_tampered_candidate(exported, tmp_path, tamper, expected):
    folder, recorded, vetted = exported
    copy = tmp_path / "candidate"
    shutil.copytree(folder, copy)
    for change in tamper:
        _each_format(copy, change)
    result = _validate(copy, recorded, vetted)
    assert not result.success
    assert expected <= set(result.failed), result.failed
    assert result.metadata  # each expectation listed, with its observed value


@pytest.mark.slow
def test_the_dataset_check_itself_stops_a_tampered_candidate(pipeline_resources, instance):
    """The check as the daemon runs it (launched alone, on the latest candidate), on the
    published folder tampered in place: each fault fails it; the pristine folder passes."""
    resources = {**pipeline_resources, "export": ExportSettings(
        export_dir=pipeline_resources["export"].export_dir, validation_ratio=0.4)}
    defs = build_definitions(resources)
    summary = run_all(defs, instance, show_progress=False)
    folder = Path(summary["export_dir"])
    pristine = folder.parent / "pristine"
    shutil.copytree(folder, pristine)
    check_key = dg.AssetCheckKey(TRAINING_DATASET_KEY, TRAINING_DATASET_CHECK)
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=set(),
                                                                  asset_check_selection={check_key})

    def check() -> dg.AssetCheckEvaluation:
        result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=QUIET_CONSOLE)
        [evaluation] = result.get_asset_check_evaluations()
        return evaluation

    assert check().passed
    for tamper in ([_a_row_left_out], [_a_forged_pair], [_a_document_in_both_splits, _no_provenance],
                   [_a_pair_twice, _no_provenance]):
        shutil.rmtree(folder)
        shutil.copytree(pristine, folder)
        for change in tamper:
            _each_format(folder, change)
        evaluation = check()
        assert not evaluation.passed, [change.__name__ for change in tamper]
