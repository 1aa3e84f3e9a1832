"""Training formats: a kept question-answer pair as Alpaca, ShareGPT or chat messages.

Each has a chain-of-thought variant for pairs that carry reasoning: the reasoning is put
before the answer inside <think> tags, the convention of current reasoning models'
chat templates, so the plain variant stays exactly the answer.
"""

from __future__ import annotations

import hashlib
import json
import math

SHAREGPT_HUMAN = "human"
SHAREGPT_ASSISTANT = "gpt"
FORMATS = ("alpaca", "sharegpt", "messages")


def with_reasoning(answer: str, reasoning: str | None) -> str:
    """The answer, preceded by its reasoning in <think> tags when there is any."""
    answer = answer.strip()
    if not reasoning or not reasoning.strip():
        return answer
    return f"<think>\n{reasoning.strip()}\n</think>\n\n{answer}"


def to_alpaca(question: str, answer: str, reasoning: str | None = None) -> dict[str, str]:
    """`{instruction, input, output}`; the question stands alone, so `input` is empty."""
    return {"instruction": question.strip(), "input": "", "output": with_reasoning(answer, reasoning)}


def to_sharegpt(
    question: str, answer: str, system: str | None = None, reasoning: str | None = None
) -> list[dict[str, str]]:
    """`[{from, value}, ...]`: an optional system turn, then human, then gpt."""
    turns = [{"from": "system", "value": system}] if system else []
    turns += [
        {"from": SHAREGPT_HUMAN, "value": question.strip()},
        {"from": SHAREGPT_ASSISTANT, "value": with_reasoning(answer, reasoning)},
    ]
    return turns


def to_messages(
    question: str, answer: str, system: str | None = None, reasoning: str | None = None
) -> list[dict[str, str]]:
    """`[{role, content}, ...]`: the conversational format TRL's SFTTrainer takes as is."""
    turns = [{"role": "system", "content": system}] if system else []
    turns += [
        {"role": "user", "content": question.strip()},
        {"role": "assistant", "content": with_reasoning(answer, reasoning)},
    ]
    return turns


def sharegpt_roles(conversations_json: str) -> str:
    """The role sequence of a stored conversation, e.g. "human,gpt" (for the format check)."""
    try:
        turns = json.loads(conversations_json)
        return ",".join(str(turn.get("from")) for turn in turns)
    except (TypeError, ValueError, AttributeError):
        return "<unparseable>"


def split_documents(document_ids: list[str], validation_ratio: float, seed: int) -> dict[str, str]:
    """Assign whole documents to "train" or "validation", deterministically.

    Documents are ordered by a seeded hash and the first ceil(ratio x n) go to
    validation (at least one when there are two or more documents and the ratio is
    above zero), so no document is ever in both splits.
    """
    ordered = sorted(
        set(document_ids), key=lambda d: hashlib.sha256(f"{seed}:{d}".encode()).hexdigest()
    )
    n_validation = math.ceil(validation_ratio * len(ordered)) if validation_ratio > 0 else 0
    if len(ordered) >= 2:
        n_validation = min(max(n_validation, 1 if validation_ratio > 0 else 0), len(ordered) - 1)
    else:
        n_validation = 0
    return {d: ("validation" if i < n_validation else "train") for i, d in enumerate(ordered)}
