"""Great Expectations suites for the pipeline's tables (no Dagster here).

Each suite is a list of expectations run against a pandas DataFrame of one document;
the result is turned into check metadata: every expectation with its outcome, its
observed value and a few failing values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

import pandas as pd

# GX would otherwise try to send usage statistics and draw progress bars in the logs.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import great_expectations as gx  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402

from synth_assets.core.formats import SHAREGPT_ROLE_SEQUENCES, sharegpt_roles  # noqa: E402

GENERATED_PAIRS_SUITE = "generated_qa_pairs_suite"
FILTERED_PAIRS_SUITE = "filtered_qa_pairs_suite"
ALPACA_SUITE = "alpaca_examples_suite"
SHAREGPT_SUITE = "sharegpt_examples_suite"


# At most this many failing rows per expectation are kept for the check's metadata.
FAILING_ROWS_PER_EXPECTATION = 5
# Columns that identify a row, shown beside the failing value (the first present is used).
ROW_ID_COLUMNS = ("pair_id", "chunk_id", "document_id")


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
        normalised_question=pairs["document_id"].astype(str) + " :: " + pairs["question"].fillna("").str.lower()
        .str.replace(r"[^\w ]", "", regex=True).str.split().str.join(" "),
        answer_support=[answer_support(a, texts.get(c)) for a, c in zip(pairs["answer"], pairs["chunk_id"])],
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


def validate_training_dataset(rows: pd.DataFrame) -> SuiteResult:
    """The merged dataset: no question twice across documents, every document in one
    split only, and both splits named train or validation."""
    E = gx.expectations
    splits_per_document = rows.groupby("document_id")["split"].nunique()
    frame = rows.assign(
        normalised_question=rows["instruction"].fillna("").str.lower().str.replace(r"[^\w ]", "", regex=True).str.split().str.join(" "),
        splits_of_document=rows["document_id"].map(splits_per_document),
    )
    expectations = [
        E.ExpectColumnValuesToBeUnique(column="normalised_question"),
        E.ExpectColumnValuesToBeInSet(column="splits_of_document", value_set=[1]),
        E.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "validation"]),
        E.ExpectColumnValuesToNotBeNull(column="document_id"),
    ]
    return run_suite(TRAINING_DATASET_SUITE, expectations, frame)
