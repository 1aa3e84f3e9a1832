"""Great Expectations suites for the pipeline's tables (no Dagster here).

Each suite is a list of expectations run against a pandas DataFrame of one document;
the result is turned into check metadata: every expectation with its outcome, its
observed value and a few failing values.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache

import pandas as pd

# GX would otherwise try to send usage statistics and draw progress bars in the logs.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import great_expectations as gx  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402

from synth_assets.core.formats import SHAREGPT_ROLE_SEQUENCES, sharegpt_roles  # noqa: E402
from synth_assets.core.task_rules import claims_of_unanswerable, dedup_text, task_of, turns_of  # noqa: E402
from synth_assets.core.tasks import CONVERSATION, UNANSWERABLE  # noqa: E402

GENERATED_PAIRS_SUITE = "generated_qa_pairs_suite"
FILTERED_PAIRS_SUITE = "filtered_qa_pairs_suite"
ALPACA_SUITE = "alpaca_examples_suite"
SHAREGPT_SUITE = "sharegpt_examples_suite"


# At most this many failing rows per expectation are kept for the check's metadata.
FAILING_ROWS_PER_EXPECTATION = 5
# Columns that identify a row, shown beside the failing value (the first present is used).
ROW_ID_COLUMNS = ("pair_id", "chunk_id", "document_id", "row")


@dataclass
class SuiteResult:
    success: bool
    metadata: dict
    failed: list[str]
    # A few failing rows: {"expectation", "row" (its pair or chunk id), "column", "value"}.
    failing_rows: list[dict] = field(default_factory=list)
    suite: str = ""


@lru_cache(maxsize=1)
def _batch_definition():
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("synth_assets")
    asset = source.add_dataframe_asset("partition_rows")
    return asset.add_batch_definition_whole_dataframe("whole_partition")


def run_suite(name: str, expectations: list, frame: pd.DataFrame) -> SuiteResult:
    """Validate `frame` against `expectations`; one metadata entry per expectation."""
    suite = gx.ExpectationSuite(name=name, expectations=expectations)
    batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(suite, result_format="SUMMARY")
    metadata: dict = {"rows": len(frame)}
    failed = []
    failing_rows: list[dict] = []
    for item in result.results:
        config = item.expectation_config
        column = config.kwargs.get("column", "table")
        label = f"{config.type.removeprefix('expect_')}[{column}]"
        details = {"success": bool(item.success)}
        for key in ("observed_value", "unexpected_count", "unexpected_percent"):
            if key in item.result and item.result[key] is not None:
                value = item.result[key]
                details[key] = round(value, 3) if isinstance(value, float) else value
        unexpected = item.result.get("partial_unexpected_list")
        if unexpected:
            details["failing_values"] = [str(v)[:120] for v in unexpected[:5]]
        metadata[label] = details
        if not item.success:
            failed.append(label)
            failing_rows += _failing_rows(frame, label, column, item.result.get("partial_unexpected_index_list") or [])
    return SuiteResult(success=bool(result.success), metadata=metadata, failed=failed,
                       failing_rows=failing_rows, suite=name)


def _failing_rows(frame: pd.DataFrame, label: str, column: str, indices: list) -> list[dict]:
    """The rows GX reported as unexpected (by the frame's index), with their id and value."""
    id_column = next((c for c in ROW_ID_COLUMNS if c in frame.columns), None)
    rows = []
    for index in indices[:FAILING_ROWS_PER_EXPECTATION]:
        if index not in frame.index:
            continue
        row = frame.loc[index]
        rows.append({
            "expectation": label,
            "row": str(row[id_column]) if id_column else str(index),
            "column": column,
            "value": str(row[column])[:120] if column in frame.columns else "",
        })
    return rows


def _pair_expectations(min_q: int, max_q: int, min_a: int, max_a: int) -> list:
    E = gx.expectations
    return [
        *(E.ExpectColumnValuesToNotBeNull(column=c) for c in ("pair_id", "chunk_id", "question", "answer", "generator", "prompt_version")),
        E.ExpectColumnValuesToBeUnique(column="pair_id"),
        E.ExpectColumnValueLengthsToBeBetween(column="question", min_value=min_q, max_value=max_q),
        E.ExpectColumnValueLengthsToBeBetween(column="answer", min_value=min_a, max_value=max_a),
    ]


def validate_generated_pairs(pairs: pd.DataFrame, chunk_ids: set[str]) -> SuiteResult:
    """Generation sanity: complete rows, unique ids, every pair traced to a chunk of this document."""
    E = gx.expectations
    expectations = [
        *(E.ExpectColumnValuesToNotBeNull(column=c) for c in ("pair_id", "chunk_id", "question", "answer", "generator", "prompt_version")),
        E.ExpectColumnValuesToBeUnique(column="pair_id"),
        E.ExpectColumnValueLengthsToBeBetween(column="question", min_value=1),
        E.ExpectColumnValueLengthsToBeBetween(column="answer", min_value=1),
        E.ExpectColumnValuesToBeInSet(column="chunk_id", value_set=sorted(chunk_ids) or [""]),
    ]
    return run_suite(GENERATED_PAIRS_SUITE, expectations, pairs)


def retention_bounds(generated: int, min_retention: float, max_retention: float, min_pairs: int) -> tuple[int, int]:
    """The number of kept pairs a document with `generated` pairs may have."""
    import math

    if generated < min_pairs:
        return 0, generated
    return math.ceil(min_retention * generated), math.floor(max_retention * generated)


# The share of an answer's words (4 letters or more) that its stored chunk text must hold.
# Deliberately simpler and looser than the filter's stemmed grounding score: it is a net
# for what the filter cannot see (a chunk rewritten after filtering, a pair attached to
# the wrong chunk), not a second run of the filter's arithmetic.
MIN_ANSWER_SUPPORT = 0.5
_WORD = r"\w{4,}"


def answer_support(answer: str | None, chunk_text: str | None) -> float:
    """Share of the answer's distinct words of 4+ letters found in the chunk text (0 when
    the chunk is missing)."""
    import re

    words = set(re.findall(_WORD, answer.lower() if isinstance(answer, str) else ""))
    if not words:  # an empty answer is the not-null expectation's to report
        return 1.0
    found = set(re.findall(_WORD, chunk_text.lower() if isinstance(chunk_text, str) else ""))
    return len(words & found) / len(words)


def support_of(pair: dict, texts: dict[str, str]) -> tuple[str, str | None]:
    """(what an item states, the text that must support it): a multi-hop answer against all
    its chunks, an unanswerable one by what it says the source does say, a conversation
    by every assistant turn, the others by their answer against their chunk."""
    task = task_of(pair)
    answer = pair.get("answer")
    sources = pair.get("source_chunk_ids")
    chunk_ids = json.loads(sources) if isinstance(sources, str) and sources.startswith("[") else [pair.get("chunk_id")]
    text = "\n".join(texts[c] for c in chunk_ids if c in texts) if any(c in texts for c in chunk_ids) else None
    if task == UNANSWERABLE:
        answer = claims_of_unanswerable(answer)[1] if isinstance(answer, str) else answer
    elif task == CONVERSATION and turns_of(pair):
        answer = " ".join(a for _, a in turns_of(pair))
    return answer, text


def validate_filtered_pairs(pairs: pd.DataFrame, chunks: pd.DataFrame, rejected_ids: set[str],
                            kept_bounds: tuple[int, int] | None = None) -> SuiteResult:
    """The kept pairs, on what the filter does not already guarantee: complete rows, unique
    ids and questions, each answer supported by its chunk's stored text, each chunk one of
    this document's (`chunks`: chunk_id, text), no kept pair also among the rejected ones,
    and (with `kept_bounds`) a retention rate within bounds. A function of DataFrames, so
    several documents can be validated in one frame."""
    E = gx.expectations
    texts = dict(zip(chunks["chunk_id"], chunks["text"]))
    # A question may repeat across documents (cross_document_duplicates handles that at
    # export), not within one: scoped by document, so documents can be validated together.
    frame = pairs.assign(
        # A conversation's question is all its user turns: dedup judged it as a whole.
        normalised_question=pairs["document_id"].astype(str) + " :: " + pd.Series(
            [dedup_text(p) for p in pairs.to_dict("records")], index=pairs.index, dtype=object).str.lower()
        .str.replace(r"[^\w ]", "", regex=True).str.split().str.join(" "),
        answer_support=[answer_support(*support_of(p, texts)) for p in pairs.to_dict("records")],
    )
    expectations = [
        *(E.ExpectColumnValuesToNotBeNull(column=c) for c in ("pair_id", "chunk_id", "question", "answer", "generator", "prompt_version")),
        E.ExpectColumnValuesToBeUnique(column="pair_id"),
        E.ExpectColumnValuesToBeUnique(column="normalised_question"),
        E.ExpectColumnValuesToBeInSet(column="chunk_id", value_set=sorted(texts) or [""]),
        E.ExpectColumnValuesToNotBeInSet(column="pair_id", value_set=sorted(rejected_ids) or [""]),
        E.ExpectColumnValuesToBeBetween(column="answer_support", min_value=MIN_ANSWER_SUPPORT, max_value=1.0),
    ]
    if kept_bounds is not None:
        expectations.append(E.ExpectTableRowCountToBeBetween(min_value=kept_bounds[0], max_value=kept_bounds[1]))
    return run_suite(FILTERED_PAIRS_SUITE, expectations, frame)


def validate_alpaca(rows: pd.DataFrame) -> SuiteResult:
    """Alpaca rows: instruction and output present, input a string, provenance kept."""
    E = gx.expectations
    expectations = [
        *(E.ExpectColumnValuesToNotBeNull(column=c) for c in ("instruction", "input", "output", "pair_id", "chunk_id", "source_file")),
        E.ExpectColumnValueLengthsToBeBetween(column="instruction", min_value=1),
        E.ExpectColumnValueLengthsToBeBetween(column="output", min_value=1),
        E.ExpectColumnValuesToBeUnique(column="pair_id"),
    ]
    return run_suite(ALPACA_SUITE, expectations, rows)


def validate_sharegpt(rows: pd.DataFrame) -> SuiteResult:
    """ShareGPT rows: conversations parse and go (system,) human, gpt."""
    E = gx.expectations
    frame = rows.assign(roles=rows["conversations"].map(sharegpt_roles))
    expectations = [
        *(E.ExpectColumnValuesToNotBeNull(column=c) for c in ("conversations", "pair_id", "chunk_id", "source_file")),
        E.ExpectColumnValuesToBeInSet(column="roles", value_set=list(SHAREGPT_ROLE_SEQUENCES)),
        E.ExpectColumnValuesToBeUnique(column="pair_id"),
    ]
    return run_suite(SHAREGPT_SUITE, expectations, frame)


TRAINING_DATASET_SUITE = "training_dataset_suite"


def normalised_text(texts: pd.Series) -> pd.Series:
    """Lower case, punctuation and repeated spaces removed: how questions are compared."""
    return (texts.fillna("").astype(str).str.lower().str.replace(r"[^\w ]", "", regex=True)
            .str.split().str.join(" "))


def validate_training_dataset(rows: pd.DataFrame, counts: pd.DataFrame,
                              whole: pd.DataFrame | None = None) -> SuiteResult:
    """A candidate export, on what can go wrong in it (one suite over its rows, one over its
    row counts, reported as one result).

    `rows`: the candidate's Alpaca rows of both splits, as read from its files: `split`
    (the file they were read from), `instruction`, `output`, `question` (every user turn
    of the row's conversation, from its ShareGPT row: a conversation's first question
    alone may repeat), `document_id` (from the provenance columns, or traced through the
    vetted tables when they were left out; null when it could not be), and, with
    provenance, `pair_id`, `task` and `from_vetted_rows` (the pair is one of the vetted
    formatted rows or a human row).

    `counts`: a row per shard read: `in_files` (rows in its file) and `recorded` (the rows
    its manifest says).

    `whole`: the whole version's checks made through the dataset index and the manifest
    (synth_assets/checks.index_violations): `check` and `violations`, expected 0 each.

    Expected: no pair twice (pair_id, and the same instruction with the same output); no
    question (of the same task) asked by two documents; no document in both splits; every
    pair one of the vetted rows; and each format's files holding exactly the vetted rows.
    With a `contamination` column (eval sets configured: what each row matches in them,
    null when nothing), none may match: a contamination rate of 0.
    """
    E = gx.expectations
    frame = rows.assign(
        instruction_and_output=normalised_text(rows["instruction"]) + " => " + normalised_text(rows["output"]),
    )
    traced = frame[frame["document_id"].notna()]
    task = frame["task"].fillna("").astype(str) + " :: " if "task" in frame else ""
    frame["question_key"] = task + normalised_text(frame["question"])
    documents_per_question = traced.assign(question_key=frame["question_key"]).groupby("question_key")[
        "document_id"].nunique()
    splits_per_document = traced.groupby("document_id")["split"].nunique()
    frame["documents_asking_question"] = frame["question_key"].map(documents_per_question).where(
        frame["document_id"].notna())
    frame["splits_of_document"] = frame["document_id"].map(splits_per_document)
    expectations = [
        E.ExpectColumnValuesToBeUnique(column="instruction_and_output"),
        # Null where the row's document is unknown (provenance left out, text not traced).
        E.ExpectColumnValuesToBeInSet(column="documents_asking_question", value_set=[1]),
        E.ExpectColumnValuesToBeInSet(column="splits_of_document", value_set=[1]),
    ]
    if "contamination" in frame:  # eval sets configured: a contamination rate of 0 (what each row matched)
        expectations.append(E.ExpectColumnValuesToBeNull(column="contamination"))
    if "pair_id" in frame:
        expectations += [
            E.ExpectColumnValuesToNotBeNull(column="pair_id"),
            E.ExpectColumnValuesToBeUnique(column="pair_id"),
            E.ExpectColumnValuesToNotBeNull(column="document_id"),
            E.ExpectColumnValuesToBeInSet(column="from_vetted_rows", value_set=[True]),
        ]
    on_rows = run_suite(TRAINING_DATASET_SUITE, expectations, frame)
    on_counts = run_suite(TRAINING_DATASET_SUITE, [
        E.ExpectColumnPairValuesToBeEqual(column_A="in_files", column_B="recorded"),
    ], counts.assign(row=counts["format"] + "/" + counts["split"]))
    if whole is not None:
        on_whole = run_suite(TRAINING_DATASET_SUITE, [
            E.ExpectColumnValuesToBeInSet(column="violations", value_set=[0]),
            E.ExpectTableRowCountToBeBetween(min_value=1),
        ], whole.assign(row=whole["check"]))
        on_counts = SuiteResult(
            success=on_counts.success and on_whole.success,
            metadata={**on_counts.metadata, **{f"{k} (whole version)": v for k, v in on_whole.metadata.items()}},
            failed=on_counts.failed + [f"{label} (whole version)" for label in on_whole.failed],
            failing_rows=on_counts.failing_rows + on_whole.failing_rows, suite=TRAINING_DATASET_SUITE)
    metadata = {**on_rows.metadata, **{f"{label} (row counts)": details for label, details in on_counts.metadata.items()
                                       if label != "rows"}}
    return SuiteResult(
        success=on_rows.success and on_counts.success,
        metadata=metadata,
        failed=on_rows.failed + [f"{label} (row counts)" for label in on_counts.failed],
        failing_rows=on_rows.failing_rows + on_counts.failing_rows,
        suite=TRAINING_DATASET_SUITE,
    )
