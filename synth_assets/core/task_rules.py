"""Curation rules of the tasks beyond qa (core/tasks.py), each with its reason code.

filters.filter_pairs runs the rules every item gets (form, language, grounding,
duplicates, judge) on the part of an item that each task makes comparable to a qa pair
(`views`), then adds the task's own rules here:
- reasoning: every step of `reasoning` is supported by the chunk (REASONING_UNSUPPORTED);
- multi_hop: at least two chunks, each adding something the others do not, and no
  single chunk that grounds the whole answer (SINGLE_CHUNK_ANSWERABLE, the lexical test;
  with the judge on, its rubric asks the same);
- conversation: three to six turns (TOO_FEW_TURNS), every assistant turn grounded
  (UNGROUNDED_TURN), every later question following up an earlier turn
  (UNRELATED_FOLLOW_UP: it shares a content word with one, or refers back to one);
- unanswerable: the answer declines (MISSING_REFUSAL); the refusal rule does not apply
  to it, grounding is checked on what it says the source does say; and the question
  must not be answered by a sentence of its document (ANSWERABLE_UNANSWERABLE).
"""

from __future__ import annotations

import json
import re
from typing import Any

from synth_assets.core.evidence import STEP_LABEL
from synth_assets.core.tasks import (
    CONVERSATION,
    MAX_TURNS,
    MIN_TURNS,
    MULTI_HOP,
    QA,
    REASONING,
    SAYS_LEAD_IN,
    TASKS,
    UNANSWERABLE,
    content_stems,
    difficulty_proxy,
    key_terms,
)
from synth_assets.core.text import STEMS, STOPWORDS, TOKEN, Chunk, as_text, is_refusal, token_scores

REASONING_UNSUPPORTED = "reasoning_unsupported"
SINGLE_CHUNK_ANSWERABLE = "single_chunk_answerable"
UNGROUNDED_TURN = "ungrounded_turn"
UNRELATED_FOLLOW_UP = "unrelated_follow_up"
TOO_FEW_TURNS = "too_few_turns"
ANSWERABLE_UNANSWERABLE = "answerable_unanswerable"
MISSING_REFUSAL = "missing_refusal"

TASK_REASON_DESCRIPTIONS: dict[str, str] = {
    REASONING_UNSUPPORTED: "reasoning: a step of the reasoning (or the reasoning as a whole, when "
    "missing) is not supported by the chunk.",
    SINGLE_CHUNK_ANSWERABLE: "multi_hop: one chunk alone supports the whole answer, or a cited chunk "
    "adds nothing the others do not say, or fewer than two chunks are cited: not a multi-hop question.",
    UNGROUNDED_TURN: "conversation: an assistant turn is not supported by the section.",
    UNRELATED_FOLLOW_UP: "conversation: a later user question neither refers back to nor shares a "
    "content word with the earlier turns: it ignores the conversation.",
    TOO_FEW_TURNS: f"conversation: fewer than {MIN_TURNS} (or more than {MAX_TURNS}) complete turns.",
    ANSWERABLE_UNANSWERABLE: "unanswerable: a sentence of the document answers the question (it holds "
    "most of the question's content words), so saying the documents do not say it is false.",
    MISSING_REFUSAL: "unanswerable: the answer does not say that the documents do not answer the question.",
}
# Words that point back to an earlier turn: a follow-up may name nothing of it.
_BACK_REFERENCE = re.compile(r"\b(it|its|this|that|these|those|they|them|their|there|he|she|his|her|also|else"
                             r"|more|further|then|why|how so)\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
# Question words that carry no content for the answerability test.
_QUESTION_WORDS = {STEMS[w] for w in ("what", "who", "when", "where", "which", "why", "how", "much", "many",
                                      "does", "did", "is", "was", "are", "were", "do", "first", "exactly")}
MIN_ANSWERABLE_WORDS = 2


def task_of(record: dict) -> str:
    task = record.get("task")
    return task if isinstance(task, str) and task in TASKS else QA


def turns_of(record: dict) -> list[tuple[str, str]]:
    """A conversation's (user, assistant) turns from its stored JSON (or list); [] if unreadable."""
    value = record.get("turns")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if not isinstance(value, (list, tuple)):
        return []
    return [(as_text(turn[0]), as_text(turn[1])) for turn in value
            if isinstance(turn, (list, tuple)) and len(turn) == 2]


def sentences(text: str) -> list[str]:
    """Sentences, and lines (a list or a block of references is not one long sentence)."""
    return [s.strip() for line in as_text(text).splitlines() for s in _SENTENCE_END.split(line) if s.strip()]


def claims_of_unanswerable(answer: str) -> tuple[bool, str]:
    """(whether the answer declines, the rest: what it says the source does say, its
    lead-in ("What they say about X:") removed)."""
    declines, claims = False, []
    for sentence in sentences(answer):
        if is_refusal(sentence):
            declines = True
        else:
            claims.append(SAYS_LEAD_IN.sub("", sentence))
    return declines, " ".join(claims)


def dedup_text(record: dict) -> str:
    """What duplicates are judged on: the question, or a conversation's user turns together."""
    if task_of(record) == CONVERSATION:
        turns = turns_of(record)
        if turns:
            return " ".join(user for user, _ in turns)
    return as_text(record.get("question")).strip()


def views(record: dict) -> list[tuple[str, str]]:
    """The (question, answer) pairs the common rules read for an item: each turn of a
    conversation, the claims of an unanswerable answer, the item itself otherwise."""
    task = task_of(record)
    question, answer = as_text(record.get("question")).strip(), as_text(record.get("answer")).strip()
    if task == CONVERSATION:
        return turns_of(record) or [(question, answer)]
    if task == UNANSWERABLE:
        return [(question, claims_of_unanswerable(answer)[1])]
    return [(question, answer)]


def _recall(text: str, chunk: Chunk) -> float:
    return token_scores(TOKEN.findall(text.lower()), chunk)[0]


def task_reasons(record: dict, chunk: Chunk, min_grounding: float) -> list[str]:
    """The task's own reasons for one item; `chunk` is its source (a multi-hop item's
    chunks together). Reads "source_texts" (each cited chunk's text) and, for
    unanswerable items, "document_text" (its whole document, when known)."""
    task = task_of(record)
    answer = as_text(record.get("answer"))
    reasons: list[str] = []
    if task == REASONING:
        steps = [STEP_LABEL.sub("", line) for line in re.split(r"\n+", as_text(record.get("reasoning")))]
        steps = [s for line in steps for s in sentences(line)]
        if not steps or any(_recall(step, chunk) < min_grounding for step in steps):
            reasons.append(REASONING_UNSUPPORTED)
    elif task == MULTI_HOP:
        sources = [as_text(t) for t in record.get("source_texts") or [] if as_text(t).strip()]
        if single_chunk_answerable(answer, sources, min_grounding):
            reasons.append(SINGLE_CHUNK_ANSWERABLE)
    elif task == CONVERSATION:
        turns = turns_of(record)
        if not MIN_TURNS <= len(turns) <= MAX_TURNS:
            reasons.append(TOO_FEW_TURNS)
        seen: set[str] = set()
        for index, (user, assistant) in enumerate(turns):
            if index and not (content_stems(user) & seen) and not _BACK_REFERENCE.search(user):
                reasons.append(UNRELATED_FOLLOW_UP)
                break
            seen |= content_stems(user) | content_stems(assistant)
    elif task == UNANSWERABLE:
        declines, _ = claims_of_unanswerable(answer)
        if not declines:
            reasons.append(MISSING_REFUSAL)
        document = as_text(record.get("document_text")) or chunk.text
        if answered_by(as_text(record.get("question")), document):
            reasons.append(ANSWERABLE_UNANSWERABLE)
    return reasons


def single_chunk_answerable(answer: str, sources: list[str], min_grounding: float) -> bool:
    """The lexical multi-hop test: fewer than two sources, one source holding at least
    `min_grounding` of the answer's content words, or a source that adds none of them
    beyond the others."""
    if len(sources) < 2:
        return True
    words = content_stems(answer)
    if not words:
        return True
    found = [words & content_stems(source) for source in sources]
    if any(len(f) / len(words) >= min_grounding for f in found):
        return True
    return any(not (f - set().union(*(g for j, g in enumerate(found) if j != i))) for i, f in enumerate(found))


def answered_by(question: str, document: str, share: float = 0.8) -> bool:
    """Whether one sentence of the document names the question's subject and holds
    `share` of its other content words: then the document probably answers it. A
    many-word name ("Dow Jones Industrial Average") counts as one word, so naming the
    subject alone is not enough; numbers are left out on both sides."""
    words = content_stems(question) - _QUESTION_WORDS
    names = key_terms(question) & words
    rest = words - names
    if len(rest) + bool(names) < MIN_ANSWERABLE_WORDS or not rest:
        return False
    for sentence in sentences(document):
        found = content_stems(sentence)
        if (not names or names & found) and len(rest & found) >= share * len(rest):
            return True
    return False


def judge_view(record: dict) -> tuple[str, str]:
    """The (question, answer) a judge sees for an item: a conversation as its transcript,
    reasoning with its steps, the others as they are."""
    task = task_of(record)
    question, answer = as_text(record.get("question")), as_text(record.get("answer"))
    if task == CONVERSATION:
        turns = turns_of(record)
        if turns:
            return turns[0][0], "\n".join(f"User: {u}\nAssistant: {a}" for u, a in turns)
    if task == REASONING and as_text(record.get("reasoning")).strip():
        return question, f"Reasoning: {as_text(record.get('reasoning')).strip()}\nAnswer: {answer}"
    return question, answer


def difficulty_of(record: dict[str, Any]) -> int:
    """The measured difficulty proxy (core.tasks.difficulty_proxy) of a stored item."""
    task = task_of(record)
    sources = record.get("source_chunk_ids")
    hops = len(json.loads(sources)) if isinstance(sources, str) and sources.startswith("[") else 1
    steps = len([s for s in re.split(r"\n+", as_text(record.get("reasoning"))) if s.strip()])
    if task == CONVERSATION:
        steps = max(0, len(turns_of(record)) - 1)
    answer = as_text(record.get("answer"))
    if task == CONVERSATION:
        answer = " ".join(a for _, a in turns_of(record)) or answer
    return difficulty_proxy(task, answer, as_text(record.get("chunk_text")), hops=hops, steps=steps)
