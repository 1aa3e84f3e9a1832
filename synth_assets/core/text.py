"""Text primitives shared by the pair filters (filters.py), near-duplicate detection
(dedup.py) and the heuristic judge (judge.py): tokens, crude stems and word lists, the
grounding scores of an answer against its chunk, and the checks of one pair's form
(question or instruction, refusal, passage-dependent, answer repeating the question).
"""

from __future__ import annotations

import re
import string
import unicodedata
from functools import lru_cache
from typing import Any

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

TOKEN = re.compile(r"\w+")  # letters and digits, for grounding: numbers must match too
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}“”‘’«»—–…¿¡]")
# The default gap of skip_bigram_support (FilterConfig.skip_bigram_window).
SKIP_BIGRAM_WINDOW = 4


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


def as_text(value: Any) -> str:
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


STEMS = _StemMemo()


def _content_stems(text: str) -> list[str]:
    """Stems of the content tokens of `text`, in order (the unit of the grounding scores)."""
    stems = STEMS
    return [stems[t] for t in TOKEN.findall(text.lower()) if t not in STOPWORDS]


class Chunk:
    """A chunk prepared for the grounding scores, once per chunk (about five pairs share
    each chunk, which is ten times longer than an answer) and only as far as needed: an
    answer that is a verbatim span of the chunk (the model-free generator's, and most
    extractive answers) is grounded by definition, so the word index below is built
    only when some answer of the chunk is not."""

    def __init__(self, text: str, window: int) -> None:
        self.tokens = TOKEN.findall(text.lower())
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
            stems = [STEMS[t] for t in self.tokens if t not in STOPWORDS]
            for distance in range(1, self.window + 1):
                self._skip_bigrams.update(zip(stems, stems[distance:]))
            self._stems = frozenset(stems)
        return self._stems, self._skip_bigrams


_cached_chunk = lru_cache(maxsize=1024)(Chunk)  # for the one-pair functions


def token_scores(answer_tokens: list[str], chunk: Chunk) -> tuple[float, float]:
    """(token recall, skip-bigram support) of an answer's tokens against a chunk."""
    if chunk.contains(answer_tokens):
        return 1.0, 1.0
    stems = [STEMS[t] for t in answer_tokens if t not in STOPWORDS]
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
    answer: str, chunk_text: str, window: int = SKIP_BIGRAM_WINDOW
) -> tuple[float, float]:
    """(grounding_score, skip_bigram_support) of one answer, computed together."""
    tokens = TOKEN.findall(as_text(answer).lower())
    return token_scores(tokens, _cached_chunk(as_text(chunk_text), window))


def grounding_score(answer: str, chunk_text: str) -> float:
    """Share of the answer's content tokens that occur in the chunk text.

    Tokens are lowercase runs of letters and digits, stopwords excluded, compared after
    crude inflection stripping. An answer with no content tokens (only stopwords or
    punctuation, or empty) scores 1.0: it makes no claim the chunk could fail to
    support; such answers are rejected by the length and low-information rules instead.
    """
    return grounding_scores(answer, chunk_text)[0]


def skip_bigram_support(answer: str, chunk_text: str, window: int = SKIP_BIGRAM_WINDOW) -> float:
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
    answer = as_text(answer)
    if _REFUSAL_START.match(answer):
        return True
    lowered = answer.lower()
    return any(hint in lowered for hint in _REFUSAL_HINTS) and _REFUSAL.search(answer) is not None


def is_passage_dependent(question: str) -> bool:
    """True when the question only makes sense next to its source ("According to the
    passage above, ...", "What does this document describe?", "What does the author
    argue?"): a trained model is asked such questions without any passage."""
    return _PASSAGE_DEPENDENT.search(as_text(question)) is not None


def answer_repeats_question(question: str, answer: str) -> bool:
    """True when the answer says nothing the question did not: all its content words are
    in the question, or (an answer of stopwords only) it equals the question ignoring
    case and punctuation."""
    return stems_repeat_question(as_text(question), as_text(answer), _content_stems(as_text(answer)))


def stems_repeat_question(question: str, answer: str, answer_stems: list[str]) -> bool:
    """answer_repeats_question for an answer whose content stems are already known."""
    if not answer_stems:
        key = normalise_question(answer)
        return bool(key) and key == normalise_question(question)
    return set(answer_stems) <= set(_content_stems(question))


def normalise_question(text: str) -> str:
    """The duplicate key: lowercase (NFKC), punctuation removed, whitespace collapsed."""
    folded = unicodedata.normalize("NFKC", text if isinstance(text, str) else "").lower()
    return " ".join(_PUNCTUATION.sub("", folded).split())
