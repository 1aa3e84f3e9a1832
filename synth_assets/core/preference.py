"""Preference pairs (DPO) from what curation already knows.

A preference row is one question (`prompt`), an answer curation kept (`chosen`: grounded
in its chunk, passed every rule) and an answer to the same question that a named rule
rejected (`rejected`), with the rules in `rejected_rules`. The rejected answers come from
the `preference_candidates` table the curate step writes:

- `closed_book`: the question asked without its source (a model answering from memory;
  without a model, a stand-in: the best-matching sentence of another chunk, see
  generation/model_free_tasks.py), filtered against the item's chunk like any answer;
- `generator`: a rejected item of the same document asking the same question (after
  normalisation) as a kept one, e.g. another completion of the same chunk.

Only rules that say something about the answer make a rejected answer
(`REJECTED_ANSWER_RULES`): a candidate that failed only the citation rule (its quotes, which
no training row holds) or a question rule (duplicates, length) is not worse as an answer.
A candidate that passed every rule is not used: nothing says it is worse. A pair whose
rejected answer is near-identical to the chosen one (rapidfuzz ratio of the normalised
texts at least `NEAR_IDENTICAL_RATIO`) teaches nothing and is dropped. Every candidate
left out is counted, by reason, in the counts the card shows.

Tasks covered: `qa`. Its items are one question and one answer checked against one chunk,
so a closed-book answer is a like-for-like alternative. Left out: `reasoning` (a chosen
answer carries its steps; a closed-book reply without them would differ in form as well
as in grounding), `multi_hop` (its rules weigh the join of several chunks), `conversation`
(the prompt is a whole dialogue) and `unanswerable` (its chosen answer declines; its
rules read a declining answer, not a closed-book one).

Two forms, one row per pair in both: `preference` ({prompt, chosen, rejected} strings, as
TRL's DPOTrainer and LLaMA-Factory's `ranking` datasets in Alpaca form load them) and
`preference_messages` (TRL's conversational form: `prompt` the user turn, after the system
turn when one is configured, `chosen` and `rejected` one assistant message each).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping

import pandas as pd
from rapidfuzz import fuzz

from synth_assets.core.dedup import normalise_text
from synth_assets.core.evidence import UNSUPPORTED_CLAIM
from synth_assets.core.filters import (
    ANSWER_REPEATS_QUESTION,
    ANSWER_TOO_LONG,
    ANSWER_TOO_SHORT,
    INSTRUCTION_LIKE,
    LANGUAGE_MISMATCH,
    LOW_INFORMATION,
    LOW_JUDGE_SCORE,
    LOW_SEMANTIC_SIMILARITY,
    REFUSAL,
    UNGROUNDED,
)
from synth_assets.core.tasks import QA

CLOSED_BOOK = "closed_book"
GENERATOR = "generator"
ORIGINS = (CLOSED_BOOK, GENERATOR)
PREFERENCE_TASKS = (QA,)
PREFERENCE_FORMATS = ("preference", "preference_messages")
# Rules that find fault with the answer itself. Left out: the citation rule (quotes are not
# training text), the question rules (length, form, passage dependence, duplicates: the
# question is the chosen item's own) and `empty`.
REJECTED_ANSWER_RULES = frozenset({
    UNGROUNDED, UNSUPPORTED_CLAIM, LOW_JUDGE_SCORE, LOW_SEMANTIC_SIMILARITY, REFUSAL, ANSWER_REPEATS_QUESTION,
    LOW_INFORMATION, LANGUAGE_MISMATCH, INSTRUCTION_LIKE, ANSWER_TOO_SHORT, ANSWER_TOO_LONG,
})
# rapidfuzz ratio (0-100) of the normalised chosen and rejected answers from which the two
# are one answer: a changed word or punctuation mark is no preference to learn.
NEAR_IDENTICAL_RATIO = 90.0

CANDIDATE_COLUMNS = ["candidate_id", "pair_id", "document_id", "chunk_id", "task", "origin", "question", "answer",
                     "reject_reasons", "reason_details", "judge_score", "grounding", "generator", "model",
                     "prompt_version"]
# Why a candidate did not become a pair (the keys of counts["left_out"]).
LEFT_OUT_REASONS = {
    "passed_every_rule": "passed every rule: nothing says it is worse, not used",
    "no_answer_rule": "failed only rules about the question or the citations, not the answer",
    "no_answer": "no answer text",
    "chosen_not_in_dataset": "its kept item is not in this dataset (left out by review, duplicates, eval sets, "
                             "or its document)",
    "question_changed": "the kept item's question was edited by a reviewer: the answer is to another question",
    "near_identical": f"near-identical to the chosen answer (ratio >= {NEAR_IDENTICAL_RATIO:.0f})",
    "repeated": "the same rejected answer already pairs with this chosen one",
}


def answer_rules(reasons: Iterable[str] | None) -> list[str]:
    """The rules among `reasons` that fault the answer (REJECTED_ANSWER_RULES), in order."""
    return [reason for reason in (reasons if reasons is not None else []) if reason in REJECTED_ANSWER_RULES]


def near_identical(a: str, b: str, threshold: float = NEAR_IDENTICAL_RATIO) -> bool:
    """Whether two answers are one answer (case, punctuation and spacing aside)."""
    return fuzz.ratio(normalise_text(a), normalise_text(b)) >= threshold


def generator_candidates(kept: pd.DataFrame, rejected: pd.DataFrame) -> pd.DataFrame:
    """Rejected items of a document that ask the question of one of its kept items (after
    normalisation) in a task PREFERENCE_TASKS covers: candidates of origin `generator`.
    Their reasons are kept whole; preference_rows uses those about the answer."""
    rows = []
    if len(kept) and len(rejected):
        tasks = kept["task"].fillna(QA) if "task" in kept else pd.Series(QA, index=kept.index)
        by_question = {normalise_text(question): row for question, row, task in
                       zip(kept["question"], kept.to_dict("records"), tasks) if task in PREFERENCE_TASKS}
        rejected_tasks = rejected["task"].fillna(QA) if "task" in rejected else pd.Series(QA, index=rejected.index)
        for row, task in zip(rejected.to_dict("records"), rejected_tasks):
            chosen = by_question.get(normalise_text(row.get("question")))
            if task not in PREFERENCE_TASKS or chosen is None or chosen["document_id"] != row["document_id"]:
                continue
            rows.append({
                "candidate_id": row["pair_id"], "pair_id": chosen["pair_id"], "document_id": row["document_id"],
                "chunk_id": row["chunk_id"], "task": task, "origin": GENERATOR, "question": row.get("question"),
                "answer": row.get("answer"), "reject_reasons": list(row.get("reject_reasons") or []),
                "reason_details": row.get("reason_details"), "judge_score": row.get("judge_score"),
                "grounding": row.get("grounding"), "generator": row.get("generator"), "model": row.get("model"),
                "prompt_version": row.get("prompt_version")})
    return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)


def preference_rows(kept: pd.DataFrame, candidates: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """One row per (kept item, rejected answer): `prompt` (the kept item's question),
    `chosen` (its answer), `rejected`, `rejected_rules` (the answer rules it failed),
    `rejected_origin`, `rejected_id`, `rejected_generator`, `rejected_model`,
    `rejected_prompt_version`, and every column of `kept` besides question and answer
    (its provenance and `split`, when given), in the order of `kept` then `candidates`.

    `kept`: the items of the dataset (pair_id, question, answer, ...): the rows as
    exported, after review edits and the cross-document and eval-set removals, so every
    chosen answer is a row of the dataset. `candidates`: preference_candidates rows.
    The counts say how many candidates there were per origin, how many became pairs, and
    why the others did not (LEFT_OUT_REASONS)."""
    extra = [column for column in kept.columns if column not in ("question", "answer")]
    out_columns = ["prompt", "chosen", "rejected", "rejected_rules", "rejected_origin", "rejected_id",
                   "rejected_generator", "rejected_model", "rejected_prompt_version", *extra]
    counts: dict = {"candidates": Counter(), "pairs": Counter(), "left_out": Counter(), "rules": Counter()}
    chosen_of = {row["pair_id"]: row for row in kept.to_dict("records")}
    by_pair: dict[str, list[dict]] = {}
    for candidate in candidates.to_dict("records") if len(candidates) else []:
        by_pair.setdefault(candidate["pair_id"], []).append(candidate)
    rows = []
    for pair_id, chosen in chosen_of.items():
        seen: set[str] = set()
        for candidate in by_pair.get(pair_id, []):
            origin = candidate["origin"]
            counts["candidates"][origin] += 1
            why = _left_out(chosen, candidate, seen)
            if why:
                counts["left_out"][why] += 1
                continue
            rules = answer_rules(_reasons(candidate["reject_reasons"]))
            seen.add(normalise_text(candidate["answer"]))
            counts["pairs"][origin] += 1
            counts["rules"].update(rules)
            rows.append({"prompt": chosen["question"], "chosen": chosen["answer"], "rejected": candidate["answer"],
                         "rejected_rules": rules, "rejected_origin": origin,
                         "rejected_id": candidate["candidate_id"], "rejected_generator": candidate.get("generator"),
                         "rejected_model": candidate.get("model"),
                         "rejected_prompt_version": candidate.get("prompt_version"),
                         **{column: chosen.get(column) for column in extra}})
    # Candidates of items that are not in the dataset (never looked at above).
    for pair_id, found in by_pair.items():
        if pair_id not in chosen_of:
            for candidate in found:
                counts["candidates"][candidate["origin"]] += 1
                counts["left_out"]["chosen_not_in_dataset"] += 1
    frame = pd.DataFrame(rows, columns=out_columns)
    return frame, {key: dict(value) for key, value in counts.items()} | {"total_pairs": len(frame)}


def _reasons(value) -> list[str]:
    # From DuckDB a VARCHAR[] comes as a numpy array, from pandas code as a list.
    return [str(reason) for reason in value] if value is not None and not isinstance(value, str) else []


def _left_out(chosen: Mapping, candidate: Mapping, seen: set[str]) -> str | None:
    reasons = _reasons(candidate["reject_reasons"])
    answer = candidate.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        return "no_answer"
    if not reasons:
        return "passed_every_rule"
    if not answer_rules(reasons):
        return "no_answer_rule"
    if normalise_text(candidate.get("question")) != normalise_text(chosen["question"]):
        return "question_changed"
    if near_identical(answer, chosen["answer"]):
        return "near_identical"
    if normalise_text(answer) in seen:
        return "repeated"
    return None


def preference_frames(pairs: pd.DataFrame, candidates: pd.DataFrame, *, include_provenance: bool = True,
                      system_prompt: str | None = None, provenance_columns: Iterable[str] = ()
                      ) -> tuple[dict[str, pd.DataFrame], dict]:
    """The two export frames ("preference", "preference_messages") of the dataset's rows
    `pairs` (question, answer, split, provenance: what training_dataset holds before
    build_format_rows; rows of other tasks and human rows are simply never paired) and
    the candidates, each with `split` (the chosen row's) and, with `include_provenance`,
    `provenance_columns` (lists decoded from their stored JSON, as the other formats do)
    and the rejected answer's origin, id, rules and prompt version. Also the counts."""
    keep = ["pair_id", "question", "answer", "split"]
    provenance = [c for c in provenance_columns if c in pairs and c not in keep] if include_provenance else []
    rows, counts = preference_rows(pairs.reindex(columns=[*keep, *provenance]), candidates)
    for column in ("source_chunk_ids", "evidence"):
        if column in rows:
            rows[column] = [json.loads(value) if isinstance(value, str) else (value if isinstance(value, list) else [])
                            for value in rows[column]]
    if "difficulty" in rows:
        rows["difficulty"] = rows["difficulty"].astype("Int64")
    about = ["rejected_rules", "rejected_origin"] + (
        ["rejected_id", "rejected_generator", "rejected_model", "rejected_prompt_version", "pair_id", *provenance]
        if include_provenance else [])
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    plain = rows[["prompt", "chosen", "rejected"]].copy()
    if system_prompt:
        plain.insert(0, "system", system_prompt)
    messages = pd.DataFrame({
        "prompt": [[*system, {"role": "user", "content": prompt}] for prompt in rows["prompt"]],
        "chosen": [[{"role": "assistant", "content": answer}] for answer in rows["chosen"]],
        "rejected": [[{"role": "assistant", "content": answer}] for answer in rows["rejected"]],
    }, columns=["prompt", "chosen", "rejected"])
    tail = rows[[*about, "split"]].reset_index(drop=True)
    frames = {"preference": pd.concat([plain.reset_index(drop=True), tail], axis=1),
              "preference_messages": pd.concat([messages, tail], axis=1)}
    counts["splits"] = {split: int((rows["split"] == split).sum()) for split in ("train", "validation")}
    return frames, counts


def add_counts(*counts: Mapping) -> dict:
    """The counts of several preference_frames calls (one per shard bucket) as one: what
    the card shows for the whole dataset."""
    total: dict = {}
    for found in counts:
        for key, value in found.items():
            if isinstance(value, Mapping):
                into = total.setdefault(key, {})
                for name, n in value.items():
                    into[name] = into.get(name, 0) + n
            else:
                total[key] = total.get(key, 0) + value
    return total


def llama_factory_ranking_entry(name: str, file_name: str = "preference/train", with_system: bool = False) -> dict:
    """LLaMA-Factory's dataset_info.json entry for the `preference` rows (`file_name`: their
    train file or folder, as the export lays them out): a ranking dataset in Alpaca form
    (string prompt, chosen and rejected; the system turn when one is configured)."""
    columns = {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}
    if with_system:
        columns["system"] = "system"
    return {f"{name}_preference": {"file_name": file_name, "formatting": "alpaca", "ranking": True,
                                   "columns": columns}}


def preference_section(counts: Mapping | None, name: str = "synth_assets") -> str:
    """The card's account of the preference pairs: what they are, how many per origin and
    rule, and why the other candidates were left out. Empty when preference pairs are off."""
    if not counts:
        return ""
    pairs, candidates = counts.get("pairs") or {}, counts.get("candidates") or {}
    origin_lines = "\n".join(f"| {origin} | {candidates.get(origin, 0)} | {pairs.get(origin, 0)} |"
                             for origin in ORIGINS)
    rule_lines = "\n".join(f"| {rule} | {n} |" for rule, n in sorted((counts.get("rules") or {}).items(),
                                                                     key=lambda item: -item[1])) or "| none | 0 |"
    left_out = counts.get("left_out") or {}
    left_lines = "\n".join(f"| {LEFT_OUT_REASONS.get(reason, reason)} | {n} |"
                           for reason, n in sorted(left_out.items(), key=lambda item: -item[1])) or "| none | 0 |"
    splits = counts.get("splits") or {}
    return f"""
## Preference pairs

{counts.get('total_pairs', 0)} pairs for preference tuning (DPO): `preference`
({{prompt, chosen, rejected}}, as TRL's DPOTrainer and LLaMA-Factory's ranking datasets
load it; `{name}_preference` in `dataset_info.json`) and `preference_messages` (TRL's
conversational form: `prompt` a list with the user turn, `chosen` and `rejected` one
assistant message each). {splits.get('train', 0)} in train, {splits.get('validation', 0)} in validation
(the split of the chosen row's document).

`chosen` is an answer of this dataset (kept: grounded in its chunk, every rule passed);
`rejected` answers the same question and failed the rules named in `rejected_rules`.
It is either the question asked without its source (`closed_book`: a model answering
from memory; without a model, the best-matching sentence of another chunk of the
document) or a rejected answer the generator wrote to the same question (`generator`).
Only `qa` items are paired.

| origin | candidates | pairs |
| --- | --- | --- |
{origin_lines}

| rule failed by the rejected answer | pairs |
| --- | --- |
{rule_lines}

| candidates left out | count |
| --- | --- |
{left_lines}
"""
