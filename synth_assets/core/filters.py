"""Basic filters for generated question-answer pairs.

A filter never deletes a pair: `filter_pairs` returns, for every pair, the list of
reasons it fails (empty when it is kept), so the curate step can keep the rejects
apart with every reason that applied and the UI can count them per reason.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
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
    "generated from, so it may not be supported by the source.",
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


@dataclass(frozen=True)
class FilterConfig:
    min_question_chars: int = 10
    max_question_chars: int = 300
    min_answer_chars: int = 20
    max_answer_chars: int = 2000
    min_grounding: float = 0.8  # share of the answer's content tokens found in the chunk
    min_stopword_ratio: float = 0.15  # share of English stopwords among the answer's words


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


def _content_tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS]


def grounding_score(answer: str, chunk_text: str) -> float:
    """Share of the answer's content tokens that occur in the chunk text.

    Tokens are lowercase runs of letters and digits, stopwords excluded, compared after
    crude inflection stripping. An answer with no content tokens (only stopwords or
    punctuation, or empty) scores 1.0: it makes no claim the chunk could fail to
    support; such answers are rejected by the length and low-information rules instead.
    """
    answer_tokens = _content_tokens(_text(answer))
    if not answer_tokens:
        return 1.0
    chunk_stems = {_stem(t) for t in _content_tokens(_text(chunk_text))}
    found = sum(1 for t in answer_tokens if _stem(t) in chunk_stems)
    return found / len(answer_tokens)


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


def normalise_question(text: str) -> str:
    """The duplicate key: lowercase, punctuation removed, whitespace collapsed."""
    return " ".join(_PUNCTUATION.sub("", (text or "").lower()).split())


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


def filter_pairs(pairs: list[dict], config: FilterConfig = FilterConfig()) -> list[list[str]]:
    """For each pair (dict with "question", "answer", "chunk_text"), the reasons it fails.

    The result is aligned with `pairs`; an empty list means the pair is kept. Every
    applicable reason is listed. Duplicates are judged in input order: a question that
    repeats one of an earlier pair that passed every other rule gets DUPLICATE_QUESTION,
    so the first good copy is the one kept (a rejected earlier copy does not block a
    later good one).
    """
    kept_questions: set[str] = set()
    results: list[list[str]] = []
    for pair in pairs:
        question = _text(pair.get("question")).strip()
        answer = _text(pair.get("answer")).strip()
        chunk_text = _text(pair.get("chunk_text"))
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
        if answer:
            if len(answer) < config.min_answer_chars:
                reasons.append(ANSWER_TOO_SHORT)
            if len(answer) > config.max_answer_chars:
                reasons.append(ANSWER_TOO_LONG)
            if _is_low_information(answer, config.min_stopword_ratio):
                reasons.append(LOW_INFORMATION)
            if grounding_score(answer, chunk_text) < config.min_grounding:
                reasons.append(UNGROUNDED)

        key = normalise_question(question)
        if key and key in kept_questions:
            reasons.append(DUPLICATE_QUESTION)
        elif key and not reasons:
            kept_questions.add(key)
        results.append(reasons)
    return results
