"""The offline question generator: grounded question-answer pairs without a model.

It is the embedded default when no LLM server is configured. Every answer is one of
the chunk's own sentences, verbatim (plus the next sentence when that one starts
with "It", "This", ... and only makes sense with it), so it is grounded by
construction (sentences.py picks them); the question is built from the same sentence
by fixed rules (questions.py). This module picks a mix of question types per chunk.

Everything is deterministic: no randomness; template variants are picked by a CRC of
the sentence. Bump MODEL_FREE_TEMPLATE_VERSION whenever a rule or template changes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from synth_assets.generation.questions import chunk_context, questions_for
from synth_assets.generation.sentences import Unit, evidence_units, normalise

MODEL_FREE_TEMPLATE_VERSION = "model-free-v1"
QUESTION_TYPES = ("what", "how", "why", "when", "who", "which", "explain")
_PREFERENCE = ("why", "how", "when", "who", "which", "what", "explain")


@dataclass
class QAPair:
    question: str
    answer: str
    question_type: str  # one of QUESTION_TYPES
    evidence: str  # the chunk sentence(s) the answer is; here the answer itself


def generate_pairs(
    text: str, headings: list[str], *, max_pairs: int = 5, title: str | None = None
) -> list[QAPair]:
    """Up to `max_pairs` grounded question-answer pairs from a chunk's own sentences.

    Each answer is a verbatim slice of `text` (after normalising whitespace and case)
    and no two pairs share an evidence sentence. Question types are taken in turns so a
    chunk gets a mix, with "explain" last in every turn. Headings and the title only give
    context to questions; they are never answers. Pairs come in the order of the text.
    """
    if max_pairs <= 0 or not text or not text.strip():
        return []
    ctx = chunk_context(text, headings, title)
    normalised_text = normalise(text)
    units = [u for u in evidence_units(text) if normalise(u.evidence) in normalised_text]
    by_type: dict[str, list[tuple[Unit, str]]] = {kind: [] for kind in QUESTION_TYPES}
    for unit in units:
        for kind, question in questions_for(unit, ctx):
            by_type[kind].append((unit, question))

    # Take the types in turns, rarest type first, and for each type the sentence with
    # the fewest other options: a sentence that fits "what" and "why" is not spent on
    # "what" when it is the chunk's only "why".
    options = Counter(unit.position for kind in _PREFERENCE[:-1] for unit, _ in by_type[kind])
    chosen: list[tuple[Unit, str, str]] = []
    used: set[int] = set()
    questions: set[str] = set()

    def available(kind: str) -> list[tuple[Unit, str]]:
        return [
            (unit, question)
            for unit, question in by_type[kind]
            if used.isdisjoint(unit.covers) and normalise(question) not in questions
        ]

    while len(chosen) < max_pairs:
        # ties go to the more specific types; "what ... like?" is the weakest rule
        kinds = sorted(_PREFERENCE[:-1], key=lambda k: len(available(k))) + ["explain"]
        picked = False
        for kind in kinds:
            candidates = available(kind)
            if len(chosen) >= max_pairs or not candidates:
                continue
            unit, question = min(candidates, key=lambda c: (options[c[0].position], c[0].position))
            chosen.append((unit, kind, question))
            used.update(unit.covers)
            questions.add(normalise(question))
            picked = True
        if not picked:
            break
    chosen.sort(key=lambda item: item[0].position)
    return [
        QAPair(question=question, answer=unit.evidence, question_type=kind, evidence=unit.evidence)
        for unit, kind, question in chosen
    ]
