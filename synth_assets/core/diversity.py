"""How varied the question types are, per document and over the corpus.

A dataset where nearly every question is "explain ..." teaches one kind of answer; the
mix is shown as metadata and a check warns when one type dominates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

UNKNOWN_TYPE = "unknown"  # a pair without a question type (e.g. from an older run)
DEFAULT_DOMINANCE_LIMIT = 0.6


def question_type_mix(types: Iterable[str | None]) -> dict[str, float]:
    """Share of each question type, largest first (ties by name); {} for no pairs.

    Missing or blank types count as "unknown" rather than being dropped, so the shares
    always describe every pair.
    """
    counts = Counter(t.strip().lower() if isinstance(t, str) and t.strip() else UNKNOWN_TYPE for t in types)
    total = sum(counts.values())
    if not total:
        return {}
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {name: count / total for name, count in ordered}


def dominant_type(
    mix: dict[str, float], limit: float = DEFAULT_DOMINANCE_LIMIT
) -> tuple[str, float] | None:
    """The type whose share is above `limit` (at most one can be, for limit >= 0.5), or None."""
    if not mix:
        return None
    name, share = max(mix.items(), key=lambda item: (item[1], item[0]))
    return (name, share) if share > limit else None
