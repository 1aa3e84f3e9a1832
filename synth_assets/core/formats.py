"""Training formats: a kept question-answer pair as Alpaca, ShareGPT or chat messages.

Each has a chain-of-thought variant for pairs that carry reasoning: the reasoning is put
before the answer inside <think> tags, the convention of current reasoning models'
chat templates, so the plain variant stays exactly the answer.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter

from synth_assets.core.tasks import MAX_TURNS

SHAREGPT_HUMAN = "human"
SHAREGPT_ASSISTANT = "gpt"
# The turns an exported row has: one to MAX_TURNS questions each with its answer (a
# conversation, core/tasks.py), after an optional system turn (the format check holds
# stored rows to these).
# Human-labelled rows (core/human_data.py) are one question and its answer.
SHAREGPT_SINGLE_TURN_SEQUENCES = (f"{SHAREGPT_HUMAN},{SHAREGPT_ASSISTANT}",
                                  f"system,{SHAREGPT_HUMAN},{SHAREGPT_ASSISTANT}")
SHAREGPT_ROLE_SEQUENCES = tuple(
    prefix + ",".join([SHAREGPT_HUMAN, SHAREGPT_ASSISTANT] * turns)
    for prefix in ("", "system,") for turns in range(1, MAX_TURNS + 1))
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


def to_conversation(turns: list[tuple[str, str]], system: str | None = None, reasoning: str | None = None,
                    *, chat: bool, reasoning_field: bool = False) -> list[dict[str, str]]:
    """Every turn of an item, as ShareGPT (`chat=False`: from/value) or chat messages
    (role/content). Reasoning belongs to the last assistant turn (an item has one answer
    that it leads to): in <think> tags inside it, or, with `reasoning_field`, in the
    message's `reasoning_content` (the field TRL and vLLM read for reasoning models)."""
    role, text = ("role", "content") if chat else ("from", "value")
    user, assistant = ("user", "assistant") if chat else (SHAREGPT_HUMAN, SHAREGPT_ASSISTANT)
    messages = [{role: "system", text: system}] if system else []
    for index, (question, answer) in enumerate(turns):
        last = index == len(turns) - 1
        messages.append({role: user, text: question.strip()})
        if last and reasoning and reasoning.strip() and reasoning_field:
            messages.append({role: assistant, text: answer.strip(), "reasoning_content": reasoning.strip()})
        else:
            messages.append({role: assistant, text: with_reasoning(answer, reasoning if last else None)})
    return messages


def sharegpt_roles(conversations_json: str) -> str:
    """The role sequence of a stored conversation, e.g. "human,gpt" (for the format check)."""
    try:
        turns = json.loads(conversations_json)
        return ",".join(str(turn.get("from")) for turn in turns)
    except (TypeError, ValueError, AttributeError):
        return "<unparseable>"


# A validation share further than this from the asked ratio is called out in the card and summary.
SPLIT_TOLERANCE = 0.05


def split_documents(document_ids: list[str], validation_ratio: float, seed: int) -> dict[str, str]:
    """Assign whole documents to "train" or "validation", deterministically.

    `document_ids` holds a document once per row, so documents weigh by their rows.
    Documents are taken in the order of a seeded hash (split_order) and assigned by
    assign_splits, as one first batch; no document is ever in both.
    """
    rows = Counter(document_ids)
    return assign_splits([(d, rows[d]) for d in split_order(rows, seed)], validation_ratio)


def split_order(document_ids, seed: int) -> list[str]:
    """The documents in the order of a seeded hash: the order a batch is split and deduplicated in."""
    return sorted(document_ids, key=lambda d: hashlib.sha256(f"{seed}:{d}".encode()).hexdigest())


def assign_splits(documents: list[tuple[str, int]], validation_ratio: float, validation_rows: int = 0,
                  total_rows: int = 0, first_batch: bool = True) -> dict[str, str]:
    """Each (document, rows), in the order given, goes to validation when that brings the
    validation share of all rows so far (`validation_rows` of `total_rows` before these)
    nearer `validation_ratio`. Decided in order, so a document added later never moves
    one already placed. In a first batch of two or more documents with a ratio above
    zero, at least one is in each split."""
    splits: dict[str, str] = {}
    for document, n in documents:
        total_rows += n
        target = validation_ratio * total_rows
        if validation_ratio > 0 and abs(validation_rows + n - target) < abs(validation_rows - target):
            splits[document] = "validation"
            validation_rows += n
        else:
            splits[document] = "train"
    if first_batch and validation_ratio > 0 and len(splits) >= 2:
        if "validation" not in splits.values():  # every document alone overshoots: the smallest one
            splits[min(documents, key=lambda d: d[1])[0]] = "validation"
        if "train" not in splits.values():
            splits[documents[-1][0]] = "train"
    return splits


def split_note(document_ids: list[str], splits: dict[str, str], validation_ratio: float) -> str:
    """A sentence when whole documents cannot bring the validation share of rows near the
    asked ratio (too few documents, or one large one); empty when it is near."""
    if not document_ids:
        return ""
    share = sum(splits.get(d) == "validation" for d in document_ids) / len(document_ids)
    if abs(share - validation_ratio) <= SPLIT_TOLERANCE:
        return ""
    return (f"Too few documents to split near the asked ratio: validation holds {share:.0%} of the rows "
            f"for a ratio of {validation_ratio:.0%} ({len(set(document_ids))} documents, split whole).")
