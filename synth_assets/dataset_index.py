"""The training dataset's build state, kept in the pipeline database between builds.

A build takes in only the documents whose rows changed: their questions are compared
with the index of every question exported before (core/dedup.decide_batch; the LSH bands
are matched in SQL, so only candidate questions are read back) and with each other,
decided once (the first exported copy of a question is the one kept), and recorded with
their split. A generation freezes the word weights the near-duplicate check uses; a new
one begins, and every document is taken in again, when a curation or export setting
changes, on `make run ARGS=--rebuild-dataset`, or when the words of the questions taken
in since have drifted from the frozen weights by more than the drift limit.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from synth_assets.core.dedup import (
    Frozen,
    IndexedQuestion,
    QuestionKey,
    band_keys_of,
    decide_batch,
    frozen_weights,
    normalise_text,
    question_key,
)
from synth_assets.core.formats import assign_splits, split_order
from synth_assets.core.shards import SHARD_BUCKETS, bucket_of
from synth_assets.core.task_rules import dedup_text
from synth_assets.storage import (
    DATASET_BANDS_TABLE,
    DATASET_GENERATIONS_TABLE,
    DATASET_INDEX_TABLE,
    DATASET_INDEX_WORDS_TABLE,
    DATASET_SHARDS_TABLE,
    DATASET_WORDS_TABLE,
)

# A new generation begins when the questions' word counts have moved this far (total
# variation distance between the frozen and the current shares of each word).
DEFAULT_DRIFT_LIMIT = 0.2
CONTAMINATED = "contaminated"


@dataclass(frozen=True)
class Generation:
    generation: int
    fingerprint: str
    reason: str
    questions: int
    common: int


def current_generation(con) -> Generation | None:
    row = con.execute(f"SELECT generation, fingerprint, reason, questions, common FROM {DATASET_GENERATIONS_TABLE} "
                      "ORDER BY generation DESC LIMIT 1").fetchall()
    return Generation(*row[0]) if row else None


def start_generation(con, fingerprint: str, reason: str, keys: list[QuestionKey]) -> tuple[Generation, Frozen]:
    """Forget the index and begin a new generation whose weights are those of `keys`
    (every question about to be taken in)."""
    previous = current_generation(con)
    number = previous.generation + 1 if previous else 1
    frozen = frozen_weights(keys)
    for table in (DATASET_INDEX_TABLE, DATASET_BANDS_TABLE, DATASET_WORDS_TABLE, DATASET_INDEX_WORDS_TABLE,
                  DATASET_SHARDS_TABLE, DATASET_GENERATIONS_TABLE):
        con.execute(f"DELETE FROM {table}")
    con.execute(f"INSERT INTO {DATASET_GENERATIONS_TABLE} VALUES (?, now(), ?, ?, ?, ?)",
                [number, fingerprint, reason, len(set(keys)), frozen.common])
    words = pd.DataFrame({"generation": number, "word": list(frozen.counts), "questions": list(frozen.counts.values())},
                         columns=["generation", "word", "questions"])
    con.register("frozen_words", words)
    con.execute(f"INSERT INTO {DATASET_WORDS_TABLE} SELECT generation, word, questions FROM frozen_words")
    con.unregister("frozen_words")
    return Generation(number, fingerprint, reason, len(set(keys)), frozen.common), frozen


def indexed_documents(con) -> dict[str, str]:
    """Every document in the index with the digest of the rows it was taken in from."""
    return dict(con.execute(f"SELECT document_id, any_value(document_digest) FROM {DATASET_INDEX_TABLE} "
                            "GROUP BY document_id").fetchall())


def documents_depending_on(con, documents: list[str]) -> set[str]:
    """Documents with a question left out as a repeat of a question of `documents`: when
    those change, the repeat may be the first copy now, so it is taken in again."""
    if not documents:
        return set()
    return {d for (d,) in con.execute(
        f"SELECT DISTINCT i.document_id FROM {DATASET_INDEX_TABLE} i JOIN {DATASET_INDEX_TABLE} o "
        "ON i.duplicate_of = o.pair_id WHERE o.document_id IN (SELECT unnest(?)) "
        "AND i.document_id NOT IN (SELECT unnest(?))", [documents, documents]).fetchall()}


def remove_documents(con, documents: list[str]) -> None:
    if not documents:
        return
    # The questions' words that no row left in the index holds any more.
    _add_word_counts(con, f"""
        WITH gone AS (SELECT DISTINCT normal, kind, unnest(list_concat(subject, context)) AS word
                      FROM {DATASET_INDEX_TABLE} WHERE document_id IN (SELECT unnest($documents))),
             stays AS (SELECT DISTINCT normal, kind, unnest(list_concat(subject, context)) AS word
                       FROM {DATASET_INDEX_TABLE} WHERE document_id NOT IN (SELECT unnest($documents))
                       AND normal IN (SELECT normal FROM gone))
        SELECT word, -count(*) AS n FROM gone ANTI JOIN stays USING (normal, kind, word) GROUP BY word""",
                     {"documents": documents})
    con.execute(f"DELETE FROM {DATASET_BANDS_TABLE} WHERE pair_id IN (SELECT pair_id FROM {DATASET_INDEX_TABLE} "
                "WHERE document_id IN (SELECT unnest(?)))", [documents])
    con.execute(f"DELETE FROM {DATASET_INDEX_TABLE} WHERE document_id IN (SELECT unnest(?))", [documents])


def frozen_of(con, generation: Generation, words: set[str]) -> Frozen:
    """The generation's frozen counts of these words (the others count 1)."""
    counts = dict(con.execute(f"SELECT word, questions FROM {DATASET_WORDS_TABLE} WHERE word IN (SELECT unnest(?))",
                              [sorted(words)]).fetchall()) if words else {}
    return Frozen(counts, generation.common)


def _add_word_counts(con, delta: str, parameters: dict) -> None:
    """Add to DATASET_INDEX_WORDS_TABLE the (word, n) rows of the query `delta` (a word
    whose count comes to 0 is deleted)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE word_delta AS {delta}", parameters)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE word_sums AS SELECT word, sum(n) AS questions FROM (
        SELECT word, questions AS n FROM {DATASET_INDEX_WORDS_TABLE} WHERE word IN (SELECT word FROM word_delta)
        UNION ALL SELECT word, n FROM word_delta) GROUP BY word HAVING sum(n) > 0""")
    con.execute(f"DELETE FROM {DATASET_INDEX_WORDS_TABLE} WHERE word IN (SELECT word FROM word_delta)")
    con.execute(f"INSERT INTO {DATASET_INDEX_WORDS_TABLE} SELECT word, questions FROM word_sums")
    con.execute("DROP TABLE word_delta")
    con.execute("DROP TABLE word_sums")


def count_index_words(con) -> None:
    """DATASET_INDEX_WORDS_TABLE counted again from the whole index (an index built before
    the table was kept has none)."""
    con.execute(f"DELETE FROM {DATASET_INDEX_WORDS_TABLE}")
    con.execute(f"""INSERT INTO {DATASET_INDEX_WORDS_TABLE} SELECT word, count(*) FROM (
        SELECT DISTINCT normal, kind, unnest(list_concat(subject, context)) AS word FROM {DATASET_INDEX_TABLE})
        GROUP BY word""")


def drift(con) -> float:
    """Total variation distance between the frozen word shares and those of the questions
    indexed now (0: the same; 1: no word in common)."""
    if (not con.execute(f"SELECT 1 FROM {DATASET_INDEX_WORDS_TABLE} LIMIT 1").fetchall()
            and con.execute(f"SELECT 1 FROM {DATASET_INDEX_TABLE} LIMIT 1").fetchall()):
        count_index_words(con)
    row = con.execute(f"""
        WITH now AS (SELECT word, questions AS n FROM {DATASET_INDEX_WORDS_TABLE}),
             frozen AS (SELECT word, questions AS n FROM {DATASET_WORDS_TABLE}),
             totals AS (SELECT (SELECT sum(n) FROM now) AS now_total, (SELECT sum(n) FROM frozen) AS frozen_total)
        SELECT 0.5 * sum(abs(coalesce(now.n, 0) / totals.now_total - coalesce(frozen.n, 0) / totals.frozen_total))
        FROM now FULL OUTER JOIN frozen USING (word), totals""").fetchall()
    return float(row[0][0] or 0.0)


def take_in(con, generation: Generation, rows: pd.DataFrame, digests: dict[str, str], validation_ratio: float,
            seed: int, contaminated: Callable[[pd.DataFrame], set[str]], frozen: Frozen | None = None,
            first_batch: bool = False, buckets: int = SHARD_BUCKETS) -> pd.DataFrame:
    """Decide and index a batch of documents' rows (their kept pairs, reviews applied):
    split (per document, in the batch's order), cross-document repeats against the index
    and within the batch, then eval-set matches of what is left (`contaminated` returns
    the pair ids matching). Returns the rows with split, status and duplicate_of."""
    order = {d: i for i, d in enumerate(split_order(set(rows["document_id"]), seed))}
    rows = rows.assign(_order=rows["document_id"].map(order), _pair=rows["pair_id"].astype(str))
    rows = rows.sort_values(["_order", "_pair"], kind="stable").drop(columns=["_order", "_pair"]).reset_index(drop=True)
    # Splits: the documents already placed stay where they are.
    placed = dict(con.execute(f"SELECT split, count(*) FROM {DATASET_INDEX_TABLE} GROUP BY split").fetchall())
    sizes = Counter(rows["document_id"])
    splits = assign_splits([(d, sizes[d]) for d in order], validation_ratio, placed.get("validation", 0),
                           sum(placed.values()), first_batch=first_batch)
    records = rows.to_dict("records")
    keys = [question_key(dedup_text(r), r.get("language") if isinstance(r.get("language"), str) else None)
            for r in records]
    if frozen is None:
        frozen = frozen_of(con, generation, {w for k in keys for w in k.subject | k.context})
    bands = band_keys_of(keys, frozen)
    normals = [normalise_text(dedup_text(r)) for r in records]
    exact, near = _index_matches(con, normals, bands, frozen, generation)
    decisions = decide_batch(records, keys, bands, frozen, exact, near)
    seq = con.execute(f"SELECT coalesce(max(seq), 0) FROM {DATASET_INDEX_TABLE}").fetchall()[0][0]
    rows["split"] = rows["document_id"].map(splits)
    rows["status"] = [reason or "kept" for reason, _, _ in decisions]
    rows["duplicate_of"] = [match for _, match, _ in decisions]
    dirty = contaminated(rows[rows["status"] == "kept"]) if len(rows) else set()
    rows.loc[rows["pair_id"].isin(dirty), "status"] = CONTAMINATED
    keeper = [k for _, _, k in decisions]
    index = pd.DataFrame({
        "generation": generation.generation, "seq": range(seq + 1, seq + 1 + len(rows)),
        "pair_id": rows["pair_id"].astype(str), "document_id": rows["document_id"],
        "document_digest": rows["document_id"].map(digests), "bucket": [bucket_of(d, buckets) for d in rows["document_id"]],
        "split": rows["split"], "normal": normals, "kind": [k.kind for k in keys],
        "subject": [sorted(k.subject) for k in keys], "context": [sorted(k.context) for k in keys],
        "shares": [json.dumps(k.shares) if k.shares else None for k in keys],
        "status": rows["status"], "duplicate_of": rows["duplicate_of"], "keeper": keeper,
        "question": rows["question"], "task": rows["task"] if "task" in rows else None,
        "has_reasoning": rows["reasoning"].fillna("").astype(str).str.strip().ne("") if "reasoning" in rows else False,
    })
    band_rows = pd.DataFrame(
        [(generation.generation, pid, band, key) for pid, keys_of_row, is_keeper in
         zip(index["pair_id"], bands, keeper) if is_keeper for band, key in enumerate(keys_of_row)],
        columns=["generation", "pair_id", "band", "band_key"])
    con.register("new_index", index)
    # The questions' words that no row of the index held before.
    _add_word_counts(con, f"""
        WITH new AS (SELECT DISTINCT normal, kind, unnest(list_concat(subject, context)) AS word FROM new_index),
             old AS (SELECT DISTINCT normal, kind, unnest(list_concat(subject, context)) AS word
                     FROM {DATASET_INDEX_TABLE} WHERE normal IN (SELECT normal FROM new))
        SELECT word, count(*) AS n FROM new ANTI JOIN old USING (normal, kind, word) GROUP BY word""", {})
    con.execute(f"INSERT INTO {DATASET_INDEX_TABLE} SELECT * FROM new_index")
    con.unregister("new_index")
    con.register("new_bands", band_rows)
    con.execute(f"INSERT INTO {DATASET_BANDS_TABLE} SELECT * FROM new_bands")
    con.unregister("new_bands")
    return rows


def _index_matches(con, normals: list[str], bands: list[list[int]], frozen: Frozen, generation: Generation,
                   ) -> tuple[dict[str, IndexedQuestion], dict[int, list[IndexedQuestion]]]:
    """The earliest indexed question per normalised text of the batch, and per batch row
    the indexed keepers sharing an LSH band with it (a join in SQL: the index is never
    read whole)."""
    if not normals:
        return {}, {}
    con.register("batch_normals", pd.DataFrame({"normal": [n for n in set(normals) if n]}))
    exact_rows = con.execute(
        f"SELECT i.normal, arg_min(i.seq, i.seq), arg_min(i.pair_id, i.seq), arg_min(i.document_id, i.seq) "
        f"FROM {DATASET_INDEX_TABLE} i JOIN batch_normals USING (normal) GROUP BY i.normal").fetchall()
    con.unregister("batch_normals")
    exact = {normal: IndexedQuestion(seq, pair_id, document_id, QuestionKey("what", frozenset(), frozenset()))
             for normal, seq, pair_id, document_id in exact_rows}
    batch_bands = pd.DataFrame([(i, band, key) for i, keys in enumerate(bands) for band, key in enumerate(keys)],
                               columns=["row", "band", "band_key"])
    con.register("batch_bands", batch_bands)
    candidates = con.execute(
        f"SELECT DISTINCT b.row, i.seq, i.pair_id, i.document_id, i.kind, i.subject, i.context, i.shares "
        f"FROM batch_bands b JOIN {DATASET_BANDS_TABLE} d ON d.band = b.band AND d.band_key = b.band_key "
        f"JOIN {DATASET_INDEX_TABLE} i ON i.pair_id = d.pair_id ORDER BY b.row, i.seq").fetchall()
    con.unregister("batch_bands")
    near: dict[int, list[IndexedQuestion]] = {}
    for row, seq, pair_id, document_id, kind, subject, context, shares in candidates:
        key = QuestionKey(kind, frozenset(subject or ()), frozenset(context or ()),
                          tuple(tuple(s) for s in json.loads(shares)) if shares else ())
        near.setdefault(row, []).append(IndexedQuestion(seq, pair_id, document_id, key))
    # The candidates' words weigh by the frozen counts too.
    missing = {w for cands in near.values() for c in cands for w in c.key.subject | c.key.context} - set(frozen.counts)
    if missing:
        frozen.counts.update(frozen_of(con, generation, missing).counts)
    return exact, near


def index_rows(con, statuses: tuple[str, ...] = ("kept",), bucket: int | None = None) -> pd.DataFrame:
    """The indexed rows with these statuses (what the dataset holds: 'kept'), of one bucket
    when given, without their keys: pair, document, bucket, split, question, task, whether
    it has reasoning."""
    return con.execute(f"SELECT pair_id, document_id, bucket, split, question, task, has_reasoning, status "
                       f"FROM {DATASET_INDEX_TABLE} WHERE status IN (SELECT unnest(?))"
                       + ("" if bucket is None else f" AND bucket = {int(bucket)}") + " ORDER BY seq",
                       [list(statuses)]).df()
