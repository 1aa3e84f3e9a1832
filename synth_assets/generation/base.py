"""What every generation backend takes and gives back.

The assets only ever see these types, so a backend (model-free, vLLM, an
OpenAI-compatible server) can be swapped by configuration without touching them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class GenerationRequest:
    """One chunk to write question-answer pairs for."""

    document_id: str
    chunk_id: str
    text: str
    headings: tuple[str, ...] = ()
    title: str | None = None


@dataclass(frozen=True)
class GeneratedPair:
    chunk_id: str
    question: str
    answer: str
    question_type: str
    evidence: str | None = None
    # The model's reasoning, when it gives one: exported as chain-of-thought variants.
    reasoning: str | None = None


@dataclass(frozen=True)
class GenerationFailure:
    """A chunk that produced no usable reply after every attempt: kept, never dropped."""

    chunk_id: str
    attempts: int
    error: str


@dataclass
class GenerationOutcome:
    pairs: list[GeneratedPair] = field(default_factory=list)
    failures: list[GenerationFailure] = field(default_factory=list)
    # requests, prompt_tokens, completion_tokens, retries, cache_hits, seconds, ...
    stats: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class JudgeRequest:
    """One question-answer pair for a judge to score, with the chunk it came from."""

    pair_id: str
    question: str
    answer: str
    chunk_text: str


@dataclass
class JudgeOutcome:
    # pair_id -> (score 1-10, the judge's one-line reason)
    scores: dict[str, tuple[int, str]] = field(default_factory=dict)
    # pair_id -> why it has no score (after every attempt); such pairs are not judged
    failures: dict[str, str] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)


class GenerationBackend(Protocol):
    """A generator of grounded question-answer pairs.

    `generate` receives every chunk of a run at once so a GPU backend can batch them;
    `judge` scores pairs 1-10 with their chunk shown (the model as an LLM judge, or the
    heuristic judge of the model-free backend).
    """

    generator: str  # which backend wrote the rows, recorded on every row
    model: str | None  # the model, if any
    prompt_version: str  # template or prompt version, recorded on every row

    def generate(self, requests: list[GenerationRequest]) -> GenerationOutcome: ...

    def judge(self, requests: list[JudgeRequest]) -> JudgeOutcome: ...
