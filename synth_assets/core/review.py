"""Experts in the loop: which pairs a domain expert reviews, and what their verdicts say.

- `select_review_sample` picks a document's review sample from its kept and rejected
  pairs: the uncertain ones first (a judge score at the threshold, grounding that
  passed narrowly, a question type the document has few of, a pair only one rule
  rejected), then a random share, so precision and recall measured on the sample are
  not only about hard cases. The random draw hashes each pair id with the seed: an
  unchanged document gets the same sample on every run.
- `latest_verdicts`: review_verdicts is append-only; the latest verdict per pair counts.
- `apply_reviews`: reviewed edits replace the generated text, rejected pairs leave.
- `rule_precision_recall`: how often each filter rule and the judge agree with the
  experts on the reviewed pairs.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence

import pandas as pd

# A judge score this close to the minimum (either side) counts as uncertain.
JUDGE_MARGIN = 1
# Grounding this little above the minimum counts as passed narrowly.
GROUNDING_MARGIN = 0.1
# A question type with at most this share of the document's pairs is a rare one.
RARE_TYPE_SHARE = 0.2

# Weights that order the uncertain pairs: the judge's own doubt first, then a rejection
# that hangs on one rule, then narrow grounding, then a rare question type. A pair with
# several of these adds them up.
NEAR_JUDGE = "judge score near the threshold"
SINGLE_RULE = "rejected by one rule only"
NARROW_GROUNDING = "grounding passed narrowly"
RARE_TYPE = "rare question type"
RANDOM = "drawn at random"
_WEIGHTS = {NEAR_JUDGE: 4.0, SINGLE_RULE: 3.0, NARROW_GROUNDING: 2.0, RARE_TYPE: 1.0}
RANDOM_WHY = "drawn at random (keeps the precision and recall estimates honest)"

VERDICTS = ("accept", "edit", "reject")
JUDGE_RULE = "judge"
ANY_RULE = "any rule (rejected at all)"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _reasons(pair: dict) -> list[str]:
    value = pair.get("reject_reasons")
    return [] if value is None else list(value)


def _draw(seed: int, pair_id: str) -> str:
    """A pair's place in the random order: the same for the same seed and pair id,
    whatever else the document holds."""
    return hashlib.sha256(f"{seed}:{pair_id}".encode()).hexdigest()


def uncertainty(pair: dict, type_counts: Counter, total: int, *, min_judge_score: int,
                min_grounding: float) -> tuple[float, list[tuple[str, str]]]:
    """How uncertain a pair is (0: not at all) and why: (kind, the reviewer's words)."""
    priority, why = 0.0, []
    score = pair.get("judge_score")
    if not _missing(score) and abs(int(score) - min_judge_score) <= JUDGE_MARGIN:
        side = "just below" if score < min_judge_score else "at or just above"
        why.append((NEAR_JUDGE, f"judge score {int(score)}, {side} the minimum of {min_judge_score}"))
        priority += _WEIGHTS[NEAR_JUDGE]
    reasons = _reasons(pair)
    if pair["status"] == "rejected" and len(reasons) == 1:
        why.append((SINGLE_RULE, f"rejected by one rule only ({reasons[0]})"))
        priority += _WEIGHTS[SINGLE_RULE]
    grounding = pair.get("grounding")
    if not _missing(grounding) and min_grounding <= grounding < min_grounding + GROUNDING_MARGIN:
        why.append((NARROW_GROUNDING, f"grounding {grounding:.2f}, just above the minimum of {min_grounding}"))
        # Closer to the line is more uncertain.
        priority += _WEIGHTS[NARROW_GROUNDING] * (1 - (grounding - min_grounding) / GROUNDING_MARGIN / 2)
    kind = pair.get("question_type")
    if kind and len(type_counts) > 1 and type_counts[kind] <= RARE_TYPE_SHARE * total:
        why.append((RARE_TYPE, f"a rare question type here ('{kind}': {type_counts[kind]} of {total} pairs)"))
        priority += _WEIGHTS[RARE_TYPE]
    return priority, why


def select_review_sample(pairs: Sequence[dict], *, size: int, random_share: float, seed: int,
                         min_judge_score: int, min_grounding: float) -> list[dict]:
    """The review sample of one document, most uncertain first.

    `pairs`: the document's kept and rejected pairs, each a dict with pair_id, status
    ('kept' or 'rejected'), reject_reasons, judge_score, grounding and question_type.
    Returns at most `size` of them, each with `why_sampled` (the reviewer's words),
    `sampled_for` (the kinds of reason, for counting) and `priority` added:
    `size - round(size * random_share)` uncertain pairs (highest priority first), the
    rest drawn at random from the others (priority 0). When there are fewer uncertain
    pairs than places for them, random ones fill the sample.
    """
    if size < 0 or not 0 <= random_share <= 1:
        raise ValueError(f"review sample: size must be >= 0 and random_share in [0, 1], got {size}, {random_share}")
    type_counts = Counter(p.get("question_type") for p in pairs if p.get("question_type"))
    scored = []
    for pair in pairs:
        priority, why = uncertainty(pair, type_counts, len(pairs), min_judge_score=min_judge_score,
                                    min_grounding=min_grounding)
        scored.append((priority, why, pair))
    uncertain = sorted((s for s in scored if s[0] > 0), key=lambda s: (-s[0], _draw(seed, s[2]["pair_id"])))
    places = size - round(size * random_share)
    chosen = [{**pair, "why_sampled": "; ".join(text for _, text in why), "sampled_for": [kind for kind, _ in why],
               "priority": round(priority, 3)} for priority, why, pair in uncertain[:places]]
    taken = {p["pair_id"] for p in chosen}
    rest = sorted((p for _, _, p in scored if p["pair_id"] not in taken), key=lambda p: _draw(seed, p["pair_id"]))
    chosen += [{**pair, "why_sampled": RANDOM_WHY, "sampled_for": [RANDOM], "priority": 0.0}
               for pair in rest[:size - len(chosen)]]
    return chosen


def latest_verdicts(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The latest verdict per pair (review_verdicts is append-only: a later verdict on a
    pair replaces an earlier one)."""
    ordered = verdicts.reset_index(drop=True).reset_index(names="_order")
    latest = ordered.sort_values(["reviewed_at", "_order"], kind="stable").drop_duplicates("pair_id", keep="last")
    return latest.drop(columns="_order").sort_values("pair_id").reset_index(drop=True)


def reviewed_pairs(sample: pd.DataFrame, verdicts: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """(reviewed pairs, verdicts left aside): each sampled pair with its latest verdict,
    and question/answer as the expert left them (the edited text for an edit). A verdict
    on a pair no longer in the sample, or whose text has changed since (the document was
    processed again), is about something else now and is left aside."""
    latest = latest_verdicts(verdicts)
    merged = latest.merge(sample[["pair_id", "question", "answer", "status", "reject_reasons", "judge_score"]],
                          on="pair_id", how="inner", suffixes=("", "_sampled"))
    current = (merged["original_question"] == merged["question"]) & (merged["original_answer"] == merged["answer"])
    merged = merged[current].copy()
    edited = merged["verdict"] == "edit"
    merged.loc[edited, "question"] = merged.loc[edited, "edited_question"]
    merged.loc[edited, "answer"] = merged.loc[edited, "edited_answer"]
    columns = ["pair_id", "document_id", "status", "reject_reasons", "judge_score", "verdict", "reason", "reviewer",
               "reviewed_at", "question", "answer", "original_question", "original_answer"]
    return merged[columns].reset_index(drop=True), len(latest) - len(merged)


def apply_reviews(pairs: pd.DataFrame, reviewed: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Training pairs (pair_id, question, answer, reasoning?, ...) with the experts'
    verdicts applied: an edit replaces the question and answer (and drops the pair's
    reasoning, which was written for the old answer), a reject drops the pair, an accept
    keeps it. A verdict applies only while the pair's text is what the expert saw.
    Returns the pairs and how many verdicts of each kind were applied."""
    seen = pairs[["pair_id", "question", "answer"]].merge(
        reviewed[["pair_id", "verdict", "original_question", "original_answer", "question", "answer"]],
        on="pair_id", suffixes=("", "_reviewed"))
    seen = seen[(seen["question"] == seen["original_question"]) & (seen["answer"] == seen["original_answer"])]
    verdict = dict(zip(seen["pair_id"], seen["verdict"]))
    edits = seen[seen["verdict"] == "edit"].set_index("pair_id")
    result = pairs[pairs["pair_id"].map(verdict) != "reject"].copy()
    edited = result["pair_id"].isin(edits.index)
    result.loc[edited, "question"] = result.loc[edited, "pair_id"].map(edits["question_reviewed"])
    result.loc[edited, "answer"] = result.loc[edited, "pair_id"].map(edits["answer_reviewed"])
    if "reasoning" in result:
        result.loc[edited, "reasoning"] = None
    counts = Counter(verdict.values())
    return result.reset_index(drop=True), {v: counts.get(v, 0) for v in VERDICTS}


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def rule_precision_recall(reviewed: Iterable[dict], min_judge_score: int) -> list[dict]:
    """Per filter rule (each reject reason), for the judge (score below
    `min_judge_score`) and for the filters as a whole, measured on reviewed pairs
    (dicts with status, reject_reasons, judge_score, verdict). The expert calls a pair
    bad when the verdict is reject; a rule fires on a pair it rejected.
    precision = fired and bad / fired, recall = fired and bad / bad; None when the
    denominator is 0. Rules that fired on no reviewed pair are not listed."""
    rows = list(reviewed)
    bad = [r["verdict"] == "reject" for r in rows]
    fired_by: dict[str, list[bool]] = {}
    for reason in sorted({reason for r in rows for reason in _reasons(r)}):
        fired_by[reason] = [reason in _reasons(r) for r in rows]
    if any(not _missing(r.get("judge_score")) for r in rows):
        fired_by[f"{JUDGE_RULE} (score < {min_judge_score})"] = [
            not _missing(r.get("judge_score")) and r["judge_score"] < min_judge_score for r in rows]
    fired_by[ANY_RULE] = [r["status"] == "rejected" for r in rows]
    table = []
    for rule, fired in fired_by.items():
        hits = sum(f and b for f, b in zip(fired, bad))
        table.append({"rule": rule, "reviewed": len(rows), "fired": sum(fired), "bad": sum(bad),
                      "fired_and_bad": hits, "precision": _ratio(hits, sum(fired)), "recall": _ratio(hits, sum(bad))})
    return table


def precision_recall_markdown(table: list[dict]) -> str:
    """The precision/recall table for the UI and the dataset card."""
    if not table or not table[0]["reviewed"]:
        return "no reviewed pairs yet"
    shown = pd.DataFrame(table).astype(object)
    return shown.where(shown.notna(), "n/a").to_markdown(index=False)


def review_summary(reviewed: pd.DataFrame, applied: dict[str, int], min_judge_score: int) -> dict:
    """What the dataset card and training_dataset's metadata say about the review: the
    verdicts over every reviewed pair, how many were applied to this dataset, and each
    rule's precision and recall."""
    counts = Counter(reviewed["verdict"])
    return {
        "reviewed": len(reviewed), "accepted": counts.get("accept", 0), "edited": counts.get("edit", 0),
        "rejected": counts.get("reject", 0), "applied": applied,
        "precision_recall": rule_precision_recall(reviewed.to_dict("records"), min_judge_score),
    }
