"""DuckDB tables of the pipeline and the one way rows get into them.

Every partitioned table has a `document_id` column (the partition key). A partition
is written by deleting its rows and inserting the new ones in one transaction, so
re-materialising a document replaces its rows and never duplicates them, and a crash
in the middle leaves the previous rows intact.

The tables are created from explicit DDL rather than inferred from a DataFrame:
DuckDB types an all-NULL column as NULL and later string writes to it then fail.
"""

from __future__ import annotations

import random
import time

import duckdb
import pandas as pd

RAW_DOCUMENTS_TABLE = "raw_documents"
PARSED_DOCUMENTS_TABLE = "parsed_documents"
DOCUMENT_CHUNKS_TABLE = "document_chunks"
GENERATED_QA_PAIRS_TABLE = "generated_qa_pairs"
GENERATION_FAILURES_TABLE = "generation_failures"
FILTERED_QA_PAIRS_TABLE = "filtered_qa_pairs"
REJECTED_QA_PAIRS_TABLE = "rejected_qa_pairs"
ALPACA_EXAMPLES_TABLE = "alpaca_examples"
SHAREGPT_EXAMPLES_TABLE = "sharegpt_examples"
# Kept pairs that training_dataset leaves out because another document already has
# the same (or nearly the same) question: kept here, with the pair they repeat.
CROSS_DOCUMENT_DUPLICATES_TABLE = "cross_document_duplicates"
# Rows training_dataset leaves out because they copy or reword a question of an eval set
# (SYNTH_ASSETS_EVAL_SETS, core/decontamination.py), with what they matched and how.
CONTAMINATED_ROWS_TABLE = "contaminated_rows"
# Documents that failed, or that a blocking check stopped, inside a run covering many
# documents (a single-run backfill): that run goes on with the others, so the reason
# is kept here (see synth_assets/batch.py).
DOCUMENT_FAILURES_TABLE = "document_failures"
BLOCKED_DOCUMENTS_TABLE = "blocked_documents"
# Documents that parsed but hold nothing to learn from (an empty file, images only, titles
# only): a status of its own, not a failure; written by document_chunks, one row each.
NO_TEXT_DOCUMENTS_TABLE = "no_text_documents"
# Experts in the loop: the pairs picked for review per document, the verdicts the review
# page records (append-only: who, when, what changed; the latest per pair counts), and
# the reviewed pairs derived from them that training_dataset applies.
REVIEW_SAMPLE_TABLE = "review_sample"
REVIEW_VERDICTS_TABLE = "review_verdicts"
REVIEWED_QA_PAIRS_TABLE = "reviewed_qa_pairs"
# Human-labelled examples read from SYNTH_ASSETS_HUMAN_DATA_DIR (unpartitioned; its
# document_id is "human:<file>", so deleting a document never touches it).
HUMAN_EXAMPLES_TABLE = "human_examples"
# Preference pairs (core/preference.py, SYNTH_ASSETS_PREFERENCE_PAIRS=1): per document, the
# other answers to the questions of its kept items that the curate step weighed as the
# `rejected` side, with the rules each failed (none: it passed, and is not used).
PREFERENCE_CANDIDATES_TABLE = "preference_candidates"
# The training dataset's build state, kept between builds (synth_assets/dataset_index.py):
# the generation (frozen word weights), every exported question with its dedup decision,
# the LSH bands of the questions later ones are compared with, and the current shards.
DATASET_GENERATIONS_TABLE = "dataset_generations"
DATASET_WORDS_TABLE = "dataset_words"
DATASET_INDEX_TABLE = "dataset_index"
DATASET_BANDS_TABLE = "dataset_bands"
DATASET_SHARDS_TABLE = "dataset_shards"
DATASET_COVERAGE_TABLE = "dataset_coverage"
DATASET_PREFERENCE_COUNTS_TABLE = "dataset_preference_counts"
DATASET_USAGE_TABLE = "dataset_usage"
DATASET_STATS_TABLE = "dataset_stats"
DATASET_INDEX_WORDS_TABLE = "dataset_index_words"
DATASET_SOURCES_TABLE = "dataset_sources"

_PAIR_COLUMNS = """
    pair_id VARCHAR NOT NULL,
    document_id VARCHAR NOT NULL,
    chunk_id VARCHAR NOT NULL,
    question VARCHAR,
    answer VARCHAR,
    question_type VARCHAR,
    evidence VARCHAR,
    generator VARCHAR NOT NULL,
    model VARCHAR,
    prompt_version VARCHAR NOT NULL,
    reasoning VARCHAR,
    task VARCHAR,
    difficulty INTEGER,
    source_chunk_ids VARCHAR,
    turns VARCHAR,
    quotes VARCHAR,
    evidence_spans VARCHAR
"""
# quotes: the generator's JSON list of quoted passages; evidence_spans: the curate step's
# JSON [{chunk_id, start, end, score}] (core/evidence.py), offsets into document_chunks.text.
# task: core/tasks.py (NULL on rows made before tasks: qa); difficulty 1-5; source_chunk_ids
# a JSON list of every chunk the item draws on; turns a conversation's JSON [[user, assistant], ...].

_PROVENANCE_COLUMNS = """
    pair_id VARCHAR NOT NULL,
    document_id VARCHAR NOT NULL,
    chunk_id VARCHAR NOT NULL,
    source_file VARCHAR,
    heading_path VARCHAR,
    page_start INTEGER,
    page_end INTEGER,
    generator VARCHAR,
    model VARCHAR,
    prompt_version VARCHAR,
    language VARCHAR,
    task VARCHAR,
    question_type VARCHAR,
    difficulty INTEGER,
    source_chunk_ids VARCHAR,
    evidence VARCHAR
"""

TABLE_DDL: dict[str, str] = {
    RAW_DOCUMENTS_TABLE: """
        document_id VARCHAR NOT NULL,
        relative_path VARCHAR NOT NULL,
        file_name VARCHAR NOT NULL,
        format VARCHAR NOT NULL,
        size_bytes BIGINT NOT NULL,
        sha256 VARCHAR NOT NULL,
        modified_at DOUBLE
    """,
    PARSED_DOCUMENTS_TABLE: """
        document_id VARCHAR NOT NULL,
        file_name VARCHAR NOT NULL,
        parser VARCHAR NOT NULL,
        num_pages INTEGER,
        num_text_items INTEGER,
        markdown VARCHAR,
        docling_json VARCHAR,
        no_text VARCHAR
    """,
    DOCUMENT_CHUNKS_TABLE: """
        chunk_id VARCHAR NOT NULL,
        document_id VARCHAR NOT NULL,
        chunk_index INTEGER NOT NULL,
        text VARCHAR NOT NULL,
        body VARCHAR NOT NULL,
        heading_path VARCHAR,
        page_start INTEGER,
        page_end INTEGER,
        n_tokens INTEGER NOT NULL,
        overlap_tokens INTEGER NOT NULL,
        boilerplate BOOLEAN NOT NULL,
        tokenizer VARCHAR NOT NULL,
        language VARCHAR
    """,
    GENERATED_QA_PAIRS_TABLE: _PAIR_COLUMNS,
    GENERATION_FAILURES_TABLE: """
        document_id VARCHAR NOT NULL,
        chunk_id VARCHAR NOT NULL,
        generator VARCHAR NOT NULL,
        model VARCHAR,
        prompt_version VARCHAR NOT NULL,
        attempts INTEGER NOT NULL,
        error VARCHAR NOT NULL
    """,
    # judge_score/judge_reason: NULL unless the judge is on (CurationResource.use_judge).
    # language: the pair's (ISO 639-1, NULL when undetermined), see core/language.py.
    FILTERED_QA_PAIRS_TABLE: _PAIR_COLUMNS
    + ", grounding DOUBLE, judge_score INTEGER, judge_reason VARCHAR, language VARCHAR, difficulty_proxy INTEGER",
    REJECTED_QA_PAIRS_TABLE: _PAIR_COLUMNS
    + ", grounding DOUBLE, judge_score INTEGER, judge_reason VARCHAR, reject_reasons VARCHAR[] NOT NULL"
    + ", language VARCHAR, difficulty_proxy INTEGER, reason_details VARCHAR",
    # The formatted rows are the vetted snapshot training_dataset reads: `reasoning` so the
    # chain-of-thought variants can be rebuilt from them, `source_digest` the fingerprint of
    # the filtered pairs they were made from (rows whose source changed since are refused).
    ALPACA_EXAMPLES_TABLE: "instruction VARCHAR NOT NULL, input VARCHAR NOT NULL, output VARCHAR NOT NULL,"
    + _PROVENANCE_COLUMNS + ", reasoning VARCHAR, turns VARCHAR, source_digest VARCHAR",
    SHAREGPT_EXAMPLES_TABLE: "conversations VARCHAR NOT NULL," + _PROVENANCE_COLUMNS + ", source_digest VARCHAR",
    DOCUMENT_FAILURES_TABLE: """
        document_id VARCHAR NOT NULL,
        stage VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL
    """,
    BLOCKED_DOCUMENTS_TABLE: """
        document_id VARCHAR NOT NULL,
        check_name VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL
    """,
    NO_TEXT_DOCUMENTS_TABLE: "document_id VARCHAR NOT NULL, reason VARCHAR NOT NULL",
    # status: 'kept' (in filtered_qa_pairs) or 'rejected' (in rejected_qa_pairs, with its
    # reasons): rejected pairs are reviewed too, so each rule gets a measured precision.
    REVIEW_SAMPLE_TABLE: """
        pair_id VARCHAR NOT NULL,
        document_id VARCHAR NOT NULL,
        chunk_id VARCHAR NOT NULL,
        question VARCHAR,
        answer VARCHAR,
        question_type VARCHAR,
        status VARCHAR NOT NULL,
        reject_reasons VARCHAR[],
        grounding DOUBLE,
        judge_score INTEGER,
        language VARCHAR,
        evidence_spans VARCHAR,
        chunk_text VARCHAR,
        heading_path VARCHAR,
        page_start INTEGER,
        page_end INTEGER,
        source_file VARCHAR,
        why_sampled VARCHAR NOT NULL,
        priority DOUBLE NOT NULL
    """,
    # verdict: 'accept', 'edit' or 'reject'; edited_*: NULL unless the verdict is 'edit'.
    REVIEW_VERDICTS_TABLE: """
        verdict_id VARCHAR NOT NULL,
        pair_id VARCHAR NOT NULL,
        document_id VARCHAR NOT NULL,
        verdict VARCHAR NOT NULL,
        reason VARCHAR,
        reviewer VARCHAR NOT NULL,
        reviewed_at TIMESTAMP NOT NULL,
        original_question VARCHAR,
        original_answer VARCHAR,
        edited_question VARCHAR,
        edited_answer VARCHAR
    """,
    REVIEWED_QA_PAIRS_TABLE: """
        pair_id VARCHAR NOT NULL,
        document_id VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        reject_reasons VARCHAR[],
        judge_score INTEGER,
        verdict VARCHAR NOT NULL,
        reason VARCHAR,
        reviewer VARCHAR NOT NULL,
        reviewed_at TIMESTAMP NOT NULL,
        question VARCHAR,
        answer VARCHAR,
        original_question VARCHAR,
        original_answer VARCHAR
    """,
    # chunk_id: "<file>:<line>", where the row is in its file; form: alpaca, sharegpt or messages.
    HUMAN_EXAMPLES_TABLE: """
        pair_id VARCHAR NOT NULL,
        document_id VARCHAR NOT NULL,
        chunk_id VARCHAR NOT NULL,
        source_file VARCHAR NOT NULL,
        line INTEGER NOT NULL,
        form VARCHAR NOT NULL,
        question VARCHAR NOT NULL,
        answer VARCHAR NOT NULL,
        system VARCHAR
    """,
    CROSS_DOCUMENT_DUPLICATES_TABLE: """
        pair_id VARCHAR NOT NULL,
        document_id VARCHAR NOT NULL,
        question VARCHAR,
        reason VARCHAR NOT NULL,
        duplicate_of VARCHAR NOT NULL
    """,
    # pair_id: the kept item whose question this answers; origin: closed_book (the question
    # asked without its source) or generator (a rejected item asking the same question);
    # reject_reasons: every rule it failed against the item's chunk (empty: passed, unused).
    PREFERENCE_CANDIDATES_TABLE: """
        candidate_id VARCHAR NOT NULL,
        pair_id VARCHAR NOT NULL,
        document_id VARCHAR NOT NULL,
        chunk_id VARCHAR NOT NULL,
        task VARCHAR,
        origin VARCHAR NOT NULL,
        question VARCHAR,
        answer VARCHAR,
        reject_reasons VARCHAR[] NOT NULL,
        reason_details VARCHAR,
        judge_score INTEGER,
        grounding DOUBLE,
        generator VARCHAR,
        model VARCHAR,
        prompt_version VARCHAR
    """,
    CONTAMINATED_ROWS_TABLE: """
        pair_id VARCHAR NOT NULL,
        document_id VARCHAR NOT NULL,
        question VARCHAR,
        eval_set VARCHAR NOT NULL,
        matched_text VARCHAR,
        method VARCHAR NOT NULL,
        score DOUBLE
    """,
    # reason: why the generation began (first build, a curation or export setting changed,
    # --rebuild-dataset, or drift of the word weights); common: see core/dedup.Frozen.
    DATASET_GENERATIONS_TABLE: """
        generation INTEGER NOT NULL,
        started_at TIMESTAMP NOT NULL,
        fingerprint VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        questions INTEGER NOT NULL,
        common INTEGER NOT NULL
    """,
    DATASET_WORDS_TABLE: "generation INTEGER NOT NULL, word VARCHAR NOT NULL, questions INTEGER NOT NULL",
    # One row per question a build took in (kept or not): seq is the arrival order; status
    # 'kept', 'duplicate_question', 'near_duplicate_question' or 'contaminated'; keeper:
    # later questions are compared with it (it has bands); document_digest: the rows the
    # document's questions were indexed from (a new digest re-indexes the document).
    DATASET_INDEX_TABLE: """
        generation INTEGER NOT NULL,
        seq BIGINT NOT NULL,
        pair_id VARCHAR NOT NULL,
        document_id VARCHAR NOT NULL,
        document_digest VARCHAR NOT NULL,
        bucket INTEGER NOT NULL,
        split VARCHAR NOT NULL,
        normal VARCHAR,
        kind VARCHAR,
        subject VARCHAR[],
        context VARCHAR[],
        shares VARCHAR,
        status VARCHAR NOT NULL,
        duplicate_of VARCHAR,
        keeper BOOLEAN NOT NULL,
        question VARCHAR,
        task VARCHAR,
        has_reasoning BOOLEAN
    """,
    DATASET_BANDS_TABLE: "generation INTEGER NOT NULL, pair_id VARCHAR NOT NULL, band INTEGER NOT NULL, band_key BIGINT NOT NULL",
    # Per word, the distinct questions (normal, kind) of the index holding it: kept up to
    # date as documents are taken in and out, so the drift is measured without reading the
    # whole index (dataset_index.drift).
    DATASET_INDEX_WORDS_TABLE: "word VARCHAR NOT NULL, questions BIGINT NOT NULL",
    # Each document's coverage by the dataset's rows, kept so a build measures only the
    # documents it took in (digest: what it was measured from).
    DATASET_COVERAGE_TABLE: """
        document_id VARCHAR NOT NULL,
        digest VARCHAR NOT NULL,
        chunks INTEGER NOT NULL,
        covered_chunks INTEGER NOT NULL,
        headings INTEGER NOT NULL,
        covered_headings INTEGER NOT NULL,
        uncovered_chunk_ids VARCHAR[]
    """,
    DATASET_PREFERENCE_COUNTS_TABLE: "bucket INTEGER NOT NULL, counts VARCHAR NOT NULL",
    # What the model was asked for each document's items (assets/generate.documents_usage),
    # kept so a build reads the event log for the documents it took in only.
    DATASET_USAGE_TABLE: "document_id VARCHAR NOT NULL, usage VARCHAR NOT NULL",
    # Each document's counts for the dataset card (training_dataset's _count_documents):
    # stat 'document' (one row, its digest: what it was counted from), 'kept', 'rejected',
    # 'rejection' (task, key: the reason), 'generator', 'model', 'prompt_version',
    # 'language', 'judge_score', 'grounding' (key: the bin) and 'mix' (task, key: the
    # question type, difficulty); the card sums them, counted again for the documents a
    # build took in only.
    # Each document's source digest (assets/export.source_digests) with a fingerprint of its
    # kept pairs (their count and a sum of hashes, cheap to read): training_dataset hashes
    # again only the pairs of documents whose fingerprint changed.
    DATASET_SOURCES_TABLE: "document_id VARCHAR NOT NULL, fingerprint VARCHAR NOT NULL, digest VARCHAR NOT NULL",
    DATASET_STATS_TABLE: """
        document_id VARCHAR NOT NULL,
        digest VARCHAR NOT NULL,
        stat VARCHAR NOT NULL,
        task VARCHAR,
        key VARCHAR,
        difficulty INTEGER,
        n BIGINT NOT NULL
    """,
    DATASET_SHARDS_TABLE: """
        generation INTEGER NOT NULL,
        format VARCHAR NOT NULL,
        split VARCHAR NOT NULL,
        bucket INTEGER NOT NULL,
        digest VARCHAR NOT NULL,
        rows INTEGER NOT NULL
    """,
}


# How long a connection waits for another process that holds the file's write lock.
DEFAULT_LOCK_TIMEOUT_S = 300.0


def is_lock_error(error: Exception) -> bool:
    message = str(error).lower()
    return "lock" in message or "conflicting" in message


def connect_waiting_for_lock(
    database: str, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S, config: dict | None = None
) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, waiting while another process holds the file.

    DuckDB lets one process at a time open a file for writing; the others get an
    IOException "Could not set lock". Our connections are short (one read or one
    partition write), so waiting is right: retries with full jitter (so waiting
    processes do not wake in step) and delays capped at 1 s (so the file is taken soon
    after it is free), until `lock_timeout_s`; then the lock error is raised, naming
    the file. Other errors are raised at once.
    """
    deadline = time.monotonic() + lock_timeout_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(database, config=config or {})
        except duckdb.IOException as error:
            if not is_lock_error(error):
                raise
            if time.monotonic() >= deadline:
                raise duckdb.IOException(
                    f"{database} stayed locked by another process for {lock_timeout_s:.0f}s: {error}"
                ) from None
            time.sleep(random.uniform(0, delay))
            delay = min(delay * 2, 1.0)


def column_definitions(table: str) -> list[tuple[str, str]]:
    """(name, type) of every column of `table`, in DDL order."""
    definitions = []
    for line in TABLE_DDL[table].replace(",", "\n").splitlines():
        words = line.split()
        if words:
            definitions.append((words[0], words[1]))
    return definitions


def table_columns(table: str) -> list[str]:
    """The column names of `table` in DDL order."""
    return [name for name, _ in column_definitions(table)]


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create every pipeline table that does not exist yet, and add columns that a newer
    version of the pipeline defines to tables an older one created (as nullable)."""
    existing: dict[str, set[str]] = {}
    for table, column in con.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
    ).fetchall():
        existing.setdefault(table, set()).add(column)
    for table, columns in TABLE_DDL.items():
        if table not in existing:
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
            continue
        for name, column_type in column_definitions(table):
            if name not in existing[table]:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {column_type}")


def replace_partition_rows(
    con: duckdb.DuckDBPyConnection, table: str, document_id: str, rows: pd.DataFrame
) -> int:
    """Replace the rows of one document in `table` with `rows`, atomically.

    Missing columns are written as NULL and extra columns are an error, so a change
    of schema shows up here rather than as silently dropped data.
    """
    ensure_tables(con)
    columns = table_columns(table)
    extra = set(rows.columns) - set(columns)
    if extra:
        raise ValueError(f"{table}: unexpected columns {sorted(extra)}")
    frame = rows.reindex(columns=columns)
    frame["document_id"] = document_id

    def replace() -> None:
        con.execute(f"DELETE FROM {table} WHERE document_id = ?", [document_id])
        if len(frame):
            con.register("incoming_rows", frame)
            # By name: a table migrated by ensure_tables has its added columns last.
            names = ", ".join(columns)
            con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM incoming_rows")
            con.unregister("incoming_rows")

    in_transaction(con, replace)
    return len(frame)


# A DuckLake (the team deployment) refuses to commit a delete from a table that another
# worker inserted into meanwhile, even into other documents' rows: the write is then
# redone on the new snapshot, with jittered waits, up to this many times.
WRITE_CONFLICT_ATTEMPTS = 40


def in_transaction(con: duckdb.DuckDBPyConnection, work) -> None:
    """Run `work()` in one transaction: all of it lands or none. Redone when a DuckLake
    commit conflicts with another worker's (see WRITE_CONFLICT_ATTEMPTS)."""
    delay = 0.05
    for attempt in range(1, WRITE_CONFLICT_ATTEMPTS + 1):
        con.execute("BEGIN TRANSACTION")
        try:
            work()
            con.execute("COMMIT")
            return
        except Exception as error:
            try:
                con.execute("ROLLBACK")
            except duckdb.TransactionException:  # a failed COMMIT has already ended it
                pass
            if "transaction conflict" not in str(error).lower() or attempt == WRITE_CONFLICT_ATTEMPTS:
                raise
        time.sleep(random.uniform(0, delay))
        delay = min(delay * 2, 1.0)


def read_partition(con: duckdb.DuckDBPyConnection, table: str, document_id: str) -> pd.DataFrame:
    """All rows of one document in `table` (an empty frame with the columns if none)."""
    ensure_tables(con)
    return con.execute(f"SELECT * FROM {table} WHERE document_id = ?", [document_id]).df()


def read_partitions(con: duckdb.DuckDBPyConnection, table: str, document_ids: list[str]) -> pd.DataFrame:
    """All rows of these documents in `table`, in one query."""
    ensure_tables(con)
    return con.execute(f"SELECT * FROM {table} WHERE document_id IN (SELECT unnest(?))", [document_ids]).df()


def delete_document(con: duckdb.DuckDBPyConnection, document_id: str) -> None:
    """Remove a document's rows from every table (used when its file is removed)."""
    ensure_tables(con)

    def delete() -> None:
        # Not the dataset's build state (dataset_*): training_dataset takes the document out
        # of its index and shards itself when it no longer finds its rows.
        for table in (t for t in TABLE_DDL if not t.startswith("dataset_")):
            con.execute(f"DELETE FROM {table} WHERE document_id = ?", [document_id])

    in_transaction(con, delete)


def record_verdict(
    con: duckdb.DuckDBPyConnection, *, pair_id: str, verdict: str, reviewer: str, reason: str | None = None,
    edited_question: str | None = None, edited_answer: str | None = None,
) -> dict:
    """Append an expert's verdict on a sampled pair ('accept', 'edit' or 'reject') to
    review_verdicts, with who, when, and the pair's text as it was; an edit keeps the
    original beside the new text. Returns the row written."""
    import datetime
    import uuid

    if verdict not in ("accept", "edit", "reject"):
        raise ValueError(f"verdict must be accept, edit or reject, not {verdict!r}")
    if not reviewer.strip():
        raise ValueError("a verdict needs the reviewer's name")
    ensure_tables(con)
    sampled = con.execute(
        f"SELECT document_id, question, answer FROM {REVIEW_SAMPLE_TABLE} WHERE pair_id = ?", [pair_id]
    ).fetchone()
    if sampled is None:
        raise ValueError(f"pair {pair_id} is not in the review sample")
    document_id, question, answer = sampled
    if verdict == "edit":
        edited_question = (edited_question or "").strip() or question
        edited_answer = (edited_answer or "").strip() or answer
        if (edited_question, edited_answer) == (question, answer):
            raise ValueError("an edit must change the question or the answer")
    else:
        edited_question = edited_answer = None
    row = {
        "verdict_id": uuid.uuid4().hex, "pair_id": pair_id, "document_id": document_id, "verdict": verdict,
        "reason": (reason or "").strip() or None, "reviewer": reviewer.strip(),
        "reviewed_at": datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None),
        "original_question": question, "original_answer": answer,
        "edited_question": edited_question, "edited_answer": edited_answer,
    }
    names = ", ".join(row)
    con.execute(f"INSERT INTO {REVIEW_VERDICTS_TABLE} ({names}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()))
    return row


def documents_with_verdicts_since(con: duckdb.DuckDBPyConnection, since: str | None) -> dict[str, str]:
    """Documents with a verdict recorded after `since` (an ISO timestamp; None: any),
    each with the time of its latest verdict (ISO)."""
    ensure_tables(con)
    rows = con.execute(
        f"SELECT document_id, strftime(max(reviewed_at), '%Y-%m-%dT%H:%M:%S.%f') FROM {REVIEW_VERDICTS_TABLE} "
        "WHERE ? IS NULL OR reviewed_at > CAST(? AS TIMESTAMP) GROUP BY 1 ORDER BY 1", [since, since],
    ).fetchall()
    return dict(rows)


def read_parsed_document(con: duckdb.DuckDBPyConnection, document_id: str):
    """The stored DoclingDocument and file name of a parsed document, or None."""
    from docling_core.types.doc import DoclingDocument

    rows = read_partition(con, PARSED_DOCUMENTS_TABLE, document_id)
    if rows.empty:
        return None
    return DoclingDocument.model_validate_json(rows["docling_json"].iloc[0]), rows["file_name"].iloc[0]


def load_pairs_with_chunks(con: duckdb.DuckDBPyConnection, table: str, document_id: str) -> pd.DataFrame:
    """Pairs of one document joined to the text of the chunk they came from."""
    return con.execute(
        f"""
        SELECT p.*, c.text AS chunk_text, c.heading_path AS heading_path, c.language AS chunk_language
        FROM {table} p LEFT JOIN {DOCUMENT_CHUNKS_TABLE} c USING (chunk_id)
        WHERE p.document_id = ? ORDER BY p.pair_id
        """,
        [document_id],
    ).df()


def load_kept_pairs_with_provenance(con: duckdb.DuckDBPyConnection, document_id: str) -> pd.DataFrame:
    """Kept pairs of one document with the file, heading and pages they came from, and
    their language."""
    return load_kept_pairs_of_documents(con, [document_id])


def load_kept_pairs_of_documents(con: duckdb.DuckDBPyConnection, document_ids: list[str]) -> pd.DataFrame:
    """load_kept_pairs_with_provenance of many documents in one query, by pair id."""
    return con.execute(
        f"""
        SELECT p.pair_id, p.document_id, p.chunk_id, p.question, p.answer, p.reasoning,
               r.relative_path AS source_file, c.heading_path, c.page_start, c.page_end,
               p.generator, p.model, p.prompt_version, p.language,
               coalesce(p.task, 'qa') AS task, p.question_type, p.difficulty,
               coalesce(p.source_chunk_ids, to_json([p.chunk_id])::VARCHAR) AS source_chunk_ids, p.turns,
               p.evidence_spans AS evidence
        FROM {FILTERED_QA_PAIRS_TABLE} p
        LEFT JOIN {DOCUMENT_CHUNKS_TABLE} c USING (chunk_id)
        LEFT JOIN {RAW_DOCUMENTS_TABLE} r ON r.document_id = p.document_id
        WHERE p.document_id IN (SELECT unnest(?)) ORDER BY p.pair_id
        """,
        [document_ids],
    ).df()
