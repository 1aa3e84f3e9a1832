"""Sentence analysis for the model-free generator: which parts of a chunk can be answers.

A chunk is split into paragraphs (wrapped lines joined; headings, tables and code
skipped) and sentences, each a verbatim slice of the text. Answers are prose sentences
(6-60 words, ending in . or !, mostly Latin letters, no markup or citation markers, not
a title); the one exception is an instruction line ending in ":" followed by its list
items, which is answered by the line and the items. A sentence is answered together
with the next one when that one starts with "It", "This", ... and only makes sense with
it. questions.py writes the questions for these units.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from synth_assets.core.text import STOPWORDS

# Prose sentences: long enough to say something, short enough to be one answer.
MIN_SENTENCE_WORDS = 6
MAX_SENTENCE_WORDS = 60
MAX_ANSWER_WORDS = 90  # a sentence plus the pronoun sentence that continues it

# ---------------------------------------------------------------------------
# Small word lists (lowercase)
# ---------------------------------------------------------------------------

# A subject starting with one of these points back to an earlier sentence (or is no
# subject at all, like "but the nostrils ...").
ANAPHORIC = frozenset(
    "it its this these those they them their he she his her that there here such "
    "which who we you i our also however thus therefore and but or yet so nor".split()
)
# Common abbreviations whose period does not end a sentence (without the final dot).
_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt ft gen col lt sgt capt rev hon gov pres sen rep
    e.g i.e cf vs viz al approx ca fig figs eq eqs no nos vol vols pp p ch sec dept est
    inc ltd co corp bros jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k
    ed eds trans op""".split()
)

# ---------------------------------------------------------------------------
# Sentence splitting
# ---------------------------------------------------------------------------

OPENERS = "\"'“‘([«"
CLOSERS = "\"'”’)]»"
PUNCT = string.punctuation + "“”‘’«»—–…"
_LIST_MARKER = re.compile(r"^(?:[-*+•◦▪‣∞]\s+|\d{1,3}[.)]\s+|[a-z][.)]\s+|\[[ xX]?\]\s+)")
_CITATION = r"\[\s*\d{1,3}\s*\]"
# End punctuation and closing quotes, then any citation markers (they belong to the
# sentence before, e.g. "worldwide.[11]" or "goose . [ 5 ]"), then whitespace and
# something that can start a sentence.
_BOUNDARY = re.compile(
    rf"(?P<end>[.!?…]+[{re.escape(CLOSERS)}]*)(?P<cites>(?:\s*{_CITATION})*)"
    rf"(?P<gap>\s+)(?=[{re.escape(OPENERS)}]*[A-Z0-9À-ÖØ-Þ])"
)
_LEADING_CITATIONS = re.compile(rf"^(?:{_CITATION}\s*)+")
_TABLE_LINE = re.compile(r"^\|.*\||^\s*\|?\s*:?-{3,}")


@dataclass
class _Line:
    raw: str  # the stripped line as it is in the text
    content: str  # without its list marker
    item: bool  # a list item


def _lines(text: str) -> list[_Line | None]:
    """Content lines of `text`; None marks a paragraph break or a skipped line.

    Headings, tables, HTML comments, rules and code blocks are not prose: they are
    skipped, and they also end the paragraph before them.
    """
    out: list[_Line | None] = []
    in_code = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            in_code = not in_code
            out.append(None)
            continue
        if (
            in_code
            or not stripped
            or stripped.startswith(("#", "<!--", "---", "***", "___"))
            or _TABLE_LINE.match(stripped)
            or stripped.count("|") >= 2
        ):
            out.append(None)
            continue
        content, item = stripped, False
        while (marker := _LIST_MARKER.match(content)) is not None:
            content, item = content[marker.end() :], True
        if content:
            out.append(_Line(stripped, content, item))
        else:
            out.append(None)
    return out


def _ends_sentence(text: str) -> bool:
    return text.rstrip(CLOSERS).endswith((".", "!", "?", ":", "…"))


def _continues(previous: str, line: _Line) -> bool:
    """Whether `line` continues the sentence of `previous` (a wrapped line).

    Only when that is clear: the previous line has no end punctuation and the new line
    starts in lowercase, or the previous one ends mid-phrase (comma, hyphen, "and").
    A caption or a heading-like line followed by a capitalised line stays apart.
    """
    if line.item or _ends_sentence(previous):
        return False
    if line.content[:1].islower():
        return True
    last = previous.split()[-1].lower() if previous.split() else ""
    return previous.endswith((",", "-", "–", "—", "(")) or last in STOPWORDS


def _paragraphs(text: str) -> list[tuple[str, list[_Line]]]:
    """(joined text, lines) of each paragraph; wrapped lines are joined with a space.

    A paragraph's joined text equals its lines in the source with whitespace
    normalised (list markers are only removed from its first line), so every slice of
    it is found in the normalised chunk text.
    """
    paragraphs: list[list[_Line]] = []
    current: list[_Line] = []
    for line in _lines(text):
        if line is None or not current or not _continues(current[-1].raw, line):
            if current:
                paragraphs.append(current)
            current = [line] if line is not None else []
        else:
            current.append(line)
    if current:
        paragraphs.append(current)
    return [
        (" ".join([lines[0].content] + [line.raw for line in lines[1:]]), lines)
        for lines in paragraphs
    ]


def _is_abbreviation(before: str) -> bool:
    """Whether the word before a period makes it an abbreviation, not a sentence end."""
    word = before.split()[-1].lstrip(OPENERS).lower() if before.split() else ""
    if not word or before[-1].isspace():
        return False
    return (
        word in _ABBREVIATIONS
        or re.fullmatch(r"[^\W\d_]", word) is not None  # an initial: "J. Watson"
        or re.fullmatch(r"(?:[^\W\d_]\.)+[^\W\d_]", word) is not None  # "U.S", "e.g"
    )


def _sentence_spans(paragraph: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence in a paragraph, citation markers left out."""
    spans = []
    start = 0
    for match in _BOUNDARY.finditer(paragraph):
        end_mark = match.group("end")
        if end_mark == "." and _is_abbreviation(paragraph[start : match.start()]):
            continue
        spans.append((start, match.end("end")))
        start = match.end()
    spans.append((start, len(paragraph)))
    cleaned = []
    for s, e in spans:
        lead = _LEADING_CITATIONS.match(paragraph, s)
        if lead:
            s = lead.end()
        while s < e and paragraph[s].isspace():
            s += 1
        while e > s and paragraph[e - 1].isspace():
            e -= 1
        if s < e:
            cleaned.append((s, e))
    return cleaned


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, each a verbatim slice of it (up to whitespace).

    Wrapped lines are joined first; markdown headings, tables and comments are
    skipped; list markers are removed. Periods of abbreviations ("e.g.", "Dr.",
    "U.S."), initials ("J. Watson") and decimals ("3.5") do not end a sentence.
    Citation markers such as "[11]" are dropped at sentence ends.
    """
    return [
        paragraph[s:e]
        for paragraph, _ in _paragraphs(text)
        for s, e in _sentence_spans(paragraph)
    ]


# ---------------------------------------------------------------------------
# Which sentences can be answers
# ---------------------------------------------------------------------------


def is_latin_prose(sentence: str) -> bool:
    """Mostly letters of a Latin script, and no markup, formulas or citation markers.

    The templates are English, and markup in an answer would be learned by the model.
    """
    chars = [c for c in sentence if not c.isspace()]
    letters = [c for c in chars if c.isalpha()]
    if not chars or len(letters) < 0.75 * len(chars):
        return False
    latin = sum(1 for c in letters if c < "\u0250")
    if latin < 0.9 * len(letters):
        return False
    if re.search(_CITATION, sentence) or re.search(r"[=|{}\\<>*_`^~]|\]\(|https?:|www\.", sentence):
        return False
    return True


# Wikipedia-style hatnotes and navigation that read like sentences.
_NAVIGATION = re.compile(
    r"^(?:For (?:other|more)\b.*\bsee\b|See also\b|Main article\b|This article is about\b)"
    r"|\((?:PDF|pdf)\)|\bISBN\b|\bdoi\b|\bRetrieved\b|^[\"“][^\"”]*[\"”]\s*\.$"
)


def is_prose(sentence: str) -> bool:
    """A statement of 6-60 words, starting with a capital and ending with . or !.

    Titles ("A Field Guide to the Birds of Hawaii.") are not: most of their words are
    capitalised, which running prose never has.
    """
    words = sentence.split()
    if not MIN_SENTENCE_WORDS <= len(words) <= MAX_SENTENCE_WORDS:
        return False
    end = sentence.rstrip(CLOSERS)
    if not end.endswith((".", "!")) or end.endswith("..") or _NAVIGATION.search(sentence):
        return False
    long_words = [w.strip(PUNCT) for w in words if len(w.strip(PUNCT)) > 3]
    if sum(w[:1].isupper() for w in long_words) > 0.5 * len(long_words):
        return False
    first_letter = next((c for c in sentence if c.isalpha()), "")
    return first_letter.isupper() and is_latin_prose(sentence)


def bare_word(token: str) -> str:
    """A word as the word lists hold it: lowercase, without surrounding punctuation."""
    return token.strip(PUNCT).lower()


# ---------------------------------------------------------------------------
# Evidence: the units that can be answers
# ---------------------------------------------------------------------------


@dataclass
class Unit:
    """A candidate answer: a sentence of the chunk (or an instruction with its list)."""

    sentence: str  # what the rules read
    evidence: str  # what the answer is (verbatim)
    position: int
    covers: tuple[int, ...]  # unit positions used up by this evidence
    is_list: bool = False


def normalise(text: str) -> str:
    """Whitespace collapsed, lowercase: how answers and questions are compared."""
    return " ".join(text.split()).lower()


def evidence_units(text: str) -> list[Unit]:
    """Candidate evidence: prose sentences, and instruction lines with their list."""
    units: list[Unit] = []
    paragraphs = _paragraphs(text)
    for index, (paragraph, lines) in enumerate(paragraphs):
        spans = _sentence_spans(paragraph)
        for k, (s, e) in enumerate(spans):
            units.append(Unit(paragraph[s:e], paragraph[s:e], len(units), (len(units),)))
            # A next sentence starting with "It"/"This"... belongs to the answer.
            if k + 1 < len(spans):
                ns, ne = spans[k + 1]
                first = bare_word(paragraph[ns:ne].split()[0])
                continues = first in ANAPHORIC - {"which", "who", "there", "here"}
                joined = paragraph[s:ne]
                if (
                    continues
                    and not paragraph[e:ns].strip()  # nothing (no citation) in between
                    and len(joined.split()) <= MAX_ANSWER_WORDS
                    and is_prose(paragraph[ns:ne])
                ):
                    units[-1].evidence = joined
                    units[-1].covers = (len(units) - 1, len(units))
        # "Do this:" followed by list items: the intro with its items is one answer.
        if paragraph.rstrip().endswith(":") and index + 1 < len(paragraphs):
            items = []
            for following, following_lines in paragraphs[index + 1 :]:
                if not following_lines[0].item or len(following.split()) > 30:
                    break
                items.append(" ".join(line.raw for line in following_lines))
            intro = _sentence_spans(paragraph)[-1]
            intro_text = paragraph[intro[0] : intro[1]]
            if len(items) >= 2 and len(intro_text.split()) >= MIN_SENTENCE_WORDS:
                evidence = "\n".join([intro_text, *items])
                units.append(Unit(intro_text, evidence, len(units), (len(units),), is_list=True))
    # A list answer uses up the sentences inside it (its intro and its items).
    for unit in units:
        if unit.is_list:
            inside = normalise(unit.evidence)
            unit.covers = tuple(u.position for u in units if normalise(u.evidence) in inside)
    return units

