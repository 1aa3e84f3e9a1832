"""Preference pairs (issue 30): kept answers as `chosen`, answers to the same question that
a named rule rejected as `rejected` (core/preference.py), from closed-book requests made
by the curate step (the simulated server answers them from "memory": a sentence it read,
or a confabulation) or, without a model, from another chunk's best-matching sentence.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import sim_server  # noqa: E402
from synth_assets.core.evidence import CITATION_INVALID, UNSUPPORTED_CLAIM  # noqa: E402
from synth_assets.core.filters import FilterConfig, closed_book_reasons  # noqa: E402
from synth_assets.core.preference import (  # noqa: E402
    CANDIDATE_COLUMNS,
    CLOSED_BOOK,
    GENERATOR,
    REJECTED_ANSWER_RULES,
    generator_candidates,
    llama_factory_ranking_entry,
    near_identical,
    preference_frames,
    preference_rows,
    preference_section,
)
from synth_assets.generation.model_free_tasks import closed_book_stand_ins  # noqa: E402
from synth_assets.generation.prompts import ReplyParseError  # noqa: E402
from synth_assets_tests.test_vllm_backend import fake_vllm  # noqa: E402,F401 (a fixture)
from synth_assets.generation.task_prompts import (  # noqa: E402
    build_closed_book_messages,
    parse_closed_book_reply,
)

EXAMPLES = ROOT / "examples" / "documents"
DOCUMENTS = ("wiki.md", "asciidoc_02.asciidoc", "word_sample.docx")
CHUNK = ("Ducks are waterfowl of the family Anatidae. They feed on grasses, aquatic plants, fish and insects. "
         "Most ducks build their nests on the ground near water.")


def kept_row(pair_id="d#c0001#q01", question="What do ducks feed on?",
             answer="Ducks feed on grasses, aquatic plants, fish and insects.", **extra):
    return {"pair_id": pair_id, "document_id": "d", "chunk_id": "d#c0001", "question": question, "answer": answer,
            "task": "qa", "split": "train", **extra}


def candidate(answer, reasons, *, pair_id="d#c0001#q01", origin=CLOSED_BOOK, question="What do ducks feed on?",
              candidate_id=None):
    return {"candidate_id": candidate_id or f"{pair_id}@{origin}:{answer[:10]}", "pair_id": pair_id,
            "document_id": "d", "chunk_id": "d#c0001", "task": "qa", "origin": origin, "question": question,
            "answer": answer, "reject_reasons": reasons, "reason_details": None, "judge_score": None,
            "grounding": None, "generator": "openai", "model": "m", "prompt_version": "closed-book-v1"}


# -- the pure parts --------------------------------------------------------------------

def test_a_pair_needs_a_kept_chosen_and_a_rejected_answer_that_failed_an_answer_rule():
    kept = pd.DataFrame([kept_row(), kept_row("d#c0002#q01", "Where do ducks nest?",
                                              "Most ducks build their nests on the ground near water.")])
    candidates = pd.DataFrame([
        candidate("Ducks mostly eat bread that visitors throw into city ponds.", ["ungrounded", "unsupported_claim"]),
        # passed every rule: nothing says it is worse
        candidate("Ducks feed on fish, insects, grasses and aquatic plants.", []),
        # failed only its citations: the answer itself is not faulted
        candidate("Ducks eat the grasses and insects found around ponds.", [CITATION_INVALID]),
        # one changed character: the same answer
        candidate("Ducks feed on grasses, aquatic plants, fish and insect.", ["low_judge_score"]),
        # the same rejected text twice (closed-book and the generator's): one pair
        candidate("Ducks mostly eat bread that visitors throw into city ponds!", ["ungrounded"],
                  origin=GENERATOR, candidate_id="d#c0001#q02"),
        # the kept item is not in the dataset (a reviewer or the eval sets took it out)
        candidate("Ducks nest in tall trees in the city.", ["ungrounded"], pair_id="d#c0009#q01"),
        # a reviewer edited the question since: this answers another question
        candidate("They nest on rooftops.", ["ungrounded"], pair_id="d#c0002#q01", question="Where do geese nest?"),
    ], columns=CANDIDATE_COLUMNS)
    rows, counts = preference_rows(kept, candidates)
    assert rows[["prompt", "chosen", "rejected"]].values.tolist() == [[
        "What do ducks feed on?", "Ducks feed on grasses, aquatic plants, fish and insects.",
        "Ducks mostly eat bread that visitors throw into city ponds."]]
    assert rows["rejected_rules"].tolist() == [["ungrounded", "unsupported_claim"]]
    assert rows["rejected_origin"].tolist() == [CLOSED_BOOK] and rows["split"].tolist() == ["train"]
    assert counts["left_out"] == {"passed_every_rule": 1, "no_answer_rule": 1, "near_identical": 1, "repeated": 1,
                                  "chosen_not_in_dataset": 1, "question_changed": 1}
    assert counts["candidates"] == {CLOSED_BOOK: 6, GENERATOR: 1} and counts["pairs"] == {CLOSED_BOOK: 1}
    assert counts["rules"] == {"ungrounded": 1, "unsupported_claim": 1} and counts["total_pairs"] == 1


def test_near_identical_is_a_ratio_of_90_on_normalised_text():
    assert near_identical("Ducks feed on fish.", "ducks  feed on fish")
    assert not near_identical("Ducks feed on fish and insects.", "Geese feed on grass in winter.")


def test_the_generators_own_rejected_answer_to_a_kept_question_is_a_candidate():
    kept = pd.DataFrame([kept_row()])
    rejected = pd.DataFrame([
        {**kept_row("d#c0001#q03", "what do ducks FEED on", "Ducks feed on bread alone."),
         "reject_reasons": ["ungrounded", "duplicate_question"], "generator": "openai", "model": "m",
         "prompt_version": "qa-v2"},
        {**kept_row("d#c0001#q04", "Where do ducks nest?", "On rooftops."), "reject_reasons": ["ungrounded"]},
        {**kept_row("e#c0001#q01", "What do ducks feed on?", "Bread."), "document_id": "e",
         "reject_reasons": ["ungrounded"]},  # another document's question: not this item's
    ])
    found = generator_candidates(kept, rejected)
    assert found[["candidate_id", "pair_id", "origin"]].values.tolist() == [["d#c0001#q03", "d#c0001#q01", GENERATOR]]
    rows, _ = preference_rows(kept, found)
    assert rows["rejected_rules"].tolist() == [["ungrounded"]]  # duplicate_question is about the question


def test_closed_book_answers_are_filtered_without_the_citation_rule_and_claims_against_the_whole_chunk():
    base = {"pair_id": "d#c0001#q01@closed_book", "chunk_id": "d#c0001", "chunk_text": CHUNK, "task": "qa",
            "question": "What do ducks feed on?", "quotes": json.dumps([])}
    records = [
        {**base, "answer": "Ducks feed on grasses, aquatic plants, fish and insects."},
        {**base, "answer": "Ducks feed on grasses. A committee in Valparaiso catalogued eighteen copper ledgers."},
        # the same question again: duplicates judge questions, not answers
        {**base, "answer": "Ducks feed on grasses, aquatic plants, fish and insects."},
    ]
    reasons, details = closed_book_reasons(records, FilterConfig())
    assert reasons[0] == [] and reasons[2] == []
    assert "ungrounded" in reasons[1] and UNSUPPORTED_CLAIM in reasons[1]
    assert details[1][UNSUPPORTED_CLAIM] == ["A committee in Valparaiso catalogued eighteen copper ledgers."]
    assert all(CITATION_INVALID not in found for found in reasons)


def test_a_closed_book_request_holds_the_question_alone_and_its_reply_parses():
    messages = build_closed_book_messages("What do ducks feed on?")
    assert messages[-1] == {"role": "user", "content": "What do ducks feed on?"}
    assert "<document>" not in json.dumps(messages)
    assert parse_closed_book_reply('```json\n{"answer": "Bread, mostly."}\n```') == "Bread, mostly."
    for bad in ("", '{"answer": null}', '{"answer": 42}', "[]"):
        with pytest.raises(ReplyParseError):
            parse_closed_book_reply(bad)
    # the simulated server knows it for one, and answers it without any source
    assert sim_server.is_closed_book({}, messages)
    answer, kind = sim_server.closed_book_answer("What do ducks feed on?", [], recall=0.3)
    assert kind == "confabulated" and "ducks feed on" in answer and answer not in CHUNK


class MixedLLM:
    """A test double of vllm.LLM answering judge prompts with a score and closed-book ones
    with an answer; records each chat call."""

    def __init__(self):
        self.calls = []

    def chat(self, conversations, sampling_params, use_tqdm=True):
        from synth_assets_tests.test_vllm_backend import FakeCompletion, FakeRequestOutput

        self.calls.append((conversations, sampling_params))
        replies = [{"answer": f"From memory: {m[-1]['content']}"} if "from what you know" in m[0]["content"]
                   else {"score": 8, "reason": "checked", "unsupported": []} for m in conversations]
        return [FakeRequestOutput([FakeCompletion(json.dumps(reply))]) for reply in replies]


def test_closed_book_requests_go_in_the_judges_engine_call_each_with_its_schema_and_are_cached(fake_vllm, tmp_path):
    from synth_assets.core.judge import judge_json_schema
    from synth_assets.generation.base import JudgeRequest
    from synth_assets.generation.cache import GenerationCache
    from synth_assets.generation.task_prompts import ClosedBookRequest, closed_book_json_schema
    from synth_assets_tests.test_vllm_backend import backend_with

    cache = GenerationCache(tmp_path / "cache.duckdb")
    engine = MixedLLM()
    questions = [ClosedBookRequest("d#c1#q01", "What do ducks eat?"), ClosedBookRequest("d#c1#q02", "Where?")]
    judge = [JudgeRequest("d#c1#q01", "What do ducks eat?", "Seeds.", "Ducks eat seeds.")]
    answered, judged = backend_with(engine, cache=cache).closed_book(questions, judge=judge)
    assert len(engine.calls) == 1 and len(engine.calls[0][0]) == 3  # one engine call for all three
    params = engine.calls[0][1]
    assert [p.kwargs["structured_outputs"].json for p in params] == [judge_json_schema()] + [
        closed_book_json_schema()] * 2
    assert params[0].kwargs["temperature"] == 0.0 and params[1].kwargs["temperature"] == 0.3  # sampled as generation
    assert answered.answers == {"d#c1#q01": "From memory: What do ducks eat?", "d#c1#q02": "From memory: Where?"}
    assert judged.scores == {"d#c1#q01": (8, "checked")}
    again = MixedLLM()
    assert backend_with(again, cache=cache).closed_book(questions, judge=judge)[0].answers == answered.answers
    assert again.calls == []  # every reply from the cache


def test_without_a_model_the_stand_in_is_another_chunks_best_matching_sentence():
    bodies = {"d#c0001": CHUNK,
              "d#c0002": "Geese feed on grass in winter. Ducks feed on bread in city parks when people bring it.",
              "d#c0003": "The museum opens at nine."}
    answers = closed_book_stand_ins({"q1": ("What do ducks feed on?", "d#c0001"),
                                     "q2": ("What do ducks feed on?", "d#c0002"),
                                     "q3": ("Why is the sky blue?", "d#c0001")}, bodies)
    # the sentence sharing most content words (ducks, feed), from a chunk not the question's own
    assert answers["q1"] == "Ducks feed on bread in city parks when people bring it."
    assert answers["q2"] in CHUNK and answers["q2"] not in bodies["d#c0002"]
    assert "q3" not in answers  # nothing shares a word with it: no stand-in rather than a random one


def test_both_forms_load_with_datasets_render_in_chat_templates_and_are_trl_preference_rows(tmp_path):
    import datasets
    from trl.data_utils import is_conversational

    from synth_assets.core.chunking import _fallback_tokenizer
    from synth_assets_tests.test_tasks import CHATML, LLAMA3, MISTRAL

    kept = pd.DataFrame([kept_row(source_chunk_ids=json.dumps(["d#c0001"]), difficulty=1),
                         kept_row("d#c0002#q01", "Where do ducks nest?", "Most ducks nest on the ground near water.",
                                  source_chunk_ids=json.dumps(["d#c0002"]), difficulty=2, split="validation")])
    candidates = pd.DataFrame([
        candidate("Ducks mostly eat bread that visitors throw into city ponds.", ["ungrounded"]),
        candidate("Ducks nest in tall trees in the city.", ["low_judge_score"], pair_id="d#c0002#q01",
                  question="Where do ducks nest?")], columns=CANDIDATE_COLUMNS)
    frames, counts = preference_frames(kept, candidates, system_prompt="Answer from the documents.",
                                       provenance_columns=["pair_id", "document_id", "chunk_id", "task",
                                                           "difficulty", "source_chunk_ids"])
    assert counts["splits"] == {"train": 1, "validation": 1}
    tokenizer = _fallback_tokenizer()
    tokenizer.bos_token, tokenizer.eos_token = "<s>", "</s>"
    for name, frame in frames.items():
        for split in ("train", "validation"):
            part = frame[frame["split"] == split].drop(columns=["split"])
            part.to_json(tmp_path / f"{name}-{split}.jsonl", orient="records", lines=True, force_ascii=False)
        loaded = datasets.load_dataset("json", data_files={s: str(tmp_path / f"{name}-{s}.jsonl")
                                                           for s in ("train", "validation")})
        assert {split: len(rows) for split, rows in loaded.items()} == {"train": 1, "validation": 1}
        row = loaded["train"][0]
        assert row["source_chunk_ids"] == ["d#c0001"] and row["rejected_rules"] == ["ungrounded"]
        if name == "preference":
            assert row["prompt"] == "What do ducks feed on?" and row["system"] == "Answer from the documents."
            continue
        assert is_conversational(row)
        assert row["prompt"][-1] == {"role": "user", "content": "What do ducks feed on?"}
        for side in ("chosen", "rejected"):
            assert [m["role"] for m in row[side]] == ["assistant"]
            for template in (CHATML, LLAMA3):  # Mistral's template has no system turn
                text = tokenizer.apply_chat_template(row["prompt"] + row[side], chat_template=template, tokenize=False)
                assert row[side][0]["content"] in text
        text = tokenizer.apply_chat_template(row["prompt"][1:] + row["chosen"], chat_template=MISTRAL, tokenize=False)
        assert row["chosen"][0]["content"] in text


def test_counts_of_several_buckets_add_up():
    from synth_assets.core.preference import add_counts

    kept = pd.DataFrame([kept_row(), kept_row("d#c0002#q01", "Where do ducks nest?", "On the ground near water.")])
    candidates = pd.DataFrame([
        candidate("Ducks mostly eat bread that visitors throw into city ponds.", ["ungrounded"]),
        candidate("They nest in tall trees in cities.", ["ungrounded", "low_judge_score"], pair_id="d#c0002#q01",
                  question="Where do ducks nest?"),
        candidate("On the ground near the water.", [], pair_id="d#c0002#q01", question="Where do ducks nest?")],
        columns=CANDIDATE_COLUMNS)
    whole = preference_frames(kept, candidates)[1]
    halves = [preference_frames(kept.iloc[[i]], candidates[candidates["pair_id"] == kept["pair_id"][i]])[1]
              for i in (0, 1)]
    assert add_counts(*halves) == whole
    assert whole["total_pairs"] == 2 and whole["rules"] == {"ungrounded": 2, "low_judge_score": 1}


def test_the_card_section_and_llama_factory_entry():
    assert preference_section(None) == ""
    section = preference_section({"total_pairs": 3, "pairs": {CLOSED_BOOK: 2, GENERATOR: 1},
                                  "candidates": {CLOSED_BOOK: 5, GENERATOR: 1}, "rules": {"ungrounded": 3},
                                  "left_out": {"passed_every_rule": 3}, "splits": {"train": 3, "validation": 0}},
                                 name="docs")
    assert "## Preference pairs" in section and "| closed_book | 5 | 2 |" in section
    assert "`docs_preference`" in section and "passed every rule" in section
    assert llama_factory_ranking_entry("docs") == {"docs_preference": {
        "file_name": "preference/train", "formatting": "alpaca", "ranking": True,
        "columns": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}}}
    assert llama_factory_ranking_entry("docs", with_system=True)["docs_preference"]["columns"]["system"] == "system"


def test_preference_pairs_are_off_by_default_and_on_changes_only_the_curate_version():
    from synth_assets.resources.curation import CurationResource
    from synth_assets.settings import Settings

    assert Settings.from_env({}).resources["curation"].preference_pairs is False
    assert Settings.from_env({"SYNTH_ASSETS_PREFERENCE_PAIRS": "1"}).resources["curation"].preference_pairs is True
    off, on = CurationResource(), CurationResource(preference_pairs=True)
    assert off.filter_config() == on.filter_config()  # the filters themselves do not change
    assert off.output_version() == CurationResource.model_construct().output_version()
    assert on.output_version() != off.output_version()


# -- through the asset graph, against the simulated server -----------------------------

def _resources(root: Path, generation, **curation):
    from synth_assets.resources.curation import CurationResource
    from synth_assets.resources.documents import DocumentsFolder
    from synth_assets.resources.export import ExportSettings
    from synth_assets.resources.review import ReviewSettings
    from synth_assets.resources.storage import PipelineDatabase

    folder = root / "documents"
    if not folder.exists():
        folder.mkdir(parents=True)
        for name in DOCUMENTS:
            shutil.copy(EXAMPLES / name, folder / name)
    return {"documents": DocumentsFolder(path=str(folder)), "duckdb": PipelineDatabase(database=str(root / "db.duckdb")),
            "generation": generation, "curation": CurationResource(**curation),
            "export": ExportSettings(export_dir=str(root / "exports")), "review": ReviewSettings()}


def _generation_metadata(instance, partition: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("generated_qa_pairs"), asset_partitions=[partition]), limit=1
    ).records
    return {key: value.value for key, value in records[0].asset_materialization.metadata.items()}


@pytest.fixture(scope="module")
def sim_runs(tmp_path_factory):
    """The example documents against the simulated server, judge on: first with preference
    pairs off (the default), then on, with the same generation cache and database."""
    from synth_assets.definitions import build_definitions
    from synth_assets.resources.generation import GenerationResource
    from synth_assets.run import run_all

    root = tmp_path_factory.mktemp("preference_sim")
    url, stats, stop = sim_server.start_server_in_thread(slots=8, ttft=0.001, tpot=0.0001, output_tokens=20)
    try:
        generation = GenerationResource(backend="openai", model="sim-model", base_url=url,
                                        cache_path=str(root / "cache.duckdb"))
        with dg.instance_for_test() as instance:
            off = run_all(build_definitions(_resources(root, generation, use_judge=True)), instance,
                          show_progress=False)
            with duckdb.connect(str(root / "db.duckdb"), read_only=True) as con:
                candidates_off = con.execute("SELECT count(*) FROM preference_candidates").fetchone()[0]
            after_off = stats.snapshot()
            on = run_all(build_definitions(_resources(root, generation, use_judge=True, preference_pairs=True)),
                         instance, show_progress=False, force=True)
            after_on = stats.snapshot()
            generation_on = {key: _generation_metadata(instance, key) for key in on["documents"]}
    finally:
        stop()
    return {"root": root, "off": off, "on": on, "after_off": after_off, "after_on": after_on,
            "candidates_off": candidates_off, "generation_on": generation_on}


def test_off_sends_no_closed_book_request_and_on_adds_only_closed_book_and_their_judge_requests(sim_runs):
    assert sim_runs["off"]["failed"] == {} and sim_runs["on"]["failed"] == {}
    assert sim_runs["after_off"]["closed_book"] == {} and sim_runs["candidates_off"] == 0
    # Turned on, nothing generated is asked again (cached replies stay valid)...
    assert all(meta["generation_requests"] == 0 for meta in sim_runs["generation_on"].values())
    closed_book = sum(sim_runs["after_on"]["closed_book"].values())
    assert closed_book > 0
    # ... and every new request is a closed-book one or the judging of a closed-book answer.
    with duckdb.connect(str(sim_runs["root"] / "db.duckdb"), read_only=True) as con:
        judged_closed_book_answers = con.execute(
            "SELECT count(*) FROM preference_candidates WHERE origin = 'closed_book' AND judge_score IS NOT NULL"
        ).fetchone()[0]
    new = sim_runs["after_on"]["requests"] - sim_runs["after_off"]["requests"]
    assert closed_book <= new <= 2 * closed_book and new - closed_book >= judged_closed_book_answers


def test_the_summary_counts_the_closed_book_requests_and_their_judging_as_the_server_saw_them(sim_runs):
    new = sim_runs["after_on"]["requests"] - sim_runs["after_off"]["requests"]
    usage = sim_runs["on"]["model_usage"]
    tasks = usage["per_task"]
    closed = tasks["closed_book"]["requests"]
    assert closed == sum(sim_runs["after_on"]["closed_book"].values())
    assert closed + tasks.get("judge_closed_book", {}).get("requests", 0) + tasks.get("judge", {}).get(
        "requests", 0) == new


def test_closed_book_candidates_answer_kept_questions_and_record_every_rule_they_failed(sim_runs):
    with duckdb.connect(str(sim_runs["root"] / "db.duckdb"), read_only=True) as con:
        candidates = con.execute("SELECT * FROM preference_candidates").df()
        kept = con.execute("SELECT pair_id, question, chunk_id FROM filtered_qa_pairs").df()
    closed = candidates[candidates["origin"] == CLOSED_BOOK]
    assert len(closed) > 0
    by_id = kept.set_index("pair_id")
    assert set(closed["pair_id"]) <= set(kept["pair_id"])
    assert (closed["question"].values == by_id.loc[closed["pair_id"], "question"].values).all()
    assert set(closed["prompt_version"]) == {"closed-book-v1"} and set(closed["model"]) == {"sim-model"}
    failed = closed[closed["reject_reasons"].map(len) > 0]
    passed = closed[closed["reject_reasons"].map(len) == 0]
    assert len(failed) > 0 and all(set(r) & REJECTED_ANSWER_RULES for r in failed["reject_reasons"])
    # The server's confabulations are supported by no chunk: each fails grounding and the claim check.
    confabulated = closed[closed["answer"].str.startswith("As for ")]
    assert len(confabulated) > 0
    assert all({"ungrounded", UNSUPPORTED_CLAIM} <= set(reasons) for reasons in confabulated["reject_reasons"])
    assert sim_runs["after_on"]["closed_book"].get("recalled", 0) > 0
    # Recalled sentences that hold in the item's chunk pass every rule: not used, but counted.
    assert len(passed) > 0
    assert all(CITATION_INVALID not in reasons for reasons in closed["reject_reasons"])


def test_the_pairs_built_from_the_run_load_and_every_row_is_a_kept_chosen_and_a_rejected_by_rule(sim_runs, tmp_path):
    """What training_dataset will add, built here as it reads its rows (the vetted
    alpaca_examples rows, split by document; the wiring is the test below): every chosen
    answer is a kept row, every rejected one a candidate that failed the rules named
    beside it."""
    import datasets

    from synth_assets.core.exporting import PROVENANCE_COLUMNS
    from synth_assets.core.formats import split_documents

    root = sim_runs["root"]
    with duckdb.connect(str(root / "db.duckdb"), read_only=True) as con:
        exported = con.execute("SELECT * FROM alpaca_examples ORDER BY pair_id").df()
        candidates = con.execute("SELECT * FROM preference_candidates").df()
    pairs = exported.rename(columns={"instruction": "question", "output": "answer"})
    pairs["split"] = pairs["document_id"].map(split_documents(list(pairs["document_id"]), 0.1, 42))
    frames, counts = preference_frames(pairs, candidates, provenance_columns=PROVENANCE_COLUMNS)
    assert counts["total_pairs"] > 0
    for name, frame in frames.items():
        for split in ("train", "validation"):
            frame[frame["split"] == split].drop(columns=["split"]).to_json(
                tmp_path / f"{name}-{split}.jsonl", orient="records", lines=True, force_ascii=False)
    loaded = datasets.load_dataset("json", data_files={s: str(tmp_path / f"preference-{s}.jsonl")
                                                       for s in ("train", "validation") if
                                                       (tmp_path / f"preference-{s}.jsonl").stat().st_size})
    _assert_every_row_is_a_kept_chosen_and_a_rejected_by_rule(
        [row for split in loaded.values() for row in split], exported, candidates)


def _assert_every_row_is_a_kept_chosen_and_a_rejected_by_rule(rows, exported, candidates):
    assert rows
    kept = {row.pair_id: row for row in exported.itertuples()}
    found = {row.candidate_id: row for row in candidates.itertuples()}
    for row in rows:
        chosen = kept[row["pair_id"]]
        assert (row["prompt"], row["chosen"]) == (chosen.instruction, chosen.output)
        rejected = found[row["rejected_id"]]
        assert rejected.pair_id == row["pair_id"] and rejected.answer == row["rejected"]
        assert row["rejected_rules"] and set(row["rejected_rules"]) <= set(rejected.reject_reasons)
        assert set(row["rejected_rules"]) <= REJECTED_ANSWER_RULES
        assert not near_identical(row["chosen"], row["rejected"])


def test_examples_preference_split_loads_and_every_row_is_a_kept_chosen_and_a_rejected_by_rule(sim_runs):
    """The export itself (needs training_dataset wired to core/preference.py): a
    `preference` and a `preference_messages` folder that load with `datasets`, listed in
    the card and in dataset_info.json as a ranking dataset."""
    import datasets
    from trl.data_utils import is_conversational

    root, summary = sim_runs["root"], sim_runs["on"]
    assert summary["export_ok"], summary["export_error"]
    folder = Path(summary["export_dir"])
    card = (folder / "README.md").read_text()
    assert "config_name: preference\n" in card, "training_dataset does not export preference pairs yet"
    # As a fine-tuner loads them: the folder's configs (README front matter).
    plain = datasets.load_dataset(str(folder), "preference")
    chat = datasets.load_dataset(str(folder), "preference_messages")
    assert sum(len(split) for split in plain.values()) > 0
    assert {s: len(r) for s, r in plain.items()} == {s: len(r) for s, r in chat.items()}
    with duckdb.connect(str(root / "db.duckdb"), read_only=True) as con:
        exported = con.execute("SELECT * FROM alpaca_examples").df()
        candidates = con.execute("SELECT * FROM preference_candidates").df()
    _assert_every_row_is_a_kept_chosen_and_a_rejected_by_rule(
        [row for split in plain.values() for row in split], exported, candidates)
    assert all(is_conversational(row) for split in chat.values() for row in split)
    assert "## Preference pairs" in card
    info = json.loads((folder / "dataset_info.json").read_text())
    ranking = [entry for entry in info.values() if entry.get("ranking") is True]
    assert len(ranking) == 1 and ranking[0]["file_name"].startswith("preference/")
    assert (folder / ranking[0]["file_name"]).exists()


@pytest.fixture(scope="module")
def model_free_run(tmp_path_factory):
    from synth_assets.definitions import build_definitions
    from synth_assets.resources.generation import GenerationResource
    from synth_assets.run import run_all

    root = tmp_path_factory.mktemp("preference_model_free")
    with dg.instance_for_test() as instance:
        summary = run_all(build_definitions(_resources(root, GenerationResource(), use_judge=True,
                                                       preference_pairs=True)), instance, show_progress=False)
    return root, summary


def test_without_a_model_the_stand_ins_come_from_other_chunks_and_are_filtered_the_same_way(model_free_run):
    root, summary = model_free_run
    assert summary["failed"] == {}
    with duckdb.connect(str(root / "db.duckdb"), read_only=True) as con:
        closed = con.execute("SELECT p.*, c.body FROM preference_candidates p JOIN document_chunks c USING (chunk_id)"
                             " WHERE origin = 'closed_book'").df()
        kept = set(con.execute("SELECT pair_id FROM filtered_qa_pairs").df()["pair_id"])
    assert len(closed) > 0 and set(closed["pair_id"]) <= kept
    assert set(closed["generator"]) == {"model-free"} and set(closed["prompt_version"]) == {
        "model-free-closed-book-v1"}
    # never the item's own sentence: another chunk's
    assert not any(" ".join(answer.split()) in " ".join(body.split())
                   for answer, body in zip(closed["answer"], closed["body"]))
    rejected = closed[closed["reject_reasons"].map(len) > 0]
    # the question passed its rules as an item's: what fails is the answer
    assert len(rejected) > 0 and all(set(r) & REJECTED_ANSWER_RULES for r in rejected["reject_reasons"])
