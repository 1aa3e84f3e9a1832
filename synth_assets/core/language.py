"""The language of a chunk or a pair, and the word lists known for it.

Detection is lingua's (`lingua-language-detector`): its n-gram models ship in the wheel,
so it works offline, and it tells apart short texts better than the other offline
detectors. It is restricted to DETECTED_LANGUAGES, for speed: its cost grows with the
number of candidate languages of a script (over all 75 languages, the pairs of a
100,000-pair run took ~40 s to detect, against ~10 s over these; see
benchmarks/bench_filters.py). A text in a language outside the set is called the
nearest language of the set.

- Text whose function words already show its language (English for a chunk, the
  chunk's language for a pair) skips the detector: that is most text, and a share of
  function words is a hundred times cheaper than the detector.
- Chunks get the high-accuracy detector on their first CHUNK_SAMPLE_CHARS characters.
- Pairs get the low-accuracy (trigram) detector, and only where it disagrees with the
  chunk is the pair detected again, with high accuracy, between the two candidates: on
  short text the fast detector is often wrong, and a pair wrongly called "another
  language" would be rejected for nothing.

Languages are ISO 639-1 codes ("en", "de", "ar", "ko", "zh"); None is undetermined (no
letters).
"""

from __future__ import annotations

import re
from functools import lru_cache

import stopwordsiso
from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

from synth_assets.core.text import STOPWORDS

# The languages told apart: the ones the filters have word lists and phrasings for
# (filters.py, text.py) and their most common neighbours.
DETECTED_LANGUAGES = (
    Language.ENGLISH, Language.GERMAN, Language.FRENCH, Language.SPANISH, Language.ITALIAN,
    Language.PORTUGUESE, Language.DUTCH, Language.RUSSIAN, Language.ARABIC, Language.KOREAN,
    Language.CHINESE, Language.JAPANESE,
    # Without it, lorem ipsum filler is called Italian or Spanish and read as prose.
    Language.LATIN,
)
# Chunks are long; their first characters tell their language as well as the whole
# (detection time grows with the length).
CHUNK_SAMPLE_CHARS = 400
# Function-word shares that settle a language without the detector (see _reads_as):
# English prose has 0.35-0.5 of English function words, other languages below 0.17.
ENGLISH_SHARE = 0.3
SAME_LANGUAGE_SHARE = 0.25
# A pair with fewer letters than this is too short to call its language different
# from its chunk's ("Armonk, New York" is in no particular language). A Chinese,
# Japanese or Korean character counts twice: one carries about a word.
MIN_LETTERS_FOR_MISMATCH = 20

_LETTER = re.compile(r"[^\W\d_]")
WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")  # letters only, for the stopword share
# Scripts written without spaces between words (or, for Korean, with particles joined
# to the words): a word list cannot be matched against their space-separated runs.
UNSEGMENTED_LANGUAGES = frozenset({"zh", "ja", "ko", "th"})
# Latin in the documents this pipeline gets is lorem ipsum filler: it is held to the
# English rule, as before languages were told apart, so filler stays rejected (a corpus
# of real Latin would need this changed).
PLACEHOLDER_LANGUAGE = "la"

CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


@lru_cache(maxsize=1)
def _accurate_detector() -> LanguageDetector:
    return LanguageDetectorBuilder.from_languages(*DETECTED_LANGUAGES).build()


@lru_cache(maxsize=1)
def _fast_detector() -> LanguageDetector:
    return LanguageDetectorBuilder.from_languages(*DETECTED_LANGUAGES).with_low_accuracy_mode().build()


@lru_cache(maxsize=64)
def _between(first: Language, second: Language) -> LanguageDetector:
    return LanguageDetectorBuilder.from_languages(first, second).build()


def _code(language: Language | None) -> str | None:
    return language.iso_code_639_1.name.lower() if language is not None else None


def _language(code: str) -> Language:
    return Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper()))


def letter_count(text: str) -> int:
    return len(_LETTER.findall(text)) + len(CJK.findall(text))


HANGUL = re.compile(r"[\uac00-\ud7af]")
# Endings of Korean questions and the commonest particles, longest first: stripped from
# a word (like the crude English stemmer of text.py) before it is cut into pairs.
_KOREAN_ENDINGS = (
    "입니까", "습니까", "인가요", "었나요", "았나요", "할까요", "나요", "가요", "까요", "니까",
    "에서", "으로", "은", "는", "이", "가", "을", "를", "에", "의", "로", "와", "과", "도",
)


@lru_cache(maxsize=1)
def _chinese_function_words() -> re.Pattern[str]:
    words = sorted((w for w in stopwords("zh") if len(w) > 1 and CJK.fullmatch(w[0])), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, words)))


def strip_korean_ending(word: str) -> str:
    """A Korean word without its question ending or particle ("높이는" -> "높이")."""
    for ending in _KOREAN_ENDINGS:
        if word.endswith(ending) and len(word) > len(ending):
            return word[: -len(ending)]
    return word


def split_unsegmented(word: str) -> list[str]:
    """A run of Chinese, Japanese or Korean characters as overlapping character pairs
    (written without spaces, or with particles joined to the word, such a run is not one
    word: its pairs stand in for words when texts are compared), after dropping Chinese
    function words ("什么", "哪些") and Korean endings ("나요", "는"); any other word as
    itself."""
    if not CJK.search(word):
        return [word]
    if HANGUL.search(word):
        pieces = [strip_korean_ending(word)]
    else:
        pieces = [p for p in _chinese_function_words().split(word) if p]
    return [p[i : i + 2] if len(p) > 1 else p for p in pieces for i in range(max(1, len(p) - 1))]


def weighted_length(text: str) -> int:
    """Length in characters, a Chinese, Japanese or Korean character counting twice, so
    that one length limit fits every script ("鸭子吃什么？" says as much as "What do ducks
    eat?")."""
    return len(text) + len(CJK.findall(text))


def detect_chunk_language(text: str) -> str | None:
    """The language of a chunk (or any longer text), or None when it has no letters.

    English prose, most of what the pipeline gets, is told by its function words alone
    (a share of ENGLISH_SHARE of them), which costs a hundredth of the detector."""
    sample = (text or "")[:CHUNK_SAMPLE_CHARS]
    if not letter_count(sample):
        return None
    if stopword_ratio(sample, "en") >= ENGLISH_SHARE:
        return "en"
    return _code(_accurate_detector().detect_language_of(sample))


def detect_pair_languages(texts: list[str], chunk_languages: list[str | None]) -> list[str | None]:
    """detect_pair_language for many pairs; the detector runs on every core, and only
    for pairs whose function words do not already show their chunk's language."""
    result: list[str | None] = list(chunk_languages)
    unsure = [i for i, (text, chunk_language) in enumerate(zip(texts, chunk_languages))
              if not _reads_as(text, chunk_language)]
    fast = _fast_detector().detect_languages_in_parallel_of([texts[i] for i in unsure])
    for i, detected in zip(unsure, fast):
        result[i] = _pair_language(texts[i], _code(detected), chunk_languages[i])
    return result


def _reads_as(text: str, language: str | None) -> bool:
    """True when at least SAME_LANGUAGE_SHARE of the words of `text` are function words
    of `language` (its own language's share is 0.2-0.6 in the benchmark's pairs, another
    language's below 0.17)."""
    return bool(language_stopwords(language)) and stopword_ratio(text, language) >= SAME_LANGUAGE_SHARE


def detect_pair_language(text: str, chunk_language: str | None) -> str | None:
    """The language of a pair's text (question and answer), given its chunk's.

    The chunk's language unless the pair is clearly in another one: long enough, and
    detected as the other language both by the fast detector and by the accurate one
    choosing between the two. None when the text has no letters.
    """
    return detect_pair_languages([text], [chunk_language])[0]


def _pair_language(text: str, fast: str | None, chunk_language: str | None) -> str | None:
    text = text or ""
    letters = letter_count(text)
    if not letters:
        return None
    if fast == chunk_language:
        return fast
    if chunk_language is None:
        return fast if letters >= MIN_LETTERS_FOR_MISMATCH else None
    if fast is None or letters < MIN_LETTERS_FOR_MISMATCH:
        return chunk_language
    if _reads_as(text, fast):  # its function words agree with the detector
        return fast
    choice = _between(_language(chunk_language), _language(fast)).detect_language_of(text)
    return _code(choice) or chunk_language


@lru_cache(maxsize=None)
def stopwords(code: str | None) -> frozenset[str]:
    """The stopword list of a language (`stopwordsiso`), empty when it has none."""
    if code is None or not stopwordsiso.has_lang(code):
        return frozenset()
    return frozenset(word.lower() for word in stopwordsiso.stopwords(code))


def language_stopwords(language: str | None) -> frozenset[str]:
    """The word list of the low-information rule for a language; empty when the rule has
    none (it is then skipped). English keeps the list of text.py, which grounding and
    dedup share and the rule's threshold was tuned on; other languages use stopwordsiso."""
    if language in ("en", PLACEHOLDER_LANGUAGE):
        return STOPWORDS
    if language in UNSEGMENTED_LANGUAGES:
        return frozenset()
    return stopwords(language)


def stopword_ratio(text: str, language: str | None = "en") -> float:
    """Share of the language's stopwords among the words of `text` (0.0 when it has no
    words or the language no list)."""
    words = [w.lower() for w in WORD.findall(text)]
    listed = language_stopwords(language)
    if not words:
        return 0.0
    return sum(1 for w in words if w in listed) / len(words)
