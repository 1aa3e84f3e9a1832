"""The model-free forms of the tasks beyond qa (core/tasks.py): honest and simple.

Like qa's, every answer is made of the chunks' own sentences, verbatim, so each item is
grounded by construction; only the framing is written by rule:
- reasoning: two neighbouring sentences of a chunk that share a term become two steps;
  the question is the second sentence's, the answer the second sentence;
- multi_hop: a sentence of one chunk and a sentence of another chunk of the document
  that name the same term (the chunks picked by core.tasks.pick_partners) are joined:
  "When was X built, and what does X hold?", answered by both sentences;
- conversation: consecutive sentences of a section, each turn's question following up
  a term of an earlier turn ("And why ...?"), three to six turns;
- unanswerable: a question about an attribute the chunk never states (when, who made,
  what it costs, where it is based: checked absent by the cues of `_ABSENT`), answered
  by saying so and quoting what the chunk does say about the subject.

`ChunkUnits` holds a chunk's candidate sentences and the ones already used, so two
tasks never spend the same sentence.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

from synth_assets.core.tasks import (
    CONVERSATION,
    QA,
    MAX_TURNS,
    MIN_TURNS,
    MULTI_HOP,
    REASONING,
    UNANSWERABLE,
    content_stems,
    difficulty_proxy,
)
from synth_assets.generation.model_free import generate_pairs
from synth_assets.generation.questions import chunk_context, questions_for
from synth_assets.generation.sentences import Unit, evidence_units, normalise

MODEL_FREE_TASKS_VERSION = "model-free-tasks-v1"
_REASONING_TYPES = {"why": "causal", "how": "procedural"}
_WH = ("what", "how", "why", "when", "who", "which", "where")


@dataclass
class Item:
    task: str
    question: str
    answer: str
    question_type: str
    evidence: str
    difficulty: int
    reasoning: str | None = None
    source_chunk_ids: tuple[str, ...] = ()
    turns: tuple[tuple[str, str], ...] = ()
    quotes: tuple[str, ...] = ()  # the sentences it used, each verbatim


@dataclass
class ChunkUnits:
    """A chunk's sentences that have a question, and which of them are spent."""

    chunk_id: str
    text: str
    units: list[tuple[Unit, str, str]]  # (unit, kind, question), in text order
    used: set[int] = field(default_factory=set)
    # Every prose sentence, with or without a question (a reasoning step needs none).
    sentences: list[Unit] = field(default_factory=list)
    headings: tuple[str, ...] = ()
    title: str | None = None
    # qa's pairs for the chunk (model_free.generate_pairs), made once, and those taken.
    _qa: list | None = field(default=None, repr=False)
    _qa_taken: set[int] = field(default_factory=set, repr=False)

    @classmethod
    def of(cls, chunk_id: str, text: str, headings: list[str], title: str | None) -> ChunkUnits:
        ctx = chunk_context(text, headings, title)
        normalised = normalise(text)
        units, sentences = [], []
        for unit in evidence_units(text):
            if unit.is_list or normalise(unit.evidence) not in normalised:
                continue
            sentences.append(unit)
            found = questions_for(unit, ctx)
            if found:  # the most specific rule first (questions_for keeps the rules' order)
                kind, question = sorted(found, key=lambda kq: (kq[0] == "explain", kq[0] == "what"))[0]
                units.append((unit, kind, question))
        return cls(chunk_id, text, units, sentences=sentences, headings=tuple(headings), title=title)

    def qa_pairs(self, max_pairs: int) -> list:
        """The pairs qa alone would write for this chunk (what sizes a document's mix)."""
        if self._qa is None:
            self._qa = generate_pairs(self.text, list(self.headings), max_pairs=max_pairs, title=self.title)
        return self._qa

    def free(self) -> list[tuple[Unit, str, str]]:
        return [u for u in self.units if self.used.isdisjoint(u[0].covers)]

    def spend(self, unit: Unit) -> None:
        self.used.update(unit.covers)


_EXPLAIN = re.compile(r"^(?:Explain|Describe) (?P<phrase>.+?)(?: in the context of .+)?\.$")


def _follow_up(question: str) -> str:
    """A question phrased as a follow-up: "And why ...?" (its own subject stays named);
    "Explain X in the context of Y." becomes "What about X?"."""
    explain = _EXPLAIN.match(question)
    if explain:
        return f"What about {explain.group('phrase')}?"
    first = question.split()[0]
    keep = first.isupper() or any(c.isupper() for c in first[1:])  # IBM, DuckDB: names keep their case
    return f"And {first if keep else first.lower()}{question[len(first):]}"


def _joined(first: str, second: str) -> str:
    """Two questions as one: "When was X built, and what does X hold?"."""
    first, second = (f"What about {m.group('phrase')}?" if (m := _EXPLAIN.match(q)) else q for q in (first, second))
    head = first.rstrip("?").rstrip()
    word = second.split()[0].lower()
    tail = f"{second[0].lower()}{second[1:]}" if word in _WH else second
    return f"{head}, and {tail}"


def qa_items(chunk: ChunkUnits, n: int, max_pairs: int) -> list[Item]:
    """Up to `n` of the chunk's qa pairs not taken yet whose sentences no other item used."""
    items = []
    for index, pair in enumerate(chunk.qa_pairs(max_pairs)):
        if len(items) >= n:
            break
        evidence = normalise(pair.evidence)
        covered = [unit for unit in chunk.sentences if normalise(unit.evidence) in evidence]
        if index in chunk._qa_taken or any(not chunk.used.isdisjoint(unit.covers) for unit in covered):
            continue
        chunk._qa_taken.add(index)
        for unit in covered:
            chunk.spend(unit)
        items.append(Item(QA, pair.question, pair.answer, pair.question_type, pair.evidence,
                          difficulty_proxy(QA, pair.answer, chunk.text), source_chunk_ids=(chunk.chunk_id,)))
    return items


def reasoning_items(chunk: ChunkUnits, n: int) -> list[Item]:
    """Up to `n` two-step items: a sentence with a question, and the sentence before it
    when the two share a content term (the step that leads to it)."""
    items = []
    before = {unit.position + len(unit.covers): unit for unit in chunk.sentences}
    for b, kind, question in chunk.free():
        if len(items) >= n:
            break
        a = before.get(b.position)
        if a is None or not chunk.used.isdisjoint(a.covers + b.covers):
            continue
        if not content_stems(a.evidence) & content_stems(b.evidence):
            continue
        chunk.spend(a)
        chunk.spend(b)
        reasoning = f"Step 1: {a.evidence.strip()}\nStep 2: {b.evidence.strip()}"
        items.append(Item(REASONING, question, b.evidence.strip(), _REASONING_TYPES.get(kind, "inferential"),
                          f"{a.evidence} {b.evidence}", difficulty_proxy(REASONING, b.evidence, chunk.text, steps=2),
                          reasoning=reasoning, source_chunk_ids=(chunk.chunk_id,),
                          quotes=(a.evidence.strip(), b.evidence.strip())))
    return items


def multi_hop_items(anchor: ChunkUnits, partner: ChunkUnits, link_terms: list[str], n: int) -> list[Item]:
    """Up to `n` items joining a sentence of each chunk that both name a linking term."""
    items = []
    links = set(link_terms)
    for a, kind_a, question_a in anchor.free():
        if len(items) >= n:
            break
        shared_a = content_stems(a.evidence) & links
        if not shared_a:
            continue
        for b, kind_b, question_b in partner.free():
            if content_stems(b.evidence) & shared_a and normalise(question_a) != normalise(question_b):
                anchor.spend(a)
                partner.spend(b)
                answer = f"{a.evidence.strip()} {b.evidence.strip()}"
                items.append(Item(
                    MULTI_HOP, _joined(question_a, question_b), answer,
                    "comparison" if kind_a == kind_b else "bridge", answer,
                    difficulty_proxy(MULTI_HOP, answer, anchor.text + "\n" + partner.text, hops=2),
                    source_chunk_ids=(anchor.chunk_id, partner.chunk_id),
                    quotes=(a.evidence.strip(), b.evidence.strip())))
                break
    return items


def conversation_items(chunk: ChunkUnits, n: int) -> list[Item]:
    """Up to `n` conversations of consecutive sentences, each later question naming a
    term of an earlier turn; fewer than MIN_TURNS linked sentences give none."""
    items = []
    free = chunk.free()
    start = 0
    while len(items) < n and start < len(free):
        turns: list[tuple[Unit, str]] = [(free[start][0], free[start][2])]
        seen = content_stems(free[start][0].evidence) | content_stems(free[start][2])
        for unit, _, question in free[start + 1:]:
            if len(turns) >= MAX_TURNS:
                break
            follow_up = _follow_up(question)
            if content_stems(follow_up) & seen:
                turns.append((unit, follow_up))
                seen |= content_stems(unit.evidence) | content_stems(follow_up)
        if len(turns) < MIN_TURNS:
            start += 1
            continue
        for unit, _ in turns:
            chunk.spend(unit)
        pairs = tuple((question, unit.evidence.strip()) for unit, question in turns)
        if len({normalise(q) for q, _ in pairs}) < len(pairs):  # a repeated question is no conversation
            start += 1
            continue
        answer_text = " ".join(a for _, a in pairs)
        items.append(Item(CONVERSATION, pairs[0][0], pairs[0][1], "follow_up", answer_text,
                          difficulty_proxy(CONVERSATION, answer_text, chunk.text, steps=len(pairs) - 1),
                          source_chunk_ids=(chunk.chunk_id,), turns=pairs, quotes=tuple(a for _, a in pairs)))
        free = chunk.free()
        start = 0
    return items


# (direct question, indirect question, what in the document would answer it).
_ABSENT = (
    ("When was {x} first introduced?", "when {x} was first introduced",
     re.compile(r"\b(1[5-9]\d\d|20\d\d)\b|\b(introduc|launch|releas|found|establish|began|start|origin)", re.I)),
    ("Who created {x}?", "who created {x}",
     re.compile(r"\b(creat|found|invent|develop|design|author|wrote|written|built|made by|discover)", re.I)),
    ("How much does {x} cost?", "how much {x} costs",
     re.compile(r"[$€£¥]|\b(cost|price|pric|fee|free|cheap|expens|dollar|euro|pay)", re.I)),
    ("Where is {x} based?", "where {x} is based",
     re.compile(r"\b(locat|based|headquart|city|countr|situated|region|found in|native|live)", re.I)),
    ("How many people work on {x}?", "how many people work on {x}",
     re.compile(r"\b(employ|staff|workforce|team of|people work|workers|contributors)", re.I)),
    ("What is the official website of {x}?", "what the official website of {x} is",
     re.compile(r"https?://|www\.|\bwebsite|\bweb site|\burl\b", re.I)),
    ("Under which licence is {x} published?", "under which licence {x} is published",
     re.compile(r"\blicen[cs]|copyright|open[- ]source|public domain|creative commons", re.I)),
    ("How much does {x} weigh?", "how much {x} weighs",
     re.compile(r"\b(weigh|kg|kilogram|gram|pound|lbs?|ounce|tonne|heavy|mass)\b", re.I)),
)
_LEAD_IN = "What they say about {x}: "


def unanswerable_items(chunk: ChunkUnits, n: int, document_text: str = "") -> list[Item]:
    """Up to `n` questions about attributes of a named subject that neither the chunk nor
    the rest of its document (`document_text`) states; the answer says so, then quotes a
    sentence of the chunk about the subject."""
    names = [m for m in re.findall(r"(?<=[a-z,;] )[A-Z][A-Za-z0-9-]{2,}|\b[A-Z]{2,}[a-z]?\b", chunk.text)]
    subjects = list(dict.fromkeys(names))
    items = []
    for subject in subjects:
        term = content_stems(subject)
        about = next((u for u, _, _ in chunk.units if term & content_stems(u.evidence)
                      and subject in u.evidence), None)
        if about is None:
            continue
        # Each subject starts at another attribute, so a chunk's questions differ.
        start = zlib.crc32(subject.encode()) % len(_ABSENT)
        for direct, indirect, present in _ABSENT[start:] + _ABSENT[:start]:
            if len(items) >= n:
                return items
            if present.search(chunk.text) or present.search(document_text):
                continue
            question = direct.format(x=subject)
            answer = (f"The documents do not say {indirect.format(x=subject)}. "
                      f"{_LEAD_IN.format(x=subject)}{about.evidence.strip()}")
            items.append(Item(UNANSWERABLE, question, answer, "missing_fact", about.evidence,
                              difficulty_proxy(UNANSWERABLE, answer, chunk.text),
                              source_chunk_ids=(chunk.chunk_id,), quotes=(about.evidence.strip(),)))
            break  # one question per subject: the next attribute goes to the next subject
    return items



# -- Closed-book stand-ins (preference pairs without a model) -----------------------------

MODEL_FREE_CLOSED_BOOK_VERSION = "model-free-closed-book-v1"


def closed_book_stand_ins(questions: dict[str, tuple[str, str]], bodies: dict[str, str]) -> dict[str, str]:
    """{item_id: answer} for {item_id: (question, its chunk_id)}, without a model.

    There is no model to ask the question without its source, so no memory to answer
    from. What stands in for one is the answer a wrong passage gives: the sentence of
    ANOTHER chunk of the same document (`bodies`: chunk_id -> body, without the overlap
    of the chunk before) sharing the most content words with the question, verbatim. It
    is on the subject and reads well, and it is not the question's own sentence: the
    curate step filters it against the question's chunk like any answer, and keeps it as
    `rejected` only when a rule fails it. An item whose document has no other chunk, or
    none sharing a content word with the question, gets none."""
    sentences = {chunk_id: [unit.evidence for unit in evidence_units(body) if not unit.is_list]
                 for chunk_id, body in bodies.items()}
    stems = {chunk_id: [content_stems(sentence) for sentence in found] for chunk_id, found in sentences.items()}
    answers = {}
    for item_id, (question, own_chunk) in questions.items():
        asked = content_stems(question)
        best, best_shared = None, 0
        for chunk_id in sorted(sentences):  # sorted: the same answer whatever the dict order
            if chunk_id == own_chunk:
                continue
            for sentence, words in zip(sentences[chunk_id], stems[chunk_id]):
                shared = len(asked & words)
                if shared > best_shared:
                    best, best_shared = sentence, shared
        if best is not None:
            answers[item_id] = " ".join(best.split())
    return answers
