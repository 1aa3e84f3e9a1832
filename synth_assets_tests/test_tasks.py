"""Tasks beyond qa (issue 26): settings, planning, the model-free forms, the task rules,
the parsers under schema violations, and the exported rows in chat templates."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from synth_assets.core.filters import FilterConfig, filter_pairs, language_metadata
from synth_assets.core.task_rules import (
    ANSWERABLE_UNANSWERABLE,
    MISSING_REFUSAL,
    REASONING_UNSUPPORTED,
    SINGLE_CHUNK_ANSWERABLE,
    TOO_FEW_TURNS,
    UNGROUNDED_TURN,
    UNRELATED_FOLLOW_UP,
)
from synth_assets.core.tasks import TASKS, allocate, parse_task_shares, pick_partners
from synth_assets.generation.base import GenerationRequest
from synth_assets.generation.prompts import ReplyParseError, parse_reply
from synth_assets.generation.task_plan import plan_requests
from synth_assets.generation.task_prompts import parse_task_reply, task_json_schema
from synth_assets.core.shards import read_split

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "documents"
MIX = "qa=0.4,reasoning=0.2,multi_hop=0.15,conversation=0.15,unanswerable=0.1"

CHUNK = (
    "The mallard is a dabbling duck that breeds throughout the temperate and subtropical Americas. "
    "Mallards feed by dabbling for plant food or grazing, and they eat insects and snails as well. "
    "The male mallard has a glossy green head, while the female is mottled brown. "
    "Mallards form pairs in October and November, and the female lays up to thirteen eggs."
)
OTHER_CHUNK = (
    "Domestic ducks descend from the mallard, which people tamed for meat and eggs. "
    "The Pekin duck is the most common domestic breed and is raised for its meat."
)


# --- settings and planning -------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("qa=0.5,cot=0.5", "unknown task 'cot'"),
    ("qa=0.5,reasoning=0.4", "add up to 0.9"),
    ("qa=0.5,qa=0.5", "given twice"),
    ("qa=lots", "not a number"),
    ("", "no task given"),
])
def test_a_bad_task_setting_stops_the_start_naming_the_setting(text, message):
    from synth_assets.settings import Settings

    with pytest.raises(ValueError, match=message) as caught:
        Settings.from_env({"SYNTH_ASSETS_TASKS": text})
    assert "SYNTH_ASSETS_TASKS" in str(caught.value)


def test_shares_parse_and_the_default_is_qa_alone():
    from synth_assets.resources.generation import GenerationResource

    assert GenerationResource().task_shares == {"qa": 1.0}
    assert parse_task_shares(MIX) == {"qa": 0.4, "reasoning": 0.2, "multi_hop": 0.15, "conversation": 0.15,
                                      "unanswerable": 0.1}


def test_allocation_has_no_bias_on_small_documents():
    """Over many documents of 7 items, each task's mean count is its share of 7 (largest
    remainder would give unanswerable's 0.7 a 1 every time, or never)."""
    shares = parse_task_shares(MIX)
    totals = Counter()
    for i in range(4000):
        totals.update(allocate(f"doc-{i}", 7, shares))
    for task, share in shares.items():
        assert totals[task] / 4000 == pytest.approx(share * 7, rel=0.05)


def test_the_default_plan_is_the_requests_of_before_and_a_mix_plans_every_task():
    chunks = [GenerationRequest("d", f"d#c{i:04d}", text) for i, text in
              enumerate([CHUNK, "An unrelated chunk about tax law and filing deadlines.", OTHER_CHUNK, CHUNK])]
    requests, planned, short = plan_requests("d", chunks, {"qa": 1.0}, 5)
    assert requests == chunks and planned == {"qa": 20} and short == {}
    requests, planned, short = plan_requests("d", chunks, parse_task_shares(MIX), 5)
    assert {r.task for r in requests} == set(TASKS)
    assert sum(planned.values()) >= 18
    hops = [r for r in requests if r.task == "multi_hop"]
    assert hops and all(r.partners and r.link_terms for r in hops)
    # Never a neighbour: chunk 0 and 1, 2 and 3 are next to each other.
    index = {c.chunk_id: i for i, c in enumerate(chunks)}
    assert all(abs(index[r.chunk_id] - index[p]) > 1 for r in hops for p, _ in r.partners)


def test_a_document_too_short_for_multi_hop_says_so_and_does_not_fail():
    chunks = [GenerationRequest("d", "d#c0000", CHUNK), GenerationRequest("d", "d#c0001", OTHER_CHUNK)]
    requests, planned, short = plan_requests("d", chunks, {"qa": 0.5, "multi_hop": 0.5}, 4)
    assert planned["multi_hop"] == 0 and "fewer than 3 chunks" in short["multi_hop"]
    assert {r.task for r in requests} == {"qa"}


def test_partners_are_the_chunks_sharing_terms():
    texts = [CHUNK, "Tax law sets filing deadlines for companies.", "Rivers flood in spring.", OTHER_CHUNK]
    assert pick_partners(0, texts, k=1)[0][0] == 3
    assert "mallard" in pick_partners(0, texts, k=1)[0][1]


# --- the task rules: each code fires on its defect and not on a good item ----------------

def record(task, question, answer, chunk=CHUNK, **extra):
    return {"question": question, "answer": answer, "chunk_text": chunk, "task": task, **extra}


GOOD = {
    "reasoning": record("reasoning", "What do mallards eat?", "Mallards eat insects and snails as well as plant food.",
                        reasoning="Step 1: Mallards feed by dabbling for plant food or grazing.\n"
                                  "Step 2: They eat insects and snails as well."),
    "multi_hop": record("multi_hop", "Where does the mallard breed, and which domestic breed descends from it?",
                        "The mallard breeds throughout the temperate and subtropical Americas. The Pekin duck "
                        "is the most common domestic breed.",
                        chunk=CHUNK + "\n\n" + OTHER_CHUNK, source_texts=[CHUNK, OTHER_CHUNK]),
    "conversation": record("conversation", "Where does the mallard breed?", "",
                           turns=json.dumps([
                               ["Where does the mallard breed?",
                                "The mallard breeds throughout the temperate and subtropical Americas."],
                               ["And what does the male mallard look like?",
                                "The male mallard has a glossy green head."],
                               ["How many eggs does the female mallard lay?",
                                "The female lays up to thirteen eggs."]])),
    "unanswerable": record("unanswerable", "How long do mallards live in the wild?",
                           "The documents do not say how long mallards live. What they say about mallards: "
                           "Mallards form pairs in October and November.", document_text=CHUNK),
}
DEFECTS = [
    (REASONING_UNSUPPORTED, {**GOOD["reasoning"], "reasoning": "Step 1: Mallards feed by dabbling for plant food.\n"
                                                               "Step 2: Mallards migrate to Siberia every winter "
                                                               "to hunt fish."}),
    (SINGLE_CHUNK_ANSWERABLE, {**GOOD["multi_hop"], "answer": "The mallard breeds throughout the temperate and "
                                                              "subtropical Americas."}),
    (UNGROUNDED_TURN, {**GOOD["conversation"], "turns": json.dumps([
        ["Where does the mallard breed?", "The mallard breeds throughout the temperate and subtropical Americas."],
        ["And what does it eat?", "Mallards eat mostly bread crumbs thrown by tourists in city parks."],
        ["How many eggs does the female lay?", "The female lays up to thirteen eggs."]])}),
    (UNRELATED_FOLLOW_UP, {**GOOD["conversation"], "turns": json.dumps([
        ["Where does the mallard breed?", "The mallard breeds throughout the temperate and subtropical Americas."],
        ["What does the male mallard look like?", "The male mallard has a glossy green head."],
        ["When was the Eiffel Tower built?", "The female lays up to thirteen eggs."]])}),
    (TOO_FEW_TURNS, {**GOOD["conversation"], "turns": json.dumps([
        ["Where does the mallard breed?", "The mallard breeds throughout the temperate and subtropical Americas."]])}),
    (ANSWERABLE_UNANSWERABLE, {**GOOD["unanswerable"], "question": "When do mallards form pairs?"}),
    (MISSING_REFUSAL, {**GOOD["unanswerable"], "answer": "Mallards form pairs in October and November."}),
]


@pytest.mark.parametrize("task", sorted(GOOD))
def test_a_good_item_of_each_task_is_kept(task):
    assert filter_pairs([GOOD[task]]) == [[]]


@pytest.mark.parametrize("code, item", DEFECTS, ids=[code for code, _ in DEFECTS])
def test_each_task_defect_is_rejected_with_its_code(code, item):
    assert code in filter_pairs([item])[0]


def test_an_unanswerable_answer_is_not_a_refusal_but_a_qa_one_is():
    declined = GOOD["unanswerable"]["answer"]
    assert "refusal_or_meta_talk" in filter_pairs([record("qa", "How long do mallards live?", declined)])[0]
    assert filter_pairs([GOOD["unanswerable"]]) == [[]]


def test_a_conversation_is_deduplicated_as_a_whole():
    same = dict(GOOD["conversation"])
    assert filter_pairs([GOOD["conversation"], same])[1] == ["duplicate_question"]


# --- parsers and curation under schema violations (issue 28, item 13) --------------------

def _violations(rng: random.Random):
    values = [None, float("nan"), 3, 2.5, True, [], {}, "", "  ", ["a", 1], {"x": None}, "text", -1]
    fields = ["question", "answer", "question_type", "difficulty", "reasoning", "excerpts", "missing", "turns",
              "evidence", "language", "user", "assistant"]
    for _ in range(300):
        item = {f: rng.choice(values) for f in rng.sample(fields, rng.randint(0, len(fields)))}
        if rng.random() < 0.5:
            item["question"], item["answer"] = "Where does the mallard breed?", "It breeds in the Americas."
        if rng.random() < 0.3:
            item["turns"] = [rng.choice([{"user": rng.choice(values), "assistant": "x"}, None, 5, {"user": "q?"}])
                             for _ in range(rng.randint(0, 7))]
        yield item


@pytest.mark.parametrize("task", TASKS)
def test_parsers_take_any_schema_violation_as_a_parse_error_or_items(task):
    rng = random.Random(task)
    for item in _violations(rng):
        reply = json.dumps({"items" if task != "qa" else "pairs": [item, rng.choice([item, None, 7])]},
                           default=str, allow_nan=True)
        try:
            parsed = parse_task_reply(task, reply, 3) if task != "qa" else parse_reply(reply, 3)
        except ReplyParseError:
            continue
        for p in parsed:
            assert isinstance(p["question"], str) and p["question"] and isinstance(p["answer"], str)
            assert p.get("difficulty") is None or 1 <= p["difficulty"] <= 5


def test_curation_takes_fields_of_any_type_without_crashing():
    rng = random.Random(13)
    records = []
    for item in _violations(rng):
        records.append({**item, "chunk_text": rng.choice([CHUNK, None, float("nan")]),
                        "task": rng.choice([*TASKS, None, float("nan"), 4]),
                        "turns": rng.choice([None, float("nan"), "not json", json.dumps([[1, 2]]), item.get("turns")])
                        if not isinstance(item.get("turns"), str) else item["turns"],
                        "source_texts": rng.choice([None, [CHUNK, None], "x"]),
                        "language": rng.choice(["en", None, float("nan"), 3])})
    frame = pd.DataFrame(records)  # as the curate step holds them: missing values become NaN
    reasons = filter_pairs(frame.to_dict("records"), FilterConfig(use_judge=True))
    assert len(reasons) == len(records)
    metadata = language_metadata(frame["language"].map(lambda v: v if isinstance(v, str) else None))
    assert "undetermined" in metadata["languages"]


def test_an_undetermined_language_read_back_as_nan_counts_as_undetermined():
    """Issue 28 item 13: a pandas column of languages holds NaN where none was detected;
    language_metadata raised AttributeError: 'float' object has no attribute 'lower'."""
    assert language_metadata(pd.Series(["en", None, float("nan")]))["languages"] == {"undetermined": 2, "en": 1}


def test_schemas_ask_for_exactly_the_items_wanted():
    schema = task_json_schema("conversation", 2)
    assert schema["properties"]["items"]["minItems"] == schema["properties"]["items"]["maxItems"] == 2
    assert "turns" in schema["properties"]["items"]["items"]["properties"]


# --- the pipeline: make run's model-free path with every task ----------------------------

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
          "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
          "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
          "{% endif %}")
# Mistral's strict template: roles must alternate user/assistant, starting with the user.
MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
           "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
           "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
           "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
           "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}")


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """make run's job on every example document, model-free, with the five tasks mixed."""
    import dagster as dg

    from synth_assets.definitions import build_definitions
    from synth_assets.resources.curation import CurationResource
    from synth_assets.resources.documents import DocumentsFolder
    from synth_assets.resources.export import ExportSettings
    from synth_assets.resources.generation import GenerationResource
    from synth_assets.resources.review import ReviewSettings
    from synth_assets.resources.storage import PipelineDatabase
    from synth_assets.run import run_all

    root = tmp_path_factory.mktemp("mixed")
    folder = root / "documents"
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns("*.md", "LICENSE*"))
    shutil.copy(EXAMPLES / "wiki.md", folder / "wiki.md")
    resources = {
        "documents": DocumentsFolder(path=str(folder)),
        "duckdb": PipelineDatabase(database=str(root / "db.duckdb")),
        "generation": GenerationResource(tasks=MIX),
        "curation": CurationResource(),
        "export": ExportSettings(export_dir=str(root / "exports")),
        "review": ReviewSettings(),
    }
    with dg.instance_for_test() as instance:
        summary = run_all(build_definitions(resources), instance, show_progress=False)
    version = (root / "exports" / "LATEST").read_text().strip()
    return summary, root / "exports" / version, root / "db.duckdb"


@pytest.mark.slow
def test_make_run_exports_every_task_within_its_share(mixed_run):
    summary, folder, _ = mixed_run
    assert summary["failed"] == {}
    rows = pd.concat([read_split(folder, "messages", split) for split in ("train", "validation")])
    shares = parse_task_shares(MIX)
    realised = rows["task"].value_counts(normalize=True).to_dict()
    assert set(realised) == set(TASKS)
    for task, share in shares.items():
        assert abs(realised[task] - share) <= 0.05, (task, realised)
    for column in ("task", "question_type", "difficulty", "source_chunk_ids"):
        assert rows[column].notna().all(), column
    assert (rows.loc[rows["task"] == "multi_hop", "source_chunk_ids"].map(len) >= 2).all()
    conversations = rows[rows["task"] == "conversation"]
    assert (conversations["messages"].map(len) >= 6).all()  # three turns or more
    reasoning = rows[rows["task"] == "reasoning"]["messages"]
    assert all(m[-1].get("reasoning_content") for m in reasoning)


@pytest.mark.slow
def test_the_card_shows_the_mix_table_and_its_chart(mixed_run):
    from PIL import Image

    _, folder, _ = mixed_run
    card = (folder / "README.md").read_text()
    assert "## Tasks" in card and "![Items per task and difficulty](tasks.png)" in card
    for task in TASKS:
        assert f"| {task} |" in card
    with Image.open(folder / "tasks.png") as image:
        assert image.format == "PNG" and image.size == (900, 450)


@pytest.mark.slow
def test_every_exported_row_renders_in_three_chat_templates_and_loads(mixed_run):
    import datasets

    from synth_assets.core.chunking import _fallback_tokenizer

    _, folder, _ = mixed_run
    tokenizer = _fallback_tokenizer()
    tokenizer.bos_token, tokenizer.eos_token = "<s>", "</s>"
    rendered = 0
    for name in ("messages", "messages_cot", "sharegpt", "sharegpt_cot", "alpaca", "alpaca_cot"):
        loaded = datasets.load_dataset(str(folder), name)
        assert sum(len(split) for split in loaded.values()) > 0
        for split in loaded.values():
            for row in split:
                if name.startswith("messages"):
                    messages = row["messages"]
                elif name.startswith("sharegpt"):
                    messages = [{"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]}
                                for t in row["conversations"]]
                else:
                    messages = [{"role": "user", "content": row["instruction"]},
                                {"role": "assistant", "content": row["output"]}]
                for template in (CHATML, LLAMA3, MISTRAL):
                    text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False)
                    assert messages[-1]["content"].strip()[:40] in text
                    rendered += 1
    assert rendered > 100


@pytest.mark.slow
def test_every_kept_item_of_the_mixed_run_passes_its_task_rules_again(mixed_run):
    """What was kept still passes, and the rejected items of each task name reasons."""
    _, _, database = mixed_run
    with duckdb.connect(str(database), read_only=True) as con:
        rejected = con.execute("SELECT task, reject_reasons FROM rejected_qa_pairs").df()
        kept = con.execute("SELECT task, difficulty, difficulty_proxy FROM filtered_qa_pairs").df()
    assert set(kept["task"]) == set(TASKS)
    assert kept["difficulty"].between(1, 5).all() and kept["difficulty_proxy"].between(1, 5).all()
    assert all(len(reasons) for reasons in rejected["reject_reasons"])


@pytest.mark.slow
def test_every_exported_row_of_every_task_cites_spans_found_at_their_offsets(mixed_run):
    from synth_assets_tests.test_evidence import (
        _assert_every_row_has_evidence_found_at_its_offsets,
        _exported_rows_and_chunks,
    )

    _, folder, database = mixed_run
    _assert_every_row_has_evidence_found_at_its_offsets(*_exported_rows_and_chunks(folder, str(database)))


@pytest.mark.slow
def test_the_card_shows_the_dataset_at_a_glance_and_make_run_ends_with_its_path(mixed_run):
    from PIL import Image

    from synth_assets.run import format_summary

    summary, folder, _ = mixed_run
    card = (folder / "README.md").read_text()
    assert "## The dataset at a glance" in card
    for name in ("grounding.png", "rejections.png", "coverage.png"):  # the judge is off: no judge chart
        assert f"]({name})" in card
        with Image.open(folder / name) as image:
            assert image.format == "PNG" and image.size == (900, 450)
    assert "judge_scores.png" not in card
    assert format_summary(summary, 1.0).splitlines()[-1].strip() == f"card:            {folder / 'README.md'}"
