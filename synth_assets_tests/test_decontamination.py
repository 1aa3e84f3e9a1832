"""Decontamination against eval sets (issue 27): reading eval sets, matching, the index kept
between runs, and the gate in training_dataset and its check, on real runs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import datasets
import duckdb
import pandas as pd
import pytest

from synth_assets.core.decontamination import (
    EVAL_INDEX_TABLE,
    MINHASH_METHOD,
    NGRAM_METHOD,
    EvalSetError,
    EvalSetSpec,
    build_index,
    find_contaminated,
    load_eval_indexes,
    parse_eval_sets,
    read_eval_texts,
)
from synth_assets.core.exporting import LATEST_FILE
from synth_assets.definitions import build_definitions
from synth_assets.resources.export import ExportSettings
from synth_assets.run import run_all

EVAL_QUESTIONS = [
    "What is the boiling point of water at sea level?",
    "Who wrote the novel Pride and Prejudice?",
    "When was IBM founded as the Computing-Tabulating-Recording Company?",
    "Explain archeological evidence in the context of Hunting (Duck).",
]
PASSAGE = ("The mallard is a dabbling duck that breeds throughout the temperate and subtropical Americas, "
           "Eurasia, and North Africa, and has been introduced to New Zealand and Australia.")


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _index(texts: list[str]):
    return [build_index(EvalSetSpec(Path("eval.jsonl")), texts)]


def test_entries_name_a_path_and_optionally_a_column():
    specs = parse_eval_sets(["a.jsonl", " b.csv::text ", ""])
    assert [(s.path.name, s.column) for s in specs] == [("a.jsonl", "question"), ("b.csv", "text")]


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet", "datasets", "datasetdict"])
def test_every_format_is_read_by_its_column(tmp_path, kind):
    frame = pd.DataFrame({"text": EVAL_QUESTIONS, "other": range(len(EVAL_QUESTIONS))})
    path = tmp_path / f"eval.{kind}"
    if kind == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif kind == "csv":
        frame.to_csv(path, index=False)
    elif kind == "parquet":
        frame.to_parquet(path)
    elif kind == "datasets":
        datasets.Dataset.from_pandas(frame).save_to_disk(str(path))
    else:
        whole = datasets.Dataset.from_pandas(frame)
        datasets.DatasetDict({"test": whole.select(range(2)), "validation": whole.select(range(2, 4)),
                              }).save_to_disk(str(path))
    assert sorted(read_eval_texts(EvalSetSpec(path, "text"))) == sorted(EVAL_QUESTIONS)


def test_bad_eval_sets_name_the_file(tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    with pytest.raises(EvalSetError, match="nowhere.jsonl: no such file"):
        read_eval_texts(EvalSetSpec(missing))
    no_column = _jsonl(tmp_path / "eval.jsonl", [{"prompt": "What is it?"}])
    with pytest.raises(EvalSetError, match=r"eval.jsonl: no column 'question' \(columns: prompt\)"):
        read_eval_texts(EvalSetSpec(no_column))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "What?"\nnot json\n')
    with pytest.raises(EvalSetError, match="broken.jsonl: could not be read"):
        read_eval_texts(EvalSetSpec(broken))
    not_parquet = tmp_path / "eval.parquet"
    not_parquet.write_text("plain text")
    with pytest.raises(EvalSetError, match="eval.parquet: could not be read"):
        read_eval_texts(EvalSetSpec(not_parquet))
    csv = tmp_path / "eval.csv"
    csv.write_text("prompt\nWhat is it?\n")
    with pytest.raises(EvalSetError, match="eval.csv: no column 'text'"):
        read_eval_texts(EvalSetSpec(csv, "text"))
    other = tmp_path / "eval.txt"
    other.write_text("What is it?\n")
    with pytest.raises(EvalSetError, match="eval.txt: not an eval-set format"):
        read_eval_texts(EvalSetSpec(other))
    # Before anything is stored: the database is untouched by a bad set.
    con = duckdb.connect()
    with pytest.raises(EvalSetError, match="nowhere.jsonl"):
        load_eval_indexes(con, [EvalSetSpec(missing)])


def test_exact_and_reworded_questions_match_and_others_do_not():
    records = [
        {"question": "what is the BOILING point of water at sea level", "answer": "100 degrees."},  # exact
        {"question": "At sea level, what is the boiling point of water?", "answer": "100 degrees."},  # order
        {"question": "Who wrote the novel Pride and Prejudice, according to the text?", "answer": "Austen."},
        {"question": "In the context of Hunting (Duck), explain archeological evidence.", "answer": "Bones."},
        {"question": "Where do mallards breed?", "answer": PASSAGE},  # the answer copies a passage
        {"question": "What is the freezing point of mercury?", "answer": "-38.83 degrees."},
        {"question": "Explain diving ducks in the context of Hunting (Duck).", "answer": "They dive."},
        {"question": "Who wrote the novel Moby Dick?", "answer": "Melville."},
    ]
    matches = find_contaminated(records, _index([*EVAL_QUESTIONS, PASSAGE]))
    assert [m.method if m else None for m in matches] == [
        NGRAM_METHOD, MINHASH_METHOD, MINHASH_METHOD, MINHASH_METHOD, NGRAM_METHOD, None, None, None]
    assert matches[0].matched_text == EVAL_QUESTIONS[0] and matches[0].score == 1.0
    assert matches[4].side == "answer" and matches[4].matched_text == PASSAGE


def test_a_conversation_is_matched_on_each_user_turn():
    turns = [("Tell me about ducks.", "Ducks are birds."),
             ("Who wrote the novel Pride and Prejudice?", "Jane Austen."),
             ("Why is it famous?", "Its wit.")]
    record = {"task": "conversation", "question": turns[0][0], "answer": turns[0][1], "turns": json.dumps(turns)}
    [match] = find_contaminated([record], _index(EVAL_QUESTIONS))
    assert match is not None and match.matched_text == EVAL_QUESTIONS[1]


def test_the_index_is_kept_and_rebuilt_when_the_file_changes(tmp_path):
    path = _jsonl(tmp_path / "eval.jsonl", [{"question": q} for q in EVAL_QUESTIONS])
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    first = load_eval_indexes(con, [EvalSetSpec(path)])[0]
    path.write_text("".join(json.dumps({"question": q}) + "\n" for q in EVAL_QUESTIONS))
    stored = load_eval_indexes(con, [EvalSetSpec(path)])[0]
    assert stored.texts == first.texts and stored.ngrams == first.ngrams and stored.keys == first.keys
    assert [list(s) for s in stored.signatures] == [list(s) for s in first.signatures]
    record = {"question": "At sea level, what is the boiling point of water?", "answer": ""}
    assert find_contaminated([record], [stored])[0].method == MINHASH_METHOD
    _jsonl(path, [{"question": "Who painted the Mona Lisa?"}])
    changed = load_eval_indexes(con, [EvalSetSpec(path)])[0]
    assert changed.texts == ["Who painted the Mona Lisa?"]
    # One index per path: the one of the old content is gone.
    assert con.execute(f"SELECT count(DISTINCT index_key), count(*) FROM {EVAL_INDEX_TABLE}").fetchall() == [(1, 1)]


# -- on real runs --------------------------------------------------------------------------

PLANTED_DOCUMENTS = ("wiki.md", "wiki_duck.html", "word_sample.docx")
CLAUSES = ("according to the article", "in a few words", "as the text describes it")


def reword(question: str, rng: random.Random) -> str:
    """Another phrasing: the clause order changed, two words swapped, or a clause added."""
    body, end = question.rstrip("?.!"), question[-1] if question[-1] in "?." else "?"
    if " in the context of " in body and rng.random() < 0.5:
        subject, section = body.split(" in the context of ", 1)
        return f"In the context of {section}, {subject[:1].lower()}{subject[1:]}{end}"
    words = body.split()
    if len(words) > 4 and rng.random() < 0.5:
        i = rng.randrange(1, len(words) - 2)
        words[i], words[i + 1] = words[i + 1], words[i]
        return " ".join(words) + end
    return f"{body}, {rng.choice(CLAUSES)}{end}"


def _published_questions(summary: dict) -> list[str]:
    rows = datasets.load_dataset(summary["export_dir"], "alpaca")
    return [q for split in rows.values() for q in split["instruction"]]


@pytest.fixture
def example_resources(pipeline_resources, documents_dir):
    import shutil

    from synth_assets_tests.conftest import EXAMPLE_DOCUMENTS

    for path in documents_dir.iterdir():
        path.unlink()
    for name in PLANTED_DOCUMENTS:
        shutil.copy(EXAMPLE_DOCUMENTS / name, documents_dir / name)
    return pipeline_resources


def _with_eval_sets(resources: dict, entries: list[str]) -> dict:
    return {**resources, "export": ExportSettings(export_dir=resources["export"].export_dir, eval_sets=entries)}


@pytest.mark.slow
def test_a_planted_eval_set_is_removed_and_bad_eval_sets_stop_the_export(example_resources, instance, tmp_path):
    first = run_all(build_definitions(example_resources), instance, show_progress=False)
    assert first["export_ok"]
    questions = sorted(set(_published_questions(first)))
    assert len(questions) >= 55, len(questions)
    rng = random.Random(27)
    planted = rng.sample(questions, 50)
    exact, reworded = planted[:25], planted[25:]
    eval_rows = ([{"question": q} for q in exact] + [{"question": reword(q, rng)} for q in reworded]
                 + [{"question": q} for q in ("Who painted the Mona Lisa?", "What is the capital of Peru?")])
    eval_file = _jsonl(tmp_path / "eval.jsonl", eval_rows)
    export_dir = Path(example_resources["export"].export_dir)

    # Bad input stops training_dataset with the setting and the file named; LATEST stays.
    for entry, message in ((str(tmp_path / "missing.jsonl"), "missing.jsonl: no such file"),
                           (f"{eval_file}::prompt", "eval.jsonl: no column 'prompt'")):
        bad = run_all(build_definitions(_with_eval_sets(example_resources, [entry])), instance, show_progress=False)
        assert not bad["export_ok"] and "SYNTH_ASSETS_EVAL_SETS" in bad["export_error"], bad["export_error"]
        assert message in bad["export_error"]
        assert (export_dir / LATEST_FILE).read_text().strip() == first["published_version"]

    second = run_all(build_definitions(_with_eval_sets(example_resources, [str(eval_file)])), instance,
                     show_progress=False)
    assert second["export_ok"], second["export_error"]
    assert second["published_version"] != first["published_version"]
    published = set(_published_questions(second))
    assert not published & set(exact)
    removed_exact = sum(q not in published for q in exact) / len(exact)
    removed_reworded = sum(q not in published for q in reworded) / len(reworded)
    print(f"planted: {len(exact)} exact, {removed_exact:.2f} removed; {len(reworded)} reworded, "
          f"{removed_reworded:.2f} removed; {len(questions)} questions before, {len(published)} after")
    assert removed_exact >= 0.99 and removed_reworded >= 0.9, (removed_exact, removed_reworded)
    assert len(published) >= len(questions) - 50 - 5  # little else goes

    with duckdb.connect(example_resources["duckdb"].database, read_only=True) as con:
        table = con.execute("SELECT question, eval_set, method FROM contaminated_rows").df()
    assert set(exact) <= set(table["question"]) and set(table["eval_set"]) == {"eval.jsonl::question"}
    card = (Path(second["export_dir"]) / "README.md").read_text()
    assert "## Decontamination" in card and "`eval.jsonl::question`" in card
    assert "## Decontamination" not in (export_dir / first["published_version"] / "README.md").read_text()
    event = instance.get_latest_materialization_event(dg_key("training_dataset"))
    assert event.asset_materialization.metadata["contaminated_rows_removed"].value == len(table)


@pytest.mark.slow
def test_the_dataset_check_fails_on_a_contaminated_candidate(example_resources, instance, tmp_path, monkeypatch):
    first = run_all(build_definitions(example_resources), instance, show_progress=False)
    eval_file = _jsonl(tmp_path / "eval.jsonl", [{"question": q} for q in _published_questions(first)[:3]])
    # A decontamination that misses everything: the candidate holds the eval questions.
    monkeypatch.setattr("synth_assets.assets.export.find_contaminated", lambda records, indexes: [None] * len(records))
    second = run_all(build_definitions(_with_eval_sets(example_resources, [str(eval_file)])), instance,
                     show_progress=False)
    assert not second["export_ok"] and "training_dataset_has_no_cross_document_duplicates" in second["export_error"]
    assert second["published_version"] == first["published_version"]
    evaluation = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [check_key()])[check_key()].event.dagster_event.event_specific_data
    assert "values_to_be_null[contamination]" in evaluation.metadata["expectations"].value
    assert "eval.jsonl::question (ngram13 1.0)" in evaluation.metadata["failing_rows"].value


def dg_key(name: str):
    import dagster as dg

    return dg.AssetKey(name)


def check_key():
    import dagster as dg

    from synth_assets.candidates import TRAINING_DATASET_CHECK

    return dg.AssetCheckKey(dg.AssetKey("training_dataset"), TRAINING_DATASET_CHECK)
