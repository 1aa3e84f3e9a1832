"""Decontamination: rows that copy or reword a question of an evaluation set.

A fine-tuner evaluates the model on public benchmarks; a training row that asks one of
their questions (or quotes their text) makes that evaluation measure memory. The eval
sets are local files (JSONL, Parquet, CSV with the column holding the question or text,
or a `datasets` Dataset / DatasetDict saved with save_to_disk); nothing is downloaded.

A candidate row is contaminated by an eval row when one of its texts (the question, or
each user turn of a conversation; the answer, or each assistant turn) and the eval text

- share a 13-gram of words ("ngram13"), after dedup's normalisation (lowercase NFKC,
  punctuation removed). 13 words is the usual contamination window (GPT-3, NeMo Curator's
  task decontamination): long enough that a shared run is a copy, not common phrasing.
  A text shorter than 13 words is one shingle, the whole text, so a short question copied
  exactly still matches; or
- (questions only) ask the same thing in other words ("minhash"): their content words
  (dedup.question_key: frame words and stopwords dropped, crude stems) have a Jaccard
  similarity >= DEFAULT_THRESHOLD. As in dedup, an "in the context of <section>" clause
  is kept apart: when both texts have one, one context must hold most of the other's
  words (MIN_CONTEXT_SIMILARITY of the smaller) and the subjects are compared; else
  all their content words are. (Without that, two questions of the model-free
  generator about different things in one section matched: their section's words were
  most of their words.) MinHash signatures banded as dedup bands them
  (dedup._lsh_params, dedup._band_keys) propose the pairs, so the work grows with the
  rows, not rows x eval rows; each proposed pair is then checked exactly (the reported
  score). This catches reworded copies: word order changed, a word swapped, a clause
  added, which break every 13-gram.

Answers (and assistant turns) are compared by 13-grams only: an eval set's column holds
questions (or passages), which an answer copies word for word when it copies them at
all; the word-set similarity of an answer and a question says nothing (it is low when
the answer answers it), and would double the time of the step.

An eval set's index (its rows' shingles, content words and signatures) is built once
and stored (EVAL_INDEX_TABLE, in the DuckDB connection given) under a key made of the
file's sha256 and the settings; it is rebuilt when the file changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from datasketch import MinHash

from synth_assets.core.dedup import (
    DEFAULT_NUM_PERM,
    DEFAULT_SEED,
    MIN_CONTEXT_SIMILARITY,
    QuestionKey,
    _band_keys,
    _lsh_params,
    normalise_text,
    question_key,
)
from synth_assets.core.task_rules import dedup_text, task_of, turns_of
from synth_assets.core.tasks import CONVERSATION

CONTAMINATED = "contaminated"  # the reason code of a removed row
DEFAULT_COLUMN = "question"
NGRAM = 13
# Similarity (`similarity`) from which a question is a reworded eval question. Measured
# with benchmarks/bench_decontamination.py (docs/BENCHMARKS.md): of the example corpus's
# generated questions reworded (two words swapped, order changed, a clause added, a new
# frame, a synonym), 0.97 stay at or above 0.5 (0.995 at 0.3, 0.95 at 0.6); 0.14 of the
# questions have another question of the corpus at 0.5 or more (0.26 at 0.3), mostly
# the same question in another frame ("Explain word processors" / "Describe modern word
# processors", same section). 0.4 and 0.5 catch the same rewordings here; 0.5 removes
# half as many different questions: on the 100,000-row set, rows matched by the 9,000
# benchmark-style questions (none planted) were 5.3% at 0.4, 2.8% at 0.5, 0.7% at 0.6
# (which loses rewordings: 0.95, a synonym 0.82), so 0.5.
DEFAULT_THRESHOLD = 0.5
NGRAM_METHOD, MINHASH_METHOD = "ngram13", "minhash"
EVAL_INDEX_TABLE = "eval_set_index"
# Part of every index key: a change to how texts are shingled must rebuild stored indexes.
INDEX_FORMAT = 1
MAX_BUCKET = 20  # see EvalIndex.band
SUPPORTED = (".jsonl", ".json", ".parquet", ".csv")


class EvalSetError(ValueError):
    """An eval set that cannot be used; the message names the file."""


@dataclass(frozen=True)
class EvalSetSpec:
    path: Path
    column: str = DEFAULT_COLUMN

    @property
    def name(self) -> str:
        return f"{self.path.name}::{self.column}"


def parse_eval_sets(entries: Iterable[str] | None) -> list[EvalSetSpec]:
    """`path` or `path::column` entries (the column defaults to `question`)."""
    specs = []
    for entry in entries or []:
        path, _, column = entry.strip().partition("::")
        if path.strip():
            specs.append(EvalSetSpec(Path(path.strip()).expanduser(), column.strip() or DEFAULT_COLUMN))
    return specs


def read_eval_texts(spec: EvalSetSpec) -> list[str]:
    """The non-empty texts of the eval set's column; EvalSetError when it cannot be read."""
    path, column = spec.path, spec.column
    if not path.exists():
        raise EvalSetError(f"{path}: no such file or folder")
    try:
        if path.is_dir():  # a `datasets` Dataset or DatasetDict saved with save_to_disk
            import datasets

            loaded = datasets.load_from_disk(str(path))
            parts = list(loaded.values()) if isinstance(loaded, datasets.DatasetDict) else [loaded]
            missing = [p for p in parts if column not in p.column_names]
            if missing:
                raise EvalSetError(f"{path}: no column {column!r} (columns: {', '.join(missing[0].column_names)})")
            values = [v for p in parts for v in p[column]]
        else:
            suffix = path.suffix.lower()
            if suffix not in SUPPORTED:
                raise EvalSetError(f"{path}: not an eval-set format (expected {', '.join(SUPPORTED)} or a "
                                   "datasets folder saved with save_to_disk)")
            if suffix == ".parquet":
                frame = pd.read_parquet(path)
            elif suffix == ".csv":
                frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            else:
                frame = pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
            if column not in frame.columns:
                raise EvalSetError(f"{path}: no column {column!r} (columns: {', '.join(map(str, frame.columns))})")
            values = frame[column].tolist()
    except EvalSetError:
        raise
    except Exception as error:  # unreadable: bad JSON, not Parquet, a broken dataset folder
        raise EvalSetError(f"{path}: could not be read: {type(error).__name__}: {error}") from None
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


def file_sha256(path: Path) -> str:
    """The file's sha256, or for a folder, of its files' relative paths and contents."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path)).encode() if path.is_dir() else b"")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def eval_sets_fingerprint(specs: Sequence[EvalSetSpec], sha256s: Sequence[str] | None = None) -> str:
    """What the configured eval sets are, content included ("" when none): a dataset built
    against other eval sets is stale. `sha256s`: the files' hashes when already known."""
    if sha256s is None:
        sha256s = [file_sha256(s.path) if s.path.exists() else "missing" for s in specs]
    parts = [[str(s.path), s.column, sha] for s, sha in zip(specs, sha256s)]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16] if parts else ""


def shingles(text: str) -> set[str]:
    """The 13-grams of words of the normalised text; a shorter text is one shingle."""
    words = normalise_text(text).split()
    if len(words) <= NGRAM:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)}


def similarity(a: QuestionKey, b: QuestionKey) -> float:
    """Jaccard similarity of two questions' content words (see the module docstring for
    the context clause); 0 when either has none.

    No minimum of shared words: requiring two left out one-word questions reworded ("What
    is the bill like?" + a clause: 0.5), 2 of the 25 planted in the test, to spare 0.6% of
    the 100,000-row set's rows matched by short benchmark-style questions."""
    if a.context and b.context:
        if len(a.context & b.context) / min(len(a.context), len(b.context)) < MIN_CONTEXT_SIMILARITY:
            return 0.0
        x, y = a.subject, b.subject
    else:
        x, y = a.subject | a.context, b.subject | b.context
    union = len(x | y)
    return len(x & y) / union if union and x and y else 0.0


def _signatures(keys: Sequence[QuestionKey], num_perm: int, seed: int) -> list[np.ndarray]:
    words = (sorted(w.encode() for w in key.subject | key.context) for key in keys)
    return [m.hashvalues for m in MinHash.generator(words, num_perm=num_perm, seed=seed)]


@dataclass
class EvalIndex:
    """One eval set, ready to match: per eval row its text, key and signature; 13-grams
    -> eval row; LSH buckets per band; every content word of the set."""

    spec: EvalSetSpec
    sha256: str
    texts: list[str]
    keys: list[QuestionKey]
    signatures: list[np.ndarray]
    ngrams: dict[str, int] = field(default_factory=dict)
    buckets: list[dict[int, list[int]]] = field(default_factory=list)
    vocabulary: set[str] = field(default_factory=set)
    threshold: float = DEFAULT_THRESHOLD
    num_perm: int = DEFAULT_NUM_PERM
    seed: int = DEFAULT_SEED

    def band(self) -> None:
        self.vocabulary = {w for key in self.keys for w in key.subject | key.context}
        bands, rows = _lsh_params(self.threshold, self.num_perm)
        self.buckets = [{} for _ in range(bands)]
        keys = _band_keys(self.signatures, bands, rows)
        for i, key in enumerate(self.keys):
            if key.subject or key.context:
                for buckets, of_band in zip(self.buckets, keys):
                    buckets.setdefault(of_band[i], []).append(i)
        # A band value shared by many eval rows comes from words many of them use ("first",
        # "called"): it would propose each of them for every candidate using those words,
        # nearly all in vain (the work would grow as rows x eval rows). Such buckets are
        # dropped; a row that matches shares its rarer words too, in other bands (a pair
        # at the threshold shares a quarter of the 32 bands on average). The same idea as
        # dedup's MIN_COMMON, applied to bands: a bucket of 20 of 10,000 rows holds rows
        # whose lowest hash is one word in two permutations, a word of ~5% of the rows.
        cap = max(MAX_BUCKET, len(self.keys) // 500)
        self.buckets = [{k: v for k, v in buckets.items() if len(v) <= cap} for buckets in self.buckets]


def build_index(spec: EvalSetSpec, texts: list[str], sha256: str = "", threshold: float = DEFAULT_THRESHOLD,
                num_perm: int = DEFAULT_NUM_PERM, seed: int = DEFAULT_SEED) -> EvalIndex:
    keys = [question_key(t) for t in texts]
    index = EvalIndex(spec, sha256, texts, keys, _signatures(keys, num_perm, seed), threshold=threshold,
                      num_perm=num_perm, seed=seed)
    for i, text in enumerate(texts):
        for shingle in shingles(text):
            index.ngrams.setdefault(shingle, i)
    index.band()
    return index


def index_key(sha256: str, spec: EvalSetSpec, num_perm: int, seed: int) -> str:
    settings = json.dumps([sha256, spec.column, NGRAM, num_perm, seed, INDEX_FORMAT])
    return hashlib.sha256(settings.encode()).hexdigest()[:32]


def load_eval_indexes(con, specs: Sequence[EvalSetSpec], threshold: float = DEFAULT_THRESHOLD,
                      num_perm: int = DEFAULT_NUM_PERM, seed: int = DEFAULT_SEED) -> list[EvalIndex]:
    """An index per eval set: read from EVAL_INDEX_TABLE in `con` (a DuckDB connection)
    when stored for this file content and these settings, else built and stored (older
    indexes of the same path are dropped). Every eval set is read or found first:
    EvalSetError names the first that cannot be used, before anything is written."""
    con.execute(f"CREATE TABLE IF NOT EXISTS {EVAL_INDEX_TABLE} (index_key VARCHAR NOT NULL, "
                "source VARCHAR NOT NULL, row_index INTEGER NOT NULL, text VARCHAR NOT NULL, "
                "ngrams VARCHAR[], subject VARCHAR[], context VARCHAR[], kind VARCHAR, signature UBIGINT[])")
    indexes, built = [], []
    for spec in specs:
        if not spec.path.exists():
            raise EvalSetError(f"{spec.path}: no such file or folder")
        sha = file_sha256(spec.path)
        key = index_key(sha, spec, num_perm, seed)
        stored = con.execute(f"SELECT text, ngrams, subject, context, kind, signature FROM {EVAL_INDEX_TABLE} "
                             "WHERE index_key = ? ORDER BY row_index", [key]).fetchall()
        if stored:
            index = EvalIndex(spec, sha, [r[0] for r in stored],
                              [QuestionKey(r[4], frozenset(r[2]), frozenset(r[3])) for r in stored],
                              [np.array(r[5], dtype=np.uint64) for r in stored], threshold=threshold,
                              num_perm=num_perm, seed=seed)
            for i, row in enumerate(stored):
                for h in row[1]:
                    index.ngrams.setdefault(h, i)
            index.band()
        else:
            index = build_index(spec, read_eval_texts(spec), sha, threshold, num_perm, seed)
            built.append((index, key))
        indexes.append(index)
    for index, key in built:
        _store(con, index, key)
    return indexes


def _store(con, index: EvalIndex, key: str) -> None:
    by_row: list[list[str]] = [[] for _ in index.texts]
    for h, i in index.ngrams.items():
        by_row[i].append(h)
    source = str(index.spec.path.resolve())
    rows = pd.DataFrame({
        "index_key": key, "source": source, "row_index": range(len(index.texts)), "text": index.texts,
        "ngrams": by_row, "subject": [sorted(k.subject) for k in index.keys],
        "context": [sorted(k.context) for k in index.keys], "kind": [k.kind for k in index.keys],
        "signature": [s.tolist() for s in index.signatures]})
    con.execute("BEGIN TRANSACTION")
    try:
        # One index per path: the one for its older content goes.
        con.execute(f"DELETE FROM {EVAL_INDEX_TABLE} WHERE source = ? OR index_key = ?", [source, key])
        con.register("eval_index_rows", rows)
        con.execute(f"INSERT INTO {EVAL_INDEX_TABLE} SELECT index_key, source, row_index, text, "
                    "ngrams::VARCHAR[], subject::VARCHAR[], context::VARCHAR[], kind, signature::UBIGINT[] "
                    "FROM eval_index_rows")
        con.unregister("eval_index_rows")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


@dataclass(frozen=True)
class Match:
    eval_set: str
    matched_text: str
    method: str
    score: float
    side: str  # "question" or "answer": which text of the row matched


def row_texts(record: dict) -> list[tuple[str, str]]:
    """(side, text) a row is compared on: its question (the user turns of a conversation,
    together as dedup reads them, and each alone) and its answer (each assistant turn)."""
    texts = [("question", dedup_text(record))]
    answers = [record.get("answer")]
    if task_of(record) == CONVERSATION:
        turns = turns_of(record)
        if len(turns) > 1:
            texts += [("question", user) for user, _ in turns]
        answers += [assistant for _, assistant in turns]
    texts += [("answer", a.strip()) for a in answers if isinstance(a, str)]
    seen, unique = set(), []
    for side, text in texts:
        if text and (side, text) not in seen:
            seen.add((side, text))
            unique.append((side, text))
    return unique


def could_match(key: QuestionKey, index: EvalIndex) -> bool:
    """Whether a question has enough words in the eval set's vocabulary to reach the
    threshold with any of its rows: similarity >= t needs t x |subject| shared words (in
    both cases of `similarity`). Most rows of a corpus unrelated to the benchmark stop
    here, before hashing."""
    words = key.subject | key.context
    return bool(words) and len(words & index.vocabulary) >= index.threshold * len(key.subject)


def find_contaminated(records: Sequence[dict], indexes: Sequence[EvalIndex]) -> list[Match | None]:
    """For each record (question, answer, and for a conversation task and turns), its first
    match in the eval sets, or None. 13-gram matches are looked for before MinHash ones."""
    result: list[Match | None] = [None] * len(records)
    if not indexes or not records:
        return result
    owners, texts = [], []
    for i, record in enumerate(records):
        for side, text in row_texts(record):
            owners.append((i, side))
            texts.append(text)
    grams = [shingles(t) for t in texts]
    for index in indexes:
        for (row, side), of_text in zip(owners, grams):
            hits = [index.ngrams[g] for g in of_text if g in index.ngrams] if result[row] is None else None
            if hits:
                j = min(hits)
                result[row] = Match(index.spec.name, index.texts[j], NGRAM_METHOD,
                                    round(hits.count(j) / len(of_text), 3), side)
    questions = [k for k, (row, side) in enumerate(owners) if side == "question" and result[row] is None]
    keys = {k: question_key(texts[k]) for k in questions}
    for index in indexes:
        todo = [k for k in questions if result[owners[k][0]] is None and could_match(keys[k], index)]
        band_keys = _band_keys(_signatures([keys[k] for k in todo], index.num_perm, index.seed),
                               *_lsh_params(index.threshold, index.num_perm))
        for position, k in enumerate(todo):
            proposed = {j for buckets, of_band in zip(index.buckets, band_keys)
                        for j in buckets.get(of_band[position], ())}
            score, j = max(((similarity(keys[k], index.keys[j]), -j) for j in proposed), default=(0.0, 0))
            if score >= index.threshold:
                result[owners[k][0]] = Match(index.spec.name, index.texts[-j], MINHASH_METHOD, round(score, 3),
                                             "question")
    return result


CONTAMINATED_COLUMNS = ["pair_id", "document_id", "question", "eval_set", "matched_text", "method", "score"]


def contaminated_rows(records: Sequence[dict], matches: Sequence[Match | None]) -> pd.DataFrame:
    """The contaminated records as rows of the contaminated_rows table."""
    return pd.DataFrame([{"pair_id": r.get("pair_id"), "document_id": r.get("document_id"),
                          "question": r.get("question"), "eval_set": m.eval_set, "matched_text": m.matched_text,
                          "method": m.method, "score": m.score} for r, m in zip(records, matches) if m is not None],
                        columns=CONTAMINATED_COLUMNS)


def contamination_summary(indexes: Sequence[EvalIndex], removed: pd.DataFrame, checked: int,
                          sample: int = 5) -> dict:
    """For metadata and the dataset card: the eval sets (rows, rows removed), the rows
    checked and removed per method, and a few removed rows with what they matched."""
    return {
        "eval_sets": [{"eval_set": i.spec.name, "path": str(i.spec.path), "sha256": i.sha256[:16],
                       "eval_rows": len(i.texts), "rows_removed": int((removed["eval_set"] == i.spec.name).sum())}
                      for i in indexes],
        "reason": CONTAMINATED,
        "checked": checked,
        "threshold": min((i.threshold for i in indexes), default=DEFAULT_THRESHOLD),
        "removed": len(removed),
        "by_method": {method: int((removed["method"] == method).sum()) for method in (NGRAM_METHOD, MINHASH_METHOD)},
        "sample": removed.head(sample)[["question", "eval_set", "matched_text", "method", "score"]].to_dict("records"),
    }
