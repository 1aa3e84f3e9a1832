"""Human-labelled data in the mix: Alpaca, ShareGPT and messages files are read row by
row, a malformed row is reported with its file and line while the rest is used, rows
repeating a synthetic question are left out, and the training dataset mixes them into
its train split at the configured ratio and says so in its card.

The files under synth_assets_tests/human_data were written for these tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from synth_assets.core.dedup import DUPLICATE_QUESTION, NEAR_DUPLICATE_QUESTION
from synth_assets.core.shards import read_split
from synth_assets.core.human_data import HumanRow, duplicate_rows, parse_row, pick_mix, read_human_folder

HUMAN_DATA = Path(__file__).parent / "human_data"


def test_the_three_forms_are_told_apart_row_by_row():
    assert parse_row({"instruction": "Convert it.", "input": "100 C", "output": "212 F"}) == (
        "alpaca", "Convert it.\n\n100 C", "212 F", None)
    assert parse_row({"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Q?"},
                                        {"from": "gpt", "value": "A."}]}) == ("sharegpt", "Q?", "A.", "Be brief.")
    assert parse_row({"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]}) == (
        "messages", "Q?", "A.", None)

    data = read_human_folder(HUMAN_DATA)
    forms = {(row.source_file, row.form) for row in data.rows}
    assert forms == {("alpaca.json", "alpaca"), ("sharegpt.jsonl", "sharegpt"), ("messages.jsonl", "messages")}
    # A .json array's rows carry the line their element starts on.
    assert [row.line for row in data.rows if row.source_file == "alpaca.json"] == [2, 7, 16, 20]
    assert data.skipped_files == ["NOTES.txt"]


@pytest.mark.parametrize("row, reason", [
    ({"instruction": "Q?", "output": "  "}, "output is empty"),
    ({"instruction": "Q?"}, "output is missing"),
    ({"instruction": "Q?", "output": 3}, "output must be a string"),
    ({"conversations": [{"from": "human", "value": "Q?"}]}, "conversations go human; expected human,gpt"),
    ({"messages": [{"role": "user", "content": "Q?"}, {"role": "user", "content": "A."}]},
     "messages go user,user; expected user,assistant"),
    ({"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."},
                   {"role": "user", "content": "Q2?"}, {"role": "assistant", "content": "A2."}]},
     "messages go user,assistant,user,assistant"),
    ({"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant"}]}, "messages turn 2: content is missing"),
    ({"prompt": "Q?", "completion": "A."}, "neither Alpaca"),
    (["Q?", "A."], "a row must be a JSON object"),
])
def test_a_row_that_is_not_one_question_and_its_answer_says_why(row, reason):
    with pytest.raises(ValueError, match=reason.replace("?", r"\?")):
        parse_row(row)


def test_a_malformed_row_is_reported_with_file_and_line_and_the_rest_is_used():
    data = read_human_folder(HUMAN_DATA)
    problems = {(p.source_file, p.line): p.reason for p in data.problems}
    assert problems[("alpaca.json", 12)] == "output is empty"
    assert problems[("sharegpt.jsonl", 3)].startswith("not JSON")
    assert "gpt,human" in problems[("sharegpt.jsonl", 4)]
    assert "neither Alpaca" in problems[("messages.jsonl", 5)]
    # A file that is not JSON at all is reported as a whole, and the others are still read.
    assert problems[("broken.json", None)].startswith("not JSON")
    assert len(problems) == 5
    # Every other row is used: 18 rows read, 4 malformed, 1 repeating an earlier human row.
    assert data.rows_read == 18
    assert len(data.rows) == 13
    used = {(row.source_file, row.line) for row in data.rows}
    assert ("sharegpt.jsonl", 6) in used and ("messages.jsonl", 6) in used
    assert [(row.source_file, row.line, reason, kept) for row, reason, kept in data.duplicates] == [
        ("sharegpt.jsonl", 7, DUPLICATE_QUESTION, "human:alpaca.json:2")]


def test_a_jsonl_file_of_which_no_line_parses_is_reported_as_a_whole(tmp_path):
    (tmp_path / "notes.jsonl").write_text("just some text\nand more\n")
    (tmp_path / "good.jsonl").write_text(json.dumps({"instruction": "Q?", "output": "A."}) + "\n")
    data = read_human_folder(tmp_path)
    assert [(p.source_file, p.line) for p in data.problems] == [("notes.jsonl", None)]
    assert [row.pair_id for row in data.rows] == ["human:good.jsonl:1"]


def test_rows_repeating_a_synthetic_question_are_left_out_exactly_or_nearly():
    rows = [HumanRow("h.jsonl", 1, "alpaca", "what is the capital of france", "Paris."),
            HumanRow("h.jsonl", 2, "alpaca", "What's the capital city of France?", "Paris."),
            HumanRow("h.jsonl", 3, "alpaca", "When was IBM founded?", "1911."),
            HumanRow("h.jsonl", 4, "alpaca", "How many legs does a spider have?", "Eight.")]
    synthetic = [("p1", "What is the capital of France?"), ("p2", "Who founded IBM?")]
    found = duplicate_rows(rows, synthetic)
    assert found == {0: (DUPLICATE_QUESTION, "p1"), 1: (NEAR_DUPLICATE_QUESTION, "p1")}


def test_the_pick_is_seeded_and_fewer_rows_than_asked_are_all_used():
    many = pick_mix(available=10, synthetic_rows=20, ratio=0.25, seed=7)
    assert len(many.picked) == 5 and many.picked == pick_mix(10, 20, 0.25, 7).picked
    assert many.ratio_got == 0.25
    few = pick_mix(available=3, synthetic_rows=20, ratio=0.25, seed=7)
    assert few.picked == [0, 1, 2] and "only 3 human rows for the 5" in few.note
    assert pick_mix(available=4, synthetic_rows=20, ratio=None, seed=7).picked == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="0 or more"):
        pick_mix(available=4, synthetic_rows=20, ratio=-1, seed=7)


def alpaca_rows(export_dir: Path) -> pd.DataFrame:
    return pd.concat([read_split(export_dir, "alpaca", split).assign(split=split)
                      for split in ("train", "validation")], ignore_index=True)


def test_the_training_dataset_mixes_human_rows_in_at_the_ratio_and_its_card_says_so(
        pipeline_resources, tmp_path, instance):
    import dagster as dg

    from synth_assets.definitions import build_definitions
    from synth_assets.jobs import BUILD_TRAINING_DATASET_JOB
    from synth_assets.resources.review import ReviewSettings
    from synth_assets.run import run_all

    folder = tmp_path / "human"
    shutil.copytree(HUMAN_DATA, folder)
    ratio = 0.1
    defs = build_definitions({**pipeline_resources, "review": ReviewSettings(human_data_dir=str(folder),
                                                                             human_ratio=ratio)})
    summary = run_all(defs, instance, show_progress=False)
    assert summary["export_ok"], summary["export_error"]
    export_dir = Path(summary["export_dir"])
    rows = alpaca_rows(export_dir)
    human = rows[rows["generator"] == "human"]
    synthetic_train = int(((rows["generator"] != "human") & (rows["split"] == "train")).sum())
    wanted = round(ratio * synthetic_train)
    assert 0 < wanted < 13, "the fixture should offer more human rows than the ratio asks"
    assert len(human) == wanted
    assert set(human["split"]) == {"train"}
    # Provenance: the file and line of each human row; its text is the file's.
    assert set(human["chunk_id"]) <= {f"{r.source_file}:{r.line}" for r in read_human_folder(HUMAN_DATA).rows}
    card = (export_dir / "README.md").read_text()
    assert "## Human-labelled rows" in card
    assert f"| {synthetic_train} | {wanted} | {ratio} human rows per synthetic row | {round(wanted / synthetic_train, 3)} |" \
        in card

    ingested = instance.get_latest_materialization_event(dg.AssetKey("human_examples")).asset_materialization.metadata
    assert ingested["rows_read"].value == 18 and ingested["rows_used"].value == 13
    assert ingested["malformed_rows"].value == 4 and ingested["duplicates_dropped"].value == 1
    assert "| alpaca.json | 12 | output is empty |" in ingested["problems"].value
    mixed = instance.get_latest_materialization_event(dg.AssetKey("training_dataset")).asset_materialization.metadata
    assert mixed["human_rows"].value == wanted
    assert mixed["human_mix"].value["ratio_asked"] == ratio

    # Every row, one of them repeating a synthetic question of the dataset: that one is left
    # out, the others all go in, and a system turn of a human row is kept.
    question = rows[rows["generator"] != "human"]["instruction"].iloc[0]
    (folder / "more.jsonl").write_text(json.dumps({"instruction": question, "output": "A copy."}) + "\n")
    defs = build_definitions({**pipeline_resources, "review": ReviewSettings(human_data_dir=str(folder))})
    result = defs.resolve_job_def(BUILD_TRAINING_DATASET_JOB).execute_in_process(instance=instance)
    assert result.success
    metadata = instance.get_latest_materialization_event(dg.AssetKey("training_dataset")).asset_materialization.metadata
    export_dir = Path(metadata["export_dir"].value)
    rows = alpaca_rows(export_dir)
    human = rows[rows["generator"] == "human"]
    assert len(human) == 13 and "more.jsonl:1" not in set(human["chunk_id"])
    assert metadata["human_mix"].value["repeating_synthetic_questions"] == 1
    card = (export_dir / "README.md").read_text()
    assert "| 13 | every valid row |" in card and "1\nrepeat a synthetic question" in card
    sharegpt = read_split(export_dir, "sharegpt", "train")
    moby = sharegpt[sharegpt["chunk_id"] == "sharegpt.jsonl:2"]["conversations"].iloc[0]
    assert moby[0] == {"from": "system", "value": "You answer in one sentence."}


def test_with_no_folder_set_there_is_no_human_data_and_no_error(pipeline_resources, instance):
    import dagster as dg

    from synth_assets.assets.human import NO_HUMAN_DATA, human_examples
    from synth_assets.resources.review import ReviewSettings

    result = dg.materialize([human_examples], instance=instance,
                            resources={"duckdb": pipeline_resources["duckdb"], "review": ReviewSettings()})
    assert result.success
    metadata = result.asset_materializations_for_node("human_examples")[0].metadata
    assert metadata["status"].value == NO_HUMAN_DATA and metadata["rows_used"].value == 0
