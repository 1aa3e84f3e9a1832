"""Evidence rules (issue 27) on a planted set: recall and precision of citation_invalid and
unsupported_claim, and the cost of the evidence rules on 100,000 items.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_evidence.py [--items 100000]

The planted set is made from the prose of examples/documents/wiki.md and wiki_duck.html
(paragraphs grouped into chunks of about 700 characters), one item of each kind per
sentence of eight words or more:
- good: an answer that is a sentence of the chunk (sometimes two), quoting them;
- reworded (good): the answer reworded a little (a word dropped, "is" -> "was"), the
  quote verbatim: must not be flagged;
- invented: a true sentence and an invented one, quoting the true one -> unsupported_claim;
- bad quote: the quote's words reordered (a model misremembering) -> citation_invalid;
- other chunk: an answer and quote from another chunk of the corpus -> citation_invalid.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synth_assets.core.evidence import CITATION_INVALID, UNSUPPORTED_CLAIM  # noqa: E402
from synth_assets.core.filters import filter_pairs  # noqa: E402

INVENTED = (
    "It was first recorded on the Moon by a team of astronomers in 1802.",
    "Its annual revenue exceeded four trillion dollars after the merger with Nintendo.",
    "Most specimens are kept in a vault beneath the Eiffel Tower in Lisbon.",
    "The species communicates exclusively through ultrasonic Morse code.",
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def corpus_chunks(limit: int | None = None) -> list[str]:
    """Prose paragraphs of the examples' wiki.md and wiki_duck.html (its <p> elements, tags
    and citation marks removed), grouped into chunks of about 700 characters."""
    text = (ROOT / "examples" / "documents" / "wiki.md").read_text()
    html = (ROOT / "examples" / "documents" / "wiki_duck.html").read_text(errors="replace")
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if not p.lstrip().startswith(("#", "|", "-", "*"))]
    paragraphs += [re.sub(r"<sup.*?</sup>|<[^>]+>|&#\d+;|&\w+;", "", p, flags=re.S)
                   for p in re.findall(r"<p>(.*?)</p>", html, re.S)]
    paragraphs = [" ".join(p.split()) for p in paragraphs if len(p.split()) >= 25]
    chunks, current = [], ""
    for paragraph in paragraphs:
        current = f"{current}\n{paragraph}".strip()
        if len(current) >= 700:
            chunks.append(current)
            current = ""
    if current:
        chunks.append(current)
    return chunks[:limit]


def _sentences(chunk: str) -> list[str]:
    return [s for line in chunk.splitlines() for s in _SENTENCE.split(line) if len(s.split()) >= 8]


def planted_items(limit_chunks: int | None = None) -> tuple[list[dict], list[str | None]]:
    """(records as the curate step passes them, the reason code each item should get)."""
    chunks = corpus_chunks(limit_chunks)
    items, expected = [], []
    for index, chunk in enumerate(chunks):
        other = _sentences(chunks[(index + len(chunks) // 2) % len(chunks)]) if len(chunks) > 1 else []
        for k, sentence in enumerate(_sentences(chunk)):
            def item(answer, quotes, code):
                items.append({"question": f"What does the source say about item {index}-{k}-{len(items)}?",
                              "answer": answer, "chunk_text": chunk, "chunk_id": f"c{index}",
                              "quotes": json.dumps(quotes)})
                expected.append(code)
            item(sentence, [sentence], None)
            reworded = sentence.replace(" is ", " was ", 1) if " is " in sentence else " ".join(sentence.split()[1:])
            item(reworded, [sentence], None)
            item(f"{sentence} {INVENTED[k % len(INVENTED)]}", [sentence], UNSUPPORTED_CLAIM)
            words = sentence.split()
            item(sentence, [" ".join(words[1::2] + words[::2])], CITATION_INVALID)
            if other:
                stranger = other[k % len(other)]
                item(stranger, [stranger], CITATION_INVALID)
    return items, expected


def score(items: list[dict], expected: list[str | None]) -> dict[str, dict]:
    reasons = filter_pairs(items)
    figures = {}
    for code in (UNSUPPORTED_CLAIM, CITATION_INVALID):
        planted = [i for i, e in enumerate(expected) if e == code]
        flagged = [i for i, r in enumerate(reasons) if code in r]
        caught = [i for i in planted if code in reasons[i]]
        figures[code] = {"planted": len(planted), "flagged": len(flagged),
                         "recall": round(len(caught) / len(planted), 3) if planted else 0.0,
                         "precision": round(len(caught) / len(flagged), 3) if flagged else 0.0}
    good = [i for i, e in enumerate(expected) if e is None]
    figures["good_items_kept_by_these_rules"] = round(
        sum(not ({UNSUPPORTED_CLAIM, CITATION_INVALID} & set(reasons[i])) for i in good) / len(good), 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000, help="items for the timing")
    args = parser.parse_args()
    items, expected = planted_items()
    figures = score(items, expected)
    print(f"planted set: {len(items)} items from {len(corpus_chunks())} chunks")
    print(json.dumps(figures, indent=2))
    # Timing: the same records repeated (each with a unique question), with and without quotes.
    repeated = [dict(items[i % len(items)], question=f"Question number {i}?") for i in range(args.items)]
    without = [{k: v for k, v in r.items() if k != "quotes"} for r in repeated]
    timings = {}
    for label, records in (("without the evidence rules", without), ("with the evidence rules", repeated)):
        started = time.perf_counter()
        filter_pairs(records)
        timings[label] = round(time.perf_counter() - started, 1)
    print(json.dumps(timings, indent=2))
    out = ROOT / "benchmarks" / "results" / "evidence.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"planted": figures, "items": len(items), "timings_s": timings,
                               "timed_items": args.items}, indent=2))


if __name__ == "__main__":
    main()
