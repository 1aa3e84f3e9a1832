"""What every generation backend takes and gives back.

The assets only ever see these types, so a backend (model-free, vLLM, an
OpenAI-compatible server) can be swapped by configuration without touching them.
"""

from __future__ import annotations

import json
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
    # The kind of item asked for (core/tasks.py) and how many; None: the backend's
    # pairs_per_chunk. A multi_hop request carries its other chunks as (chunk_id, text),
    # with the terms that linked them.
    task: str = "qa"
    n_items: int | None = None
    partners: tuple[tuple[str, str], ...] = ()
    link_terms: tuple[str, ...] = ()

    @property
    def request_id(self) -> str:
        """Unique within a run: a chunk may be asked for several tasks (qa keeps the chunk id)."""
        return self.chunk_id if self.task == "qa" else f"{self.chunk_id}@{self.task}"


@dataclass(frozen=True)
class GeneratedPair:
    chunk_id: str
    question: str
    answer: str
    question_type: str
    evidence: str | None = None
    # The model's reasoning, when it gives one: exported as chain-of-thought variants.
    reasoning: str | None = None
    task: str = "qa"
    # 1-5 as the generator rates it (None: it gave none; curation adds the measured proxy).
    difficulty: int | None = None
    # Every chunk the item draws on (multi_hop: two or three); empty means (chunk_id,).
    source_chunk_ids: tuple[str, ...] = ()
    # A conversation's turns as (user, assistant); question and answer are its first turn.
    turns: tuple[tuple[str, str], ...] = ()
    # The passages of the source the item rests on, as the generator quoted them
    # (core/evidence.py resolves them to spans); empty: the evidence text, if any.
    quotes: tuple[str, ...] = ()


def pair_record(pair: GeneratedPair) -> dict:
    """The stored columns of a generated item (source_chunk_ids and turns as JSON text)."""
    return {
        "question": pair.question,
        "answer": pair.answer,
        "question_type": pair.question_type,
        "evidence": pair.evidence,
        "reasoning": pair.reasoning,
        "task": pair.task,
        "difficulty": pair.difficulty,
        "source_chunk_ids": json.dumps(list(pair.source_chunk_ids or (pair.chunk_id,))),
        "turns": json.dumps([list(turn) for turn in pair.turns], ensure_ascii=False) if pair.turns else None,
        "quotes": json.dumps(list(pair.quotes) or ([pair.evidence] if pair.evidence else []), ensure_ascii=False),
    }


@dataclass(frozen=True)
class GenerationFailure:
    """A chunk that produced no usable reply after every attempt: kept, never dropped."""

    chunk_id: str
    attempts: int
    error: str
    task: str = "qa"


@dataclass
class GenerationOutcome:
    pairs: list[GeneratedPair] = field(default_factory=list)
    failures: list[GenerationFailure] = field(default_factory=list)
    # requests, prompt_tokens, completion_tokens, retries, cache_hits, seconds, ...
    stats: dict[str, float] = field(default_factory=dict)
    # request_id -> (replies, prompt tokens, completion tokens) of what was sent this time
    # (a cached reply costs nothing); empty for a backend without a model
    usage: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    # base URL of the server that answered -> (replies, prompt tokens, completion tokens)
    usage_by_server: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    # request_id -> replies whose tokens `usage_tokenizer` counted (the server sent no usage)
    usage_counted: dict[str, int] = field(default_factory=dict)
    usage_tokenizer: str | None = None
    # request_id -> (1, prompt tokens, completion tokens) of a reply taken from the cache,
    # as recorded when it was asked: what the item cost, though this run paid nothing
    usage_cached: dict[str, tuple[int, int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class JudgeRequest:
    """One question-answer pair for a judge to score, with the chunk it came from."""

    pair_id: str
    question: str
    answer: str
    chunk_text: str
    # The item's task picks the judge's rubric; a multi-hop item's chunks are shown apart.
    task: str = "qa"
    source_texts: tuple[str, ...] = ()


@dataclass
class JudgeOutcome:
    # pair_id -> (score 1-10, the judge's one-line reason)
    scores: dict[str, tuple[int, str]] = field(default_factory=dict)
    # pair_id -> why it has no score (after every attempt); such pairs are not judged
    failures: dict[str, str] = field(default_factory=dict)
    # pair_id -> the claims of its answer the judge found unsupported by the source (LLM judge)
    unsupported: dict[str, list[str]] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)
    # As GenerationOutcome's, by pair_id.
    usage: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    usage_by_server: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    usage_counted: dict[str, int] = field(default_factory=dict)
    usage_tokenizer: str | None = None
    # request_id -> (1, prompt tokens, completion tokens) of a reply taken from the cache,
    # as recorded when it was asked: what the item cost, though this run paid nothing
    usage_cached: dict[str, tuple[int, int, int]] = field(default_factory=dict)


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
