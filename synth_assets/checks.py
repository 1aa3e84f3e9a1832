"""Quality gates: Great Expectations suites in blocking, per-document asset checks.

A failing check stops the downstream assets of that document only; other documents
go on. Each check's metadata lists every expectation with its observed value and a
few failing values.
"""


import json
from pathlib import Path

import dagster as dg
import great_expectations as gx
import pandas as pd

from synth_assets.assets.curate import filtered_qa_pairs
from synth_assets.assets.export import alpaca_examples, sharegpt_examples, training_dataset
from synth_assets.assets.generate import generated_qa_pairs
from synth_assets.batch import check_each_document
from synth_assets.candidates import NO_CANDIDATE, TRAINING_DATASET_CHECK, candidate_to_check
from synth_assets.partitions import documents_partitions
import pyarrow.parquet as pq

from synth_assets.core.exporting import SPLITS
from synth_assets.core.preference import PREFERENCE_FORMATS
from synth_assets.core.shards import MANIFEST_FILE, read_manifest, read_shards, shards_of
from synth_assets.core.diversity import dominant_type, question_type_mix
from synth_assets.core.coverage import Coverage, below_minimum, coverage_by_document, percent
from synth_assets.quality import (
    SuiteResult,
    normalised_text,
    retention_bounds,
    validate_alpaca,
    validate_filtered_pairs,
    validate_generated_pairs,
    validate_sharegpt,
    validate_training_dataset,
)
from synth_assets.core.decontamination import EvalSetError, find_contaminated, load_eval_indexes, parse_eval_sets
from synth_assets.resources.export import EVAL_SETS_ENV, ExportSettings
from synth_assets.resources.curation import CurationResource
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.storage import (
    DATASET_INDEX_TABLE,
    ALPACA_EXAMPLES_TABLE,
    DOCUMENT_CHUNKS_TABLE,
    FILTERED_QA_PAIRS_TABLE,
    GENERATED_QA_PAIRS_TABLE,
    HUMAN_EXAMPLES_TABLE,
    REJECTED_QA_PAIRS_TABLE,
    REVIEWED_QA_PAIRS_TABLE,
    SHAREGPT_EXAMPLES_TABLE,
    read_partition,
    read_partitions,
)

GENERATED_PAIRS_CHECK = "generated_pairs_are_complete_and_traceable"
FILTERED_PAIRS_CHECK = "filtered_pairs_pass_quality_suite"
QUESTION_TYPE_DIVERSITY_CHECK = "question_types_are_diverse"
COVERAGE_CHECK = "documents_are_covered"
ALPACA_FORMAT_CHECK = "alpaca_rows_are_valid"
SHAREGPT_FORMAT_CHECK = "sharegpt_rows_are_valid"


# Checks can't carry kinds: this entry says in each result which tool validated it.
VALIDATED_WITH = f"Great Expectations {gx.__version__}"


def expectations_table(metadata: dict) -> str:
    """One Markdown row per expectation: its outcome, observed value and unexpected rows,
    readable in the UI without opening each expectation's JSON."""
    lines = ["| expectation | result | observed value | unexpected | failing values |", "| --- | --- | --- | --- | --- |"]
    for label, details in metadata.items():
        if not isinstance(details, dict) or "success" not in details:
            continue
        result = "passed" if details["success"] else "**failed**"
        observed = _cell(details.get("observed_value", ""))
        unexpected = ""
        if details.get("unexpected_count") is not None:
            unexpected = f"{details['unexpected_count']} ({details.get('unexpected_percent', 0)}%)"
        failing = _cell(", ".join(details.get("failing_values", [])))
        lines.append(f"| {label} | {result} | {observed} | {unexpected} | {failing} |")
    return "\n".join(lines)


def failing_rows_table(rows: list[dict]) -> str:
    """A few failing rows: which expectation, which pair (or chunk), the column and value."""
    if not rows:
        return "none"
    lines = ["| expectation | row | column | value |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['expectation']} | {_cell(r['row'])} | {r['column']} | {_cell(r['value'])} |" for r in rows]
    return "\n".join(lines)


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")[:120]


def _check_result(result: SuiteResult) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=result.success,
        severity=dg.AssetCheckSeverity.ERROR,
        description=("all expectations met" if result.success else "failed: " + ", ".join(result.failed)),
        metadata={
            "validated_with": VALIDATED_WITH,
            "suite": result.suite,
            "expectations": dg.MetadataValue.md(expectations_table(result.metadata)),
            "failing_rows": dg.MetadataValue.md(failing_rows_table(result.failing_rows)),
            **result.metadata,
        },
    )


@dg.asset_check(
    asset=generated_qa_pairs,
    name=GENERATED_PAIRS_CHECK,
    blocking=True,
    partitions_def=documents_partitions,
)
def generated_pairs_check(
    context: dg.AssetCheckExecutionContext, duckdb: PipelineDatabase
) -> dg.AssetCheckResult:
    """Every generated pair has a question, an answer, a unique id, the generator and
    prompt version that wrote it, and comes from a chunk of this document.

    A Great Expectations suite; each expectation's observed value and a few failing
    rows are in the result."""

    def evaluate(document_ids: list[str]) -> dg.AssetCheckResult:
        with duckdb.get_connection() as con:
            pairs = _scoped(read_partitions(con, GENERATED_QA_PAIRS_TABLE, document_ids), document_ids)
            chunks = _scoped(read_partitions(con, DOCUMENT_CHUNKS_TABLE, document_ids), document_ids)
        return _check_result(validate_generated_pairs(pairs, set(chunks["chunk_id"])))

    return check_each_document(context, duckdb, lambda key: evaluate([key]), evaluate)


@dg.asset_check(
    asset=filtered_qa_pairs,
    name=FILTERED_PAIRS_CHECK,
    blocking=True,
    partitions_def=documents_partitions,
)
def filtered_pairs_check(
    context: dg.AssetCheckExecutionContext, duckdb: PipelineDatabase, curation: CurationResource
) -> dg.AssetCheckResult:
    """Kept pairs have no nulls, no repeated id or question in the document, an answer
    supported by its chunk's stored text, a chunk of this document, no pair that is also
    among the rejected ones, and the share of generated pairs kept is within bounds (a
    document that keeps almost nothing, or everything, is suspicious).

    A Great Expectations suite; each expectation's observed value and a few failing
    rows are in the result."""

    def evaluate(document_ids: list[str]) -> dg.AssetCheckResult:
        with duckdb.get_connection() as con:
            pairs = read_partitions(con, FILTERED_QA_PAIRS_TABLE, document_ids)
            rejected = read_partitions(con, REJECTED_QA_PAIRS_TABLE, document_ids)
            chunks = read_partitions(con, DOCUMENT_CHUNKS_TABLE, document_ids)
        kept = pairs["document_id"].value_counts()
        generated = kept.add(rejected["document_id"].value_counts(), fill_value=0)
        bounds = {key: retention_bounds(int(generated.get(key, 0)), curation.min_retention,
                                        curation.max_retention, curation.min_pairs_for_retention)
                  for key in document_ids}
        if len(document_ids) > 1 and not all(low <= kept.get(key, 0) <= high for key, (low, high) in bounds.items()):
            return dg.AssetCheckResult(passed=False)  # a retention rate is out of bounds: see each document
        result = validate_filtered_pairs(
            _scoped(pairs, document_ids), _scoped(chunks, document_ids)[["chunk_id", "text"]],
            set(rejected["pair_id"]), kept_bounds=bounds[document_ids[0]] if len(document_ids) == 1 else None)
        total = int(generated.sum())
        result.metadata["retention_rate"] = round(len(pairs) / total, 3) if total else 0.0
        return _check_result(result)

    return check_each_document(context, duckdb, lambda key: evaluate([key]), evaluate)


@dg.asset_check(
    asset=filtered_qa_pairs,
    name=QUESTION_TYPE_DIVERSITY_CHECK,
    blocking=False,
    partitions_def=documents_partitions,
)
def question_type_diversity_check(
    context: dg.AssetCheckExecutionContext, duckdb: PipelineDatabase, curation: CurationResource
) -> dg.AssetCheckResult:
    """Warns when one question type (what, why, how, explain, ...) makes up more than the
    allowed share of a document's kept pairs: a dataset of one kind of question teaches
    one kind of answer."""
    return check_each_document(context, duckdb, lambda key: _diversity(key, duckdb, curation))


def _diversity(document_id: str, duckdb: PipelineDatabase, curation: CurationResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as con:
        pairs = read_partition(con, FILTERED_QA_PAIRS_TABLE, document_id)
    mix = question_type_mix(pairs["question_type"])
    # A handful of pairs says nothing about a document's mix.
    too_few = len(pairs) < curation.min_pairs_for_retention
    dominant = None if too_few else dominant_type(mix, curation.max_type_share)
    return dg.AssetCheckResult(
        passed=dominant is None,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"'{dominant[0]}' is {dominant[1]:.0%} of the pairs (limit {curation.max_type_share:.0%})"
            if dominant
            else f"only {len(pairs)} pairs: too few to judge" if too_few
            else "no question type dominates"
        ),
        metadata={"question_type_mix": dg.MetadataValue.json({k: round(v, 3) for k, v in mix.items()}),
                  "pairs": len(pairs)},
    )


@dg.asset_check(
    asset=filtered_qa_pairs,
    name=COVERAGE_CHECK,
    blocking=False,
    partitions_def=documents_partitions,
)
def coverage_check(
    context: dg.AssetCheckExecutionContext, duckdb: PipelineDatabase, curation: CurationResource
) -> dg.AssetCheckResult:
    """Warns when a document's kept items draw on less than SYNTH_ASSETS_MIN_COVERAGE of
    its non-boilerplate chunks (core/coverage.py): whole sections produced no training
    data. Passes when no minimum is set."""
    found: dict[str, Coverage] = {}

    def measure(document_ids: list[str]) -> dict[str, Coverage]:
        with duckdb.get_connection() as con:
            chunks = read_partitions(con, DOCUMENT_CHUNKS_TABLE, document_ids)
            kept = read_partitions(con, FILTERED_QA_PAIRS_TABLE, document_ids)
        found.update(coverage_by_document(chunks, kept, document_ids))
        return found

    def evaluate_all(document_ids: list[str]) -> dg.AssetCheckResult:
        # Measured once for the step's documents; each failing document is then told from `found`.
        measured = found if all(key in found for key in document_ids) else measure(document_ids)
        return dg.AssetCheckResult(passed=not any(below_minimum(measured[key], curation.min_coverage)
                                                  for key in document_ids))

    def evaluate(document_id: str) -> dg.AssetCheckResult:
        coverage = found[document_id] if document_id in found else measure([document_id])[document_id]
        low = below_minimum(coverage, curation.min_coverage)
        return dg.AssetCheckResult(
            passed=not low,
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                "no minimum set (SYNTH_ASSETS_MIN_COVERAGE)" if curation.min_coverage is None
                else f"{percent(coverage.chunk_share)} of chunks covered (minimum {curation.min_coverage:.0%})"
            ),
            metadata={**{key: value for key, value in coverage.summary().items() if value is not None},
                      "uncovered_chunk_ids": dg.MetadataValue.json(coverage.uncovered_chunk_ids[:50])},
        )

    return check_each_document(context, duckdb, evaluate, evaluate_all)


def _format_check(asset, name: str, table: str, validate, description: str) -> dg.AssetChecksDefinition:
    """A blocking per-document check of one training format's rows."""

    @dg.asset_check(asset=asset, name=name, blocking=True, partitions_def=documents_partitions,
                    description=description)
    def format_check(context: dg.AssetCheckExecutionContext, duckdb: PipelineDatabase) -> dg.AssetCheckResult:
        def evaluate(document_ids: list[str]) -> dg.AssetCheckResult:
            with duckdb.get_connection() as con:
                return _check_result(validate(read_partitions(con, table, document_ids)))

        return check_each_document(context, duckdb, lambda key: evaluate([key]), evaluate)

    return format_check


alpaca_format_check = _format_check(
    alpaca_examples, ALPACA_FORMAT_CHECK, ALPACA_EXAMPLES_TABLE, validate_alpaca,
    "Alpaca rows have an instruction and an output, a string input, and their provenance "
    "(a Great Expectations suite).")
sharegpt_format_check = _format_check(
    sharegpt_examples, SHAREGPT_FORMAT_CHECK, SHAREGPT_EXAMPLES_TABLE, validate_sharegpt,
    "ShareGPT conversations parse and go human then gpt (after an optional system turn) "
    "(a Great Expectations suite).")


def _scoped(rows: pd.DataFrame, document_ids: list[str]) -> pd.DataFrame:
    """Several documents are validated in one frame (one Great Expectations validation
    instead of one per document): their chunk ids are prefixed with the document's, so
    that "a chunk of this document" still holds document by document."""
    if len(document_ids) == 1:
        return rows
    return rows.assign(chunk_id=rows["document_id"] + " :: " + rows["chunk_id"])


@dg.asset_check(asset=training_dataset, name=TRAINING_DATASET_CHECK, blocking=True)
def training_dataset_check(context: dg.AssetCheckExecutionContext, export: ExportSettings,
                           duckdb: PipelineDatabase) -> dg.AssetCheckResult:
    """The candidate export of this run (not whichever candidate is latest: another run may
    have written one since). The shards this build wrote are read back from their files:
    no pair twice, every pair one of the vetted rows, the rows their manifest says, and,
    with SYNTH_ASSETS_EVAL_SETS, no row matching an eval set (core/decontamination.py).
    The whole version is checked through the dataset index and the manifest, without
    reading the shards earlier builds wrote: no question (of the same task) asked by two
    documents, no document in both train and validation, no pair twice, every shard's file
    in place, and each format's rows equal to the rows the index holds (a Great Expectations
    suite). It runs before publication: when it fails, the published version
    stays as it was. Its result names the version it checked; published_dataset publishes
    only that one (synth_assets/candidates.py)."""
    version, recorded = candidate_to_check(context.instance, context.run.run_id)
    if version == NO_CANDIDATE:
        return dg.AssetCheckResult(passed=True, description="no candidate export: nothing to publish, nothing to check",
                                   metadata={"version": version})
    folder = Path(export.export_dir) / version
    listed = read_manifest(folder)
    if listed is None:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                   description=f"candidate {version} has no {MANIFEST_FILE} in {folder}",
                                   metadata={"version": version})
    with duckdb.get_connection() as con:
        vetted = _vetted_rows(con)
        whole = index_violations(con, listed, recorded, folder)
    rows, counts = candidate_rows(folder, listed, vetted)
    if export.eval_sets:
        # Contamination rate 0: the matcher again, on what the written shards hold.
        try:
            with duckdb.get_connection() as con:
                indexes = load_eval_indexes(con, parse_eval_sets(export.eval_sets))
        except EvalSetError as error:
            return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                       description=f"{EVAL_SETS_ENV}: {error}", metadata={"version": version})
        matches = find_contaminated([{"question": q, "answer": a} for q, a in zip(rows["question"], rows["output"])],
                                    indexes)
        rows["contamination"] = [None if m is None else f"{m.eval_set} ({m.method} {m.score}): {m.matched_text}"
                                 for m in matches]
    result = validate_training_dataset(rows, counts, whole)
    result.metadata["version"] = version
    result.metadata["shards_read"] = len(listed.get("written_shards", []))
    result.metadata["shards_in_version"] = len(listed["shards"])
    return _check_result(result)


def _vetted_rows(con) -> pd.DataFrame:
    """Every row a candidate may hold: formatted (vetted) rows, experts' edits of them, and
    human rows: pair_id, document_id and the question text."""
    parts = [con.execute(f"SELECT pair_id, document_id, instruction AS question FROM {ALPACA_EXAMPLES_TABLE}").df()]
    for table in (REVIEWED_QA_PAIRS_TABLE, HUMAN_EXAMPLES_TABLE):
        if con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]).fetchall()[0][0]:
            parts.append(con.execute(f"SELECT pair_id, document_id, question FROM {table}").df())
    return pd.concat(parts, ignore_index=True)


def _user_turns(conversation) -> str:
    turns = json.loads(conversation) if isinstance(conversation, str) else conversation
    return " ".join(str(turn.get("value", "")) for turn in turns or [] if turn.get("from") == "human")


def index_violations(con, listed: dict, recorded: dict, folder: Path) -> pd.DataFrame:
    """The whole version's checks, from the dataset index and the manifest (no shard is
    read): a row per check with how many violations it found."""
    kept = f"FROM {DATASET_INDEX_TABLE} WHERE status = 'kept'"
    found = {
        "questions asked by two documents": con.execute(
            f"SELECT count(*) FROM (SELECT coalesce(task, 'qa'), normal {kept} AND normal <> '' GROUP BY ALL "
            "HAVING count(DISTINCT document_id) > 1)").fetchall()[0][0],
        "documents in both splits": con.execute(
            f"SELECT count(*) FROM (SELECT document_id {kept} GROUP BY 1 HAVING count(DISTINCT split) > 1)"
        ).fetchall()[0][0],
        "pairs twice": con.execute(
            f"SELECT count(*) FROM (SELECT pair_id {kept} GROUP BY 1 HAVING count(*) > 1)").fetchall()[0][0],
        "shard files missing": sum(not (folder / s["path"]).is_file() or not (folder / s["jsonl"]).is_file()
                                   for s in listed["shards"]),
    }
    in_index = dict(con.execute(f"SELECT split, count(*) {kept} GROUP BY 1").fetchall())
    human = int(recorded.get("human_rows") or 0)
    per_format = recorded.get("rows_per_format_and_split", {})
    for fmt, splits in listed["rows"].items():
        for split in SPLITS:
            expected = in_index.get(split, 0) + (human if split == "train" else 0)
            if fmt not in PREFERENCE_FORMATS:  # a preference row per (kept row, rejected answer), not per kept row
                found[f"{fmt}/{split}: manifest rows against the index's"] = abs(splits.get(split, 0) - expected)
            found[f"{fmt}/{split}: manifest rows against training_dataset's count"] = abs(
                splits.get(split, 0) - per_format.get(fmt, {}).get(split, -1))
    return pd.DataFrame({"check": list(found), "violations": [int(v) for v in found.values()]})


def candidate_rows(folder: Path, listed: dict, vetted: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows and row counts validate_training_dataset expects, read from the shards this
    build wrote (`listed`: the version's manifest); `vetted` the rows a candidate may hold
    (pair_id, document_id, question). Unchanged shards were read when they were written."""
    written = set(listed.get("written_shards", []))
    shards = [s for s in shards_of(listed) if s.path() in written]
    counted = []
    for shard in shards:
        in_file = pq.read_metadata(folder / shard.path()).num_rows
        counted.append({"format": shard.format, "split": shard.name, "in_files": in_file, "recorded": shard.rows})
    parts = []
    for shard in (s for s in shards if s.format == "alpaca"):
        part = read_shards(folder, [shard]).assign(split=shard.split)
        conversations = next((s for s in shards if s.format == "sharegpt" and s.bucket == shard.bucket
                              and s.split == shard.split), None)
        # The formats hold the same rows in the same order (core/exporting.build_format_rows).
        turns = read_shards(folder, [conversations]) if conversations else pd.DataFrame()
        if len(turns) == len(part) and "conversations" in turns:
            part["question"] = [" ".join(t["value"] for t in c if t["from"] == "human") for c in turns["conversations"]]
        else:
            part["question"] = part["instruction"]
        parts.append(part)
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["instruction", "output", "question", "split", "document_id"])
    if "pair_id" in rows:
        rows["from_vetted_rows"] = rows["pair_id"].isin(set(vetted["pair_id"]))
    if "document_id" not in rows:
        # Provenance left out: a row's document is traced through its question text, where one document asks it.
        questions = vetted.assign(question=normalised_text(vetted["question"]))
        documents = questions.groupby("question")["document_id"].agg(lambda ids: ids.iloc[0] if ids.nunique() == 1
                                                                      else None)
        rows["document_id"] = normalised_text(rows["instruction"]).map(documents)
    return rows, pd.DataFrame(counted, columns=["format", "split", "in_files", "recorded"])


quality_checks = [
    generated_pairs_check,
    filtered_pairs_check,
    question_type_diversity_check,
    coverage_check,
    alpaca_format_check,
    sharegpt_format_check,
    training_dataset_check,
]
