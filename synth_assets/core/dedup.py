"""Exact and near-duplicate questions, within a document and across documents.

Two questions are exact duplicates when they are equal after lowercasing (NFKC) and
removing punctuation and extra spaces. Near-duplicates ask the same thing in other words
("What is the capital of France?" / "What's the capital city of France?"):

- Each question is reduced to a QuestionKey: its kind (who / when / where / why / how,
  or "what" for every other question and request), the content words of its subject,
  and those of an "in the context of <section>" clause. The frame ("can you tell me",
  "in what year" = when, "Explain" = "Describe") and English stopwords are dropped and
  words crudely stemmed, so only what the question is about is compared.
- Two questions are near-duplicates when they are of the same kind ("When was IBM
  founded?" and "Who founded IBM?" are not), their contexts (when both have one) share
  at least MIN_CONTEXT_SIMILARITY of their words, and the weighted Jaccard similarity
  of their subjects reaches the threshold (default 0.4).
- Weights: a word counts 1 / (number of other questions of the batch that contain it).
  Words shared by many questions (the document's subject, "word processors" in a
  document about word processors) say little about whether two questions ask the same
  thing; a word only the two share counts fully. For two questions alone this is the
  plain Jaccard similarity ("capital city of France": 2 of 3 words, 0.67).
- MinHash LSH (datasketch's MinHash, banded here: _band_keys) proposes the candidate pairs, so the work grows about
  linearly with the number of questions; each candidate is then checked exactly as
  above. MinHash's estimation noise decides which pairs are looked at, so the bands
  are set to propose nearly every pair at the threshold (_lsh_params).
- Questions in another language than English (when their language is given) are
  compared by character n-grams of their words, not whole words (_shingles): German
  compounds and participles, Arabic clitics and Korean particles and verb stems
  otherwise hide the words two phrasings share.

Why content words (word 1-shingles) and not word 3-grams: questions are short (5 to 10
content words) and a paraphrase changes the frame and a word or two; one changed word
breaks up to three of a question's handful of 3-grams. On the example corpus 3-gram
Jaccard left half of the planted paraphrases below 0.6, content words nearly none.
Why 0.4: on the planted paraphrases of benchmarks/bench_filters.py it keeps recall at
about 0.96 and precision above 0.95 (docs/BENCHMARKS.md); what it misses is mostly a
synonym for the question's one distinctive word ("heavier" / "weightier"), which no
lexical measure sees.

The first occurrence (in input order) is the one kept; the others point to it.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
from datasketch import MinHash

from synth_assets.core.language import (
    CJK,
    HANGUL,
    PLACEHOLDER_LANGUAGE,
    split_unsegmented,
    stopwords,
    strip_korean_ending,
)
from synth_assets.core.task_rules import dedup_text
from synth_assets.core.text import STEMS, STOPWORDS, normalise_question

# Reason codes of the curate step (filters.py describes them).
DUPLICATE_QUESTION = "duplicate_question"
NEAR_DUPLICATE_QUESTION = "near_duplicate_question"

DEFAULT_NEAR_DUPLICATE_THRESHOLD = 0.4
DEFAULT_NUM_PERM = 64
DEFAULT_SEED = 1
# The LSH only proposes candidates, each checked exactly: a pair it misses is a missed
# near-duplicate, a pair it proposes in vain costs one check. So its bands are chosen to
# propose a pair at the threshold with at least this probability (see _lsh_params).
LSH_RECALL_AT_THRESHOLD = 0.99
MIN_COMMON = 100  # see near_duplicate_of: a word in more questions is not indexed
# Two questions set in different sections are different questions, even when the
# section titles share words ("Future of Word Processing", "Specialized Word Processing
# Tools": Jaccard 0.4); the same section, however phrased, shares most of its title.
MIN_CONTEXT_SIMILARITY = 0.6

_WORD = re.compile(r"\w+")
# The frame of a question: the words that say it is a question or a request, not what
# it asks about. Phrases that stand for a question word ("in what year" = when) are
# replaced by it, so the kind of question (below) survives the rewording.
_FRAME_SYNONYMS = (
    (re.compile(r"\b(?:(?:in|at|by|during|from) )?(?:what|which) (?:year|years|time|point|date"
                r"|period|century|decade)\b"), " when "),
    (re.compile(r"\b(?:(?:in|by) )?(?:what|which) (?:way|ways|means|manner)\b"), " how "),
    (re.compile(r"\b(?:for )?what (?:is the )?reasons?\b|\bwhat (?:causes|caused)\b"), " why "),
    (re.compile(r"\b(?:what|which) (?:person|people|individual)\b"), " who "),
    (re.compile(r"\b(?:(?:in|at) )?(?:what|which) (?:place|location)\b"), " where "),
)
_FRAME_PHRASES = re.compile(
    r"\b(?:can|could|would|will) you (?:please )?(?:tell|explain|describe|name|list|give)"
    r"(?: me| us)?\b"
    r"|\bdo you know\b|\bi(?: would|'d) like to know\b|\bi want to know\b"
    r"|\bgive (?:me |us )?(?:an? )?(?:explanation|description|overview|account) of\b"
    r"|\btell (?:me|us)(?: about)?\b|\b(?:what|which) (?:kind|type|sort)s? of\b"
)
_FRAME_WORDS = frozenset(
    """what which who whom whose when where why how explain describe define outline
    summarise summarize list name give tell please exactly briefly precisely actually
    really characterize characterise discuss elaborate""".split()
)
_CONTEXT_CLAUSE = re.compile(r"\bin the context of\b")
# Question words that ask for a particular kind of answer. "When was IBM founded?" and
# "Who founded IBM?" have the same content words but are different questions, so only
# questions of the same kind are compared; what/which/explain/describe are one kind.
_KIND = re.compile(r"\b(who|whom|whose|when|where|why|how)\b")
_CONTRACTIONS = (
    (re.compile(r"n[’']t\b"), " not"),
    (re.compile(r"[’']s\b"), " is"),  # "what's" -> "what is"; a possessive loses its s
    (re.compile(r"[’']re\b"), " are"),
    (re.compile(r"[’']ve\b"), " have"),
    (re.compile(r"[’']ll\b"), " will"),
    (re.compile(r"[’']d\b"), " would"),
)


def normalise_text(text: Any) -> str:
    """The exact-duplicate key: lowercase (NFKC), punctuation removed, spaces collapsed."""
    return normalise_question(text)


class QuestionKey(NamedTuple):
    """What near-duplicate detection compares of a question."""

    kind: str  # "what" (also which/explain/describe...), "who", "when", "where", "why", "how"
    subject: frozenset[str]  # content words of what is asked
    context: frozenset[str]  # content words of an "in the context of ..." clause
    # (shingle, share) for words cut into character n-grams (_shingles): each n-gram of a
    # word of k n-grams weighs 1/k, so a long word counts as much as a short one, not more.
    shares: tuple[tuple[str, float], ...] = ()


# Function words of German, Arabic and Russian, less single letters and the German ones
# that are English words too: questions carry no language, and detecting it per question
# would cost more than the whole comparison. (French, Spanish, Italian... share too many
# words with English: "son", "car", "come".)
_ENGLISH_TOO = frozenset(
    "die man war hat bis gross gut elf ernst gott los mann rund weg tag tat tel statt satt ende "
    "offen eben sache kam mag hoch mal ei sa en au ag na tun so also".split()
)
# Questions in these languages (or of no known language) are compared by whole words
# (English stopwords dropped, crude stems); every other language by character n-grams.
_WORD_LANGUAGES = frozenset({"en", PLACEHOLDER_LANGUAGE})
_OTHER_STOPWORDS = frozenset(
    w for w in stopwords("de") | stopwords("ar") | stopwords("ru") | stopwords("ko")
    if len(w) > 1 and w not in _ENGLISH_TOO
)


def _char_ngrams(word: str, n: int) -> list[str]:
    """The character n-grams of a word marked at both ends ("_wasser_"), or the word itself
    when it is not longer than n."""
    if len(word) <= n:
        return [word]
    marked = f"_{word}_"
    return [marked[i : i + n] for i in range(len(marked) - n + 1)]


def _shingles(word: str, language: str, listed: frozenset[str]) -> list[str]:
    """What a word of a question in `language` (not English) contributes to its key.

    English words are compared whole after crude stemming. Where words inflect and
    compound more than English ones, a whole word misses its other forms: German
    "brachte" / "gebracht", "Ostsee" / "Ostseewasser", Arabic "النيل" / "بالنيل" (clitics
    joined to the word), Korean "만드나요" / "만들어지나요" (the ㄹ of the stem drops).
    Overlapping character n-grams of the word keep what two forms share without a
    stemmer or a dictionary per language (the language-independent indexing of
    McNamee and Mayfield, "Character N-Gram Tokenization for European Language Text
    Retrieval", 2004: 4-grams about as good as or better than stemming for most
    European languages, and better for compounding ones). A Korean word is
    taken apart into its letters (jamo, Unicode NFD) after its ending is dropped, and
    cut into 3-grams of letters (about a syllable each): an irregular stem changes a
    letter, not a whole syllable. Chinese and Japanese keep their character pairs
    (split_unsegmented). Stopwords of the language are dropped first."""
    if HANGUL.search(word):
        stem = strip_korean_ending(word)
        return [] if stem in listed else _char_ngrams(unicodedata.normalize("NFD", stem), 3)
    if CJK.search(word):
        return split_unsegmented(word)
    return [] if word in listed or word.isdigit() and len(word) < 3 else _char_ngrams(word, 4)


def _content_words(text: str, language: str | None = None, shares: dict[str, float] | None = None) -> list[str]:
    words = _WORD.findall(_FRAME_PHRASES.sub(" ", text))
    if language is not None and language not in _WORD_LANGUAGES:
        listed = stopwords(language)
        result = []
        for word in words:
            pieces = _shingles(word, language, listed)
            # A Chinese or Japanese run is a phrase, not a word: its pairs weigh 1 each.
            if shares is not None and len(pieces) > 1 and (HANGUL.search(word) or not CJK.search(word)):
                shares.update((piece, 1.0 / len(pieces)) for piece in pieces)
            result += pieces
        return result
    kept = [w for w in words if w not in STOPWORDS and w not in _FRAME_WORDS and w not in _OTHER_STOPWORDS]
    return [STEMS[piece] for w in kept for piece in split_unsegmented(w)]


def question_key(text: Any, language: str | None = None) -> QuestionKey:
    """The kind of a question, the content words of its subject and of its context.

    "What's the capital city of France?" -> ("what", {"capital", "city", "france"}, {});
    "In what year was IBM founded?" -> ("when", {"ibm", "found"}, {}). The frame and
    English stopwords are dropped and inflections crudely stripped. An "in the context
    of <section>" clause (how the model-free generator, and often a model, ties a
    question to its section) is kept apart: questions about different things in the
    same section are different questions however long the section's title. A question
    made only of frame and stopwords ("What is it?") keeps all its words as subject.
    """
    if not isinstance(text, str):
        return QuestionKey("what", frozenset(), frozenset())
    lowered = unicodedata.normalize("NFKC", text).lower()
    for pattern, replacement in _CONTRACTIONS:
        lowered = pattern.sub(replacement, lowered)
    for pattern, replacement in _FRAME_SYNONYMS:
        lowered = pattern.sub(replacement, lowered)
    found = _KIND.search(lowered)
    kind = {"whom": "who", "whose": "who"}.get(found.group(1), found.group(1)) if found else "what"

    subject_text, context_text = lowered, ""
    clause = _CONTEXT_CLAUSE.search(lowered)
    if clause is not None:
        rest = lowered[clause.end():]
        comma = rest.find(",")
        if comma >= 0 and not _content_words(lowered[: clause.start()], language):
            # "In the context of X, explain Y."
            context_text, subject_text = rest[:comma], lowered[: clause.start()] + rest[comma + 1 :]
        else:  # "Explain Y in the context of X."
            context_text, subject_text = rest, lowered[: clause.start()]
    shares: dict[str, float] = {}
    subject = _content_words(subject_text, language, shares)
    if not subject and not context_text:
        subject = [STEMS[w] for w in _WORD.findall(lowered)]
    context = frozenset(_content_words(context_text, language))
    return QuestionKey(kind, frozenset(subject), context, tuple(sorted(shares.items())))


def exact_duplicate_of(
    texts: Sequence[Any], can_keep: Sequence[bool] | None = None
) -> list[int | None]:
    """For each text, the index of the first earlier kept text with the same key, or None.

    `can_keep[i]` False means text i is checked but never kept (it was rejected for
    another reason), so it cannot make a later copy a duplicate. Empty texts are never
    duplicates.
    """
    first: dict[str, int] = {}
    result: list[int | None] = []
    for i, text in enumerate(texts):
        key = normalise_text(text)
        result.append(first.get(key) if key else None)
        if key and key not in first and (can_keep is None or can_keep[i]):
            first[key] = i
    return result


def _jaccard(
    a: frozenset[str], b: frozenset[str], weight: dict[str, float] | None = None,
    shares: dict[str, float] | None = None,
) -> float:
    """Jaccard similarity, weighted by `weight` (and a word's n-grams by their `shares`)
    when given (1.0 for two empty sets)."""
    if weight is None:
        union = len(a | b)
        return len(a & b) / union if union else 1.0
    if shares:
        union = sum(weight[s] * shares.get(s, 1.0) for s in a | b)
        return sum(weight[s] * shares.get(s, 1.0) for s in a & b) / union if union else 1.0
    union = sum(weight[s] for s in a | b)
    return sum(weight[s] for s in a & b) / union if union else 1.0


def _similar(a: QuestionKey, b: QuestionKey, threshold: float, weight: dict[str, float]) -> bool:
    """Same kind, similar subjects and, when both have one, similar contexts."""
    if a.kind != b.kind:
        return False
    min_context = max(threshold, MIN_CONTEXT_SIMILARITY)
    if a.context and b.context and _jaccard(a.context, b.context) < min_context:
        return False
    shares = {**dict(a.shares), **dict(b.shares)} if a.shares or b.shares else None
    return _jaccard(a.subject, b.subject, weight, shares) >= threshold


@lru_cache(maxsize=32)
def _lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """Bands and rows for the LSH: the most rows per band (the fewest candidates in vain)
    with which two questions of Jaccard similarity `threshold` share a band with
    probability LSH_RECALL_AT_THRESHOLD. datasketch's own choice weighs missed and vain
    candidates alike: at 0.4 with 64 permutations, 16 bands of 4 rows, which propose a
    pair at the threshold only 34% of the time (a pair at 0.6, 89%); 32 bands of 2 rows
    propose it 99.6% of the time."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= LSH_RECALL_AT_THRESHOLD:
            return bands, rows
    return num_perm, 1


def near_duplicate_of(
    texts: Sequence[Any],
    threshold: float = DEFAULT_NEAR_DUPLICATE_THRESHOLD,
    num_perm: int = DEFAULT_NUM_PERM,
    seed: int = DEFAULT_SEED,
    can_keep: Sequence[bool] | None = None,
    groups: Sequence[Any] | None = None,
    languages: Sequence[str | None] | None = None,
) -> list[int | None]:
    """For each text, the index of the earliest kept text it nearly duplicates, or None.

    Texts are taken in order; a text that is a near-duplicate (module docstring) of an
    earlier kept text points to it, otherwise it is kept (unless `can_keep[i]` is
    False: rejected for another reason) and later texts are compared with it. Exact
    copies count as near-duplicates too (callers that report them apart run
    `exact_duplicate_of` first). `num_perm` and `seed` are MinHash's; the LSH bands
    are _lsh_params's for `threshold`. Time grows about linearly with the
    number of texts: each is hashed once and looked up among the kept ones. With
    `groups` (e.g. document ids), a text is only compared with texts of other groups.
    `languages` (ISO 639-1 codes, None where unknown) choose how each question's words
    are compared (see _shingles); without them every question is read as English.
    """
    if languages is None:
        languages = [None] * len(texts)
    keys = [question_key(t, language) for t, language in zip(texts, languages)]
    # How many distinct questions contain each word (exact copies must not make their
    # own words look common); see the module docstring for the weights.
    distinct = set(keys)
    frequency = Counter(word for key in distinct for word in key.subject | key.context)
    weight = {word: 1.0 / max(1, count - 1) for word, count in frequency.items()}
    # Words in more than `common` questions ("role", "important" in a large batch) weigh
    # almost nothing in the check but would make every question that uses them an LSH
    # candidate of every other: MinHash leaves them out, which keeps the work linear.
    common = max(MIN_COMMON, len(distinct) // 1000)

    def indexed(key: QuestionKey) -> list[bytes]:
        words = key.subject | key.context
        rare = [w for w in words if frequency[w] <= common] or list(words)
        return sorted(w.encode() for w in rare)

    bands, rows = _lsh_params(threshold, num_perm)
    signatures = [minhash.hashvalues for minhash in
                  MinHash.generator((indexed(k) for k in keys), num_perm=num_perm, seed=seed)]
    band_keys = _band_keys(signatures, bands, rows)
    buckets: list[dict[int, list[int]]] = [{} for _ in range(bands)]
    result: list[int | None] = []
    for i, key in enumerate(keys):
        if not key.subject and not key.context:
            result.append(None)
            continue
        candidates = {j for band, keys_of_band in zip(buckets, band_keys) for j in band.get(keys_of_band[i], ())}
        matches = [
            j for j in candidates
            if (groups is None or groups[j] != groups[i]) and _similar(key, keys[j], threshold, weight)
        ]
        result.append(min(matches) if matches else None)
        if not matches and (can_keep is None or can_keep[i]):
            for band, keys_of_band in zip(buckets, band_keys):
                band.setdefault(keys_of_band[i], []).append(i)
    return result


def _band_keys(signatures: list[np.ndarray], bands: int, rows: int) -> list[list[int]]:
    """Per LSH band, each text's key: its `rows` MinHash values of that band mixed into
    one 64-bit number. Texts whose band values are equal share the key (a rare collision
    only proposes one more candidate, which the exact check then refuses). The same
    banding as datasketch's MinHashLSH, computed for all texts at once: its per-text
    insert and query (byte strings of each band) were half of rebuilding a 3,000-document
    training dataset."""
    if not signatures:
        return [[] for _ in range(bands)]
    matrix = np.vstack(signatures).astype(np.uint64)
    keys = []
    with np.errstate(over="ignore"):  # wrapping multiplication is the mixing
        for band in range(bands):
            mixed = matrix[:, band * rows].copy()
            for column in range(band * rows + 1, (band + 1) * rows):
                mixed = mixed * np.uint64(0x9E3779B97F4A7C15) ^ matrix[:, column]
            keys.append(mixed.tolist())
    return keys


def cross_document_duplicates(
    rows: Sequence[dict],
    threshold: float = DEFAULT_NEAR_DUPLICATE_THRESHOLD,
    num_perm: int = DEFAULT_NUM_PERM,
    seed: int = DEFAULT_SEED,
) -> dict[Any, tuple[str, Any]]:
    """Pairs whose question repeats one of another document: {pair_id: (reason, kept pair_id)}.

    `rows` are the kept pairs of all documents (dicts with "document_id", "pair_id",
    "question" and, when known, "language"). They are taken in (document_id, pair_id) order and the first of each
    group of duplicates is kept (ids are compared as text, as the pipeline stores them).
    Only repeats of a pair of a *different* document are reported: repeats within a
    document were settled by filter_pairs, so any left there are deliberate. Reason is
    DUPLICATE_QUESTION for an exact copy, else NEAR_DUPLICATE_QUESTION.
    """
    ordered = sorted(rows, key=lambda r: (str(r["document_id"]), str(r["pair_id"])))
    # A conversation is compared as a whole: all its user turns.
    questions = [dedup_text(r) for r in ordered]
    documents = [r["document_id"] for r in ordered]
    exact = exact_duplicate_of(questions)
    languages = [r.get("language") if isinstance(r.get("language"), str) else None for r in ordered]
    near = near_duplicate_of(
        questions, threshold, num_perm, seed, can_keep=[e is None for e in exact], groups=documents,
        languages=languages,
    )
    result: dict[Any, tuple[str, Any]] = {}
    for row, e, n in zip(ordered, exact, near):
        match, reason = (e, DUPLICATE_QUESTION) if e is not None else (n, NEAR_DUPLICATE_QUESTION)
        if match is not None and ordered[match]["document_id"] != row["document_id"]:
            result[row["pair_id"]] = (reason, ordered[match]["pair_id"])
    return result


# --- Kept between builds: an index of every exported question (synth_assets/dataset_index.py) ---


class IndexedQuestion(NamedTuple):
    """A question of the dedup index: its key, its document and its place in arrival order."""
    seq: int
    pair_id: str
    document_id: str
    key: QuestionKey


class Frozen(NamedTuple):
    """A generation's word weights: how many distinct questions held each word when the
    generation began (a word never seen counts 1), and the count above which a word is
    left out of MinHash (see near_duplicate_of)."""
    counts: dict[str, int]
    common: int

    def weight(self, word: str) -> float:
        return 1.0 / max(1, self.counts.get(word, 1) - 1)


def frozen_weights(keys: Sequence[QuestionKey]) -> Frozen:
    """The weights near_duplicate_of would use for this batch of questions, to freeze."""
    distinct = set(keys)
    counts = Counter(word for key in distinct for word in key.subject | key.context)
    return Frozen(dict(counts), max(MIN_COMMON, len(distinct) // 1000))


def band_keys_of(keys: Sequence[QuestionKey], frozen: Frozen, threshold: float = DEFAULT_NEAR_DUPLICATE_THRESHOLD,
                 num_perm: int = DEFAULT_NUM_PERM, seed: int = DEFAULT_SEED) -> list[list[int]]:
    """Per question, its LSH band keys (signed 64-bit, for SQL), from the rare words of its
    key under the frozen counts: the same bands near_duplicate_of computes."""
    def indexed(key: QuestionKey) -> list[bytes]:
        words = key.subject | key.context
        rare = [w for w in words if frozen.counts.get(w, 1) <= frozen.common] or list(words)
        return sorted(w.encode() for w in rare)

    if not keys:
        return []
    bands, rows = _lsh_params(threshold, num_perm)
    signatures = [m.hashvalues for m in MinHash.generator((indexed(k) for k in keys), num_perm=num_perm, seed=seed)]
    per_band = _band_keys(signatures, bands, rows)
    signed = np.array(per_band, dtype=np.uint64).view(np.int64)  # DuckLake and PostgreSQL have no unsigned 64-bit
    return signed.T.tolist()


def decide_batch(
    batch: Sequence[dict], keys: Sequence[QuestionKey], band_keys: Sequence[Sequence[int]], frozen: Frozen,
    exact_in_index: dict[str, IndexedQuestion], near_candidates: dict[int, list[IndexedQuestion]],
    threshold: float = DEFAULT_NEAR_DUPLICATE_THRESHOLD,
) -> list[tuple[str | None, str | None, bool]]:
    """For each row of a batch (in arrival order), (reason, the pair it repeats, whether it
    is kept for later rows to be compared with): cross_document_duplicates' decision,
    made against the index instead of every row.

    `exact_in_index`: the earliest indexed row per normalised question; `near_candidates`:
    per batch row, the indexed keepers sharing an LSH band with it. Earlier decisions are
    never revisited: the first exported copy of a question is the one kept.
    """
    exact_first: dict[str, tuple[str, str]] = {}  # normalised question -> (pair_id, document_id) in this batch
    buckets: list[dict[int, list[int]]] = [{} for _ in range(len(band_keys[0]) if band_keys else 0)]
    weight = _FrozenWeight(frozen)
    result: list[tuple[str | None, str | None, bool]] = []
    for i, (row, key) in enumerate(zip(batch, keys)):
        normal = normalise_text(dedup_text(row))
        document = row["document_id"]
        earlier = exact_in_index.get(normal)
        exact = (earlier.pair_id, earlier.document_id) if earlier else exact_first.get(normal) if normal else None
        if exact is not None:
            # A copy of an earlier question: a duplicate when another document asked it;
            # within its own document filter_pairs settled it (kept, but not a keeper).
            result.append((DUPLICATE_QUESTION, exact[0], False) if exact[1] != document else (None, None, False))
            continue
        if normal:  # the first copy of a text, whatever becomes of it (as exact_duplicate_of)
            exact_first[normal] = (row["pair_id"], document)
        if not key.subject and not key.context:
            result.append((None, None, False))
            continue
        matches = [(c.seq, c.pair_id) for c in near_candidates.get(i, ())
                   if c.document_id != document and _similar(key, c.key, threshold, weight)]
        if not matches:
            seen = {j for band, band_key in zip(buckets, band_keys[i]) for j in band.get(band_key, ())}
            matches = [(j, batch[j]["pair_id"]) for j in sorted(seen)
                       if batch[j]["document_id"] != document and _similar(key, keys[j], threshold, weight)]
        if matches:
            result.append((NEAR_DUPLICATE_QUESTION, min(matches)[1], False))
            continue
        for band, band_key in zip(buckets, band_keys[i]):
            band.setdefault(band_key, []).append(i)
        result.append((None, None, True))
    return result


class _FrozenWeight(dict):
    """The frozen weights as the mapping _similar reads (a word never seen weighs 1)."""

    def __init__(self, frozen: Frozen) -> None:
        super().__init__()
        self.frozen = frozen

    def __missing__(self, word: str) -> float:
        return self.frozen.weight(word)
