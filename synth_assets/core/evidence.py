"""Evidence a reader can check: quotes resolved to character spans, and claims checked
against them.

A generator gives, with every item, the passages of its source it used (`quotes`: the
model is asked for them; the model-free generator records the sentences it used).
`resolve_quotes` turns each quote into a span `{chunk_id, start, end}` of the stored
chunk text: found verbatim, or after normalising case and whitespace, or (for a model
that changed a word or two) by fuzzy alignment (rapidfuzz) with its score recorded. A
quote found in none of the item's chunks makes the item `citation_invalid`.

`unsupported_claims` splits what an item states (its answer; every reasoning step and
assistant turn) into claims (sentences, and clauses joined by ";") and returns those
whose content words are not, to `min_support`, in the text of the cited spans: one
invented sentence beside a true one is caught even when the answer as a whole is
mostly grounded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rapidfuzz import fuzz

from synth_assets.core.text import TOKEN, as_text, content_stem_list

CITATION_INVALID = "citation_invalid"
UNSUPPORTED_CLAIM = "unsupported_claim"
EVIDENCE_REASON_DESCRIPTIONS = {
    CITATION_INVALID: "A quote the generator gave as its evidence is not in the item's chunk(s), even "
    "after normalising case and spacing or allowing small differences, or the item cites nothing.",
    UNSUPPORTED_CLAIM: "A claim of the answer (a sentence or clause; every reasoning step and assistant "
    "turn too) is not supported by the passages the item cites.",
}
# A fuzzy match of at least this (0-100, rapidfuzz partial ratio) resolves a quote: 90
# lets a changed word or two through in a sentence-long quote and refuses paraphrase.
MIN_QUOTE_SCORE = 90.0
MIN_QUOTE_CHARS = 12  # a shorter quote is a phrase that could be found anywhere
# Sentence ends (a citation mark after the full stop, "worldwide.[11] It ...", too),
# clauses joined by ";", and lines.
_CLAIM_SPLIT = re.compile(r"(?:(?<=[.!?])|(?<=[.!?]\]))\s+(?=[\"'(\[]?[A-Z0-9])|(?<=[.!?])(?=\[\d)"
                          r"|(?<=\d\])\s+(?=[A-Z])|;\s+|\n+")
# A reasoning step's label ("Step 2:", "2.", "-"): not part of what it states.
STEP_LABEL = re.compile(r"^\s*(?:step\s*\d+\s*[:.)-]|\d+\s*[.)]|[-*•])\s*", re.IGNORECASE)


def _normalised_with_offsets(text: str) -> tuple[str, list[int]]:
    """`text` lowercased with every run of whitespace made one space, and for each of its
    characters the offset of the character it came from."""
    out, offsets, space = [], [], False
    for index, char in enumerate(text):
        if char.isspace():
            if not space and out:
                out.append(" ")
                offsets.append(index)
            space = True
            continue
        space = False
        out.append(char.lower())
        offsets.append(index)
    return "".join(out).rstrip(), offsets


def resolve_quote(quote: str, text: str) -> tuple[int, int, float] | None:
    """(start, end, score) of `quote` in `text`: 100 verbatim or normalised, else the
    fuzzy score; None below MIN_QUOTE_SCORE."""
    quote = " ".join(as_text(quote).split())
    if len(quote) < MIN_QUOTE_CHARS or not text:
        return None
    start = text.find(quote)
    if start >= 0:
        return start, start + len(quote), 100.0
    normal, offsets = _normalised_with_offsets(text)
    found = normal.find(quote.lower())
    if found >= 0:
        return offsets[found], offsets[found + len(quote) - 1] + 1, 100.0
    alignment = fuzz.partial_ratio_alignment(quote.lower(), normal, score_cutoff=MIN_QUOTE_SCORE)
    if alignment is None or alignment.dest_end <= alignment.dest_start:
        return None
    return offsets[alignment.dest_start], offsets[alignment.dest_end - 1] + 1, round(alignment.score, 1)


def resolve_quotes(quotes: Sequence[str], sources: Mapping[str, str]) -> tuple[list[dict], list[str]]:
    """Spans `{chunk_id, start, end, score}` for the quotes, each looked up in the item's
    chunks in order; and the quotes found in none."""
    spans, missing = [], []
    for quote in quotes:
        for chunk_id, text in sources.items():
            found = resolve_quote(quote, text)
            if found is not None:
                spans.append({"chunk_id": chunk_id, "start": found[0], "end": found[1], "score": found[2]})
                break
        else:
            missing.append(quote)
    return spans, missing


def spans_within(spans: Sequence[Mapping], sources: Mapping[str, str]) -> bool:
    """Every span lies inside a chunk of the item (an offset outside it is never exported)."""
    return all(span.get("chunk_id") in sources and isinstance(span.get("start"), int)
               and isinstance(span.get("end"), int) and 0 <= span["start"] < span["end"] <= len(sources[span["chunk_id"]])
               for span in spans)


def span_texts(spans: Sequence[Mapping], sources: Mapping[str, str]) -> list[str]:
    return [sources[s["chunk_id"]][s["start"]:s["end"]] for s in spans if s.get("chunk_id") in sources]


def claims(text: str) -> list[str]:
    """Sentences and ";"-joined clauses of a text, step labels ("Step 2:") removed."""
    parts = (STEP_LABEL.sub("", part).strip() for part in _CLAIM_SPLIT.split(as_text(text)))
    return [part for part in parts if TOKEN.search(part)]


def _content_set(text: str) -> set[str]:
    return set(content_stem_list(text))


def unsupported_claims(statements: Sequence[str], cited: Sequence[str], min_support: float) -> list[str]:
    """The claims of `statements` whose content words are not, to `min_support`, in the
    cited passages. A claim of fewer than two content words ("Yes.") says too little to
    check and passes."""
    support = set().union(*(_content_set(text) for text in cited)) if cited else set()
    out = []
    for statement in statements:
        for claim in claims(statement):
            words = _content_set(claim)
            if len(words) >= 2 and len(words & support) < min_support * len(words):
                out.append(claim)
    return out


def quotes_of(record: Mapping[str, Any]) -> list[str]:
    """An item's quotes: its stored JSON list, or (rows written before quotes were asked
    for) the evidence text the model-free generator recorded."""
    value = record.get("quotes")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if isinstance(value, (list, tuple)):
        return [q for q in value if isinstance(q, str) and q.strip()]
    evidence = record.get("evidence")
    return [evidence] if isinstance(evidence, str) and evidence.strip() else []


def highlight_parts(text: str, chunk_id: str | None, spans: Any) -> list[tuple[str, bool]]:
    """`text` cut into (part, cited) pieces by the spans (JSON text or a list) that fall in
    this chunk: what the review page marks."""
    if isinstance(spans, str):
        try:
            spans = json.loads(spans)
        except ValueError:
            spans = []
    ranges = sorted((s["start"], s["end"]) for s in spans or [] if isinstance(s, Mapping)
                    and s.get("chunk_id") == chunk_id and isinstance(s.get("start"), int)
                    and isinstance(s.get("end"), int) and 0 <= s["start"] < s["end"] <= len(text))
    parts, position = [], 0
    for start, end in ranges:
        start = max(start, position)
        if start >= end:
            continue
        if start > position:
            parts.append((text[position:start], False))
        parts.append((text[start:end], True))
        position = end
    if position < len(text) or not parts:
        parts.append((text[position:], False))
    return parts
