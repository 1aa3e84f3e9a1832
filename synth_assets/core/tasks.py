"""Generation tasks: the kinds of training item a dataset is made of, and their shares.

A task is a named shape of item (docs/TASKS.md):
- `qa`: one question and one answer from one chunk (what the pipeline always wrote);
- `reasoning`: a question whose answer takes several steps, with the steps in
  `reasoning` and the final `answer`;
- `multi_hop`: a question that needs two or three chunks of the same document, with
  `source_chunk_ids` (the chunks are picked by shared terms, `pick_partners`);
- `conversation`: three to six user/assistant turns about one section, later questions
  following up earlier answers (`turns`);
- `unanswerable`: a plausible question the chunk does not answer (or one with a false
  premise), answered by saying what the source does and does not say.

The shares (SYNTH_ASSETS_TASKS, e.g. `qa=0.4,reasoning=0.2,...`) are shares of items.
`allocate` turns them into item counts per document without bias, so that over a
dataset the realised shares approach the configured ones; `difficulty_proxy` is the
measurable check of a generator's difficulty.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence

from synth_assets.core.text import STEMS, STOPWORDS, TOKEN

QA, REASONING, MULTI_HOP, CONVERSATION, UNANSWERABLE = "qa", "reasoning", "multi_hop", "conversation", "unanswerable"
TASKS = (QA, REASONING, MULTI_HOP, CONVERSATION, UNANSWERABLE)
DEFAULT_TASK_SHARES = "qa=1"
TASK_DESCRIPTIONS = {
    QA: "one question and one answer from one chunk",
    REASONING: "a question answered in several steps: a `reasoning` text, then the final `answer`",
    MULTI_HOP: "a question that needs two or three chunks of one document (`source_chunk_ids`)",
    CONVERSATION: "three to six user/assistant turns about one section (`turns`), follow-ups included",
    UNANSWERABLE: "a question the source does not answer; the answer says what it does and does not say",
}
# The question types of each task beside qa's own (the backends name qa's types).
TASK_QUESTION_TYPES = {
    REASONING: ("causal", "procedural", "inferential"),
    MULTI_HOP: ("bridge", "comparison"),
    CONVERSATION: ("follow_up",),
    UNANSWERABLE: ("missing_fact", "false_premise"),
}
# Items asked of a model in one request, per task (qa asks for pairs_per_chunk): a
# conversation is one item; a multi-hop request carries two or three chunks.
ITEMS_PER_REQUEST = {REASONING: 2, MULTI_HOP: 2, CONVERSATION: 1, UNANSWERABLE: 2}
MIN_TURNS, MAX_TURNS = 3, 6
MAX_HOPS = 3
# How an unanswerable answer introduces what the source does say after saying what it
# does not ("What they say about X: <a sentence of the source>"): a lead-in, not a claim.
SAYS_LEAD_IN = re.compile(r"^(?:what (?:they|the (?:documents?|sources?|texts?)) (?:do )?say(?: about [^:]{1,80})?"
                          r"|(?:they|the (?:documents?|sources?)) (?:do )?say(?: that)?)\s*:?\s*", re.IGNORECASE)
# Tolerance of realised against configured shares (percentage points / 100).
SHARE_TOLERANCE = 0.05


def parse_task_shares(text: str) -> dict[str, float]:
    """`qa=0.4,reasoning=0.2` as {task: share}; a bare `qa` is a share of 1. Raises
    ValueError naming what is wrong: an unknown task, a share that is not a number in
    [0, 1], a task given twice, or shares that do not add up to 1 (within 0.01)."""
    shares: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}; the tasks are {', '.join(TASKS)}")
        if name in shares:
            raise ValueError(f"task {name!r} is given twice")
        try:
            share = float(value) if value.strip() else 1.0
        except ValueError:
            raise ValueError(f"the share of {name!r} is not a number: {value.strip()!r}") from None
        if not 0 <= share <= 1 or math.isnan(share):
            raise ValueError(f"the share of {name!r} is {share}, not between 0 and 1")
        shares[name] = share
    if not shares:
        raise ValueError(f"no task given; for example {DEFAULT_TASK_SHARES}")
    if abs(sum(shares.values()) - 1) > 0.01:
        raise ValueError(f"the shares add up to {sum(shares.values()):.3g}, not 1")
    return {name: share for name, share in shares.items() if share > 0}


def format_task_shares(shares: Mapping[str, float]) -> str:
    return ",".join(f"{name}={shares[name]:g}" for name in TASKS if name in shares)


def _unit_interval(*parts: str) -> float:
    digest = hashlib.sha256(":".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def allocate(key: str, total: int, shares: Mapping[str, float]) -> dict[str, int]:
    """Items per task for one document of `total` items: floor(share x total), plus one
    with a probability equal to the remainder, drawn from a hash of (key, task). The
    expected count is exactly share x total, so over many documents the realised
    shares approach the configured ones, whatever each document's size (largest
    remainder per document would favour the larger shares on every small document)."""
    counts = {}
    for task, share in shares.items():
        wanted = share * total
        counts[task] = int(wanted) + (_unit_interval(key, task) < wanted - int(wanted))
    return counts


def spread(n_slots: int, n_picks: int, offset: int = 0) -> list[int]:
    """`n_picks` indexes in range(n_slots), evenly spaced and shifted by `offset`, so each
    task's requests cover the whole document and different tasks start on different chunks."""
    if n_slots <= 0 or n_picks <= 0:
        return []
    return [(int((i + 0.5) * n_slots / n_picks) + offset) % n_slots for i in range(n_picks)]


def content_stems(text: str) -> set[str]:
    return {STEMS[t] for t in TOKEN.findall((text or "").lower()) if t not in STOPWORDS and not t.isdigit()}


# Capitalised words not at a sentence start, and acronyms: named entities, roughly.
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][a-zA-Z0-9]+|[A-Z]{2,}[a-z]?)\b")


def key_terms(text: str) -> set[str]:
    """Named entities (capitalised words inside sentences, acronyms) as lowercase stems."""
    return {STEMS[m.lower()] for m in _NAME.findall(text or "") if m.lower() not in STOPWORDS}


def pick_partners(anchor: int, texts: Sequence[str], k: int = 1, min_shared: int = 2,
                  exclude: set[int] = frozenset()) -> list[tuple[int, list[str]]]:
    """The chunks (by index) that share the most terms with chunk `anchor`, at most `k`,
    each with the shared terms: named entities count three times a content word, and a
    term every chunk of the document has counts for nothing (it links nothing). Chunks
    next to the anchor are skipped (their overlap text would make a single-chunk
    question look like a join). Fewer than `min_shared` weighted shared terms: no partner."""
    stems = [content_stems(t) for t in texts]
    names = [key_terms(t) for t in texts]
    document_frequency = Counter(s for chunk in stems for s in chunk)
    common = {s for s, n in document_frequency.items() if n >= max(3, 0.6 * len(texts))}
    scored = []
    for index, other in enumerate(stems):
        if abs(index - anchor) <= 1 or index in exclude:
            continue
        shared = (stems[anchor] & other) - common
        weight = sum(3 if s in names[anchor] and s in names[index] else 1 for s in shared)
        if weight >= min_shared:
            named = sorted(s for s in shared if s in names[anchor] and s in names[index])
            scored.append((weight, index, named + sorted(shared - set(named))))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [(index, shared[:8]) for _, index, shared in scored[:k]]


def lexical_overlap(answer: str, source: str) -> float:
    """The share of the answer's content stems found in the source (0 when it has none)."""
    words = content_stems(answer)
    return len(words & content_stems(source)) / len(words) if words else 0.0


def difficulty_proxy(task: str, answer: str, source: str, hops: int = 1, steps: int = 0) -> int:
    """A 1-5 difficulty measured from the item itself, the check on a generator's own
    figure: one point to start, one per extra chunk joined (hops), one for a long
    answer (over 40 words), one for reasoning of three steps or more, one when under
    half the answer's words are the source's (paraphrase and inference are harder than
    copying), and one for an unanswerable question (knowing what is not said)."""
    score = 1 + max(0, min(hops, MAX_HOPS) - 1)
    score += len((answer or "").split()) > 40
    score += steps >= 2
    score += steps >= 4
    score += lexical_overlap(answer, source) < 0.5
    score += task == UNANSWERABLE
    return max(1, min(5, score))


def realised_shares(tasks: Sequence[str]) -> dict[str, float]:
    counts = Counter(tasks)
    total = sum(counts.values())
    return {task: counts[task] / total for task in TASKS if counts.get(task)} if total else {}


def share_report(tasks: Sequence[str], shares: Mapping[str, float], shortfalls: Mapping[str, str] | None = None
                 ) -> tuple[bool, list[dict]]:
    """Per configured task: configured and realised share and whether they are within
    SHARE_TOLERANCE; the reason when not (the documents' shortfall of that task, e.g.
    "12 documents too short for multi_hop"). True when every task is within."""
    realised = realised_shares(tasks)
    rows = []
    for task in TASKS:
        if task not in shares and task not in realised:
            continue
        wanted, got = shares.get(task, 0.0), realised.get(task, 0.0)
        within = abs(wanted - got) <= SHARE_TOLERANCE
        rows.append({"task": task, "configured": round(wanted, 3), "realised": round(got, 3),
                     "items": Counter(tasks)[task], "within_tolerance": within,
                     "why_not": "" if within else (shortfalls or {}).get(task, "")})
    return all(row["within_tolerance"] for row in rows), rows


def mix_table(rows: Sequence[Mapping], counts: Sequence[int] | None = None) -> list[dict]:
    """Items per (task, question type, difficulty) of a dataset's rows (each row counted
    `counts[i]` times when given: rows already grouped), in a stable order."""
    text = lambda value, default: value if isinstance(value, str) and value else default  # noqa: E731 - NaN too
    counts_of: Counter = Counter()
    for r, n in zip(rows, counts if counts is not None else [1] * len(rows)):
        counts_of[(text(r.get("task"), QA), text(r.get("question_type"), "-"),
                   int(r["difficulty"]) if isinstance(r.get("difficulty"), (int, float))
                   and r["difficulty"] == r["difficulty"] else None)] += n
    counts = counts_of
    return [{"task": task, "question_type": kind, "difficulty": difficulty, "items": n}
            for (task, kind, difficulty), n in sorted(counts.items(), key=lambda item: (TASKS.index(item[0][0])
                                                      if item[0][0] in TASKS else 99, item[0][1], item[0][2] or 0))]


def mix_markdown(table: Sequence[Mapping], shares: Mapping[str, float] | None, share_rows: Sequence[Mapping]) -> str:
    """The card's and the UI's account of the mix: configured against realised shares per
    task (with why a task is off), then items per task x question type x difficulty."""
    lines = ["| task | configured share | realised share | items | within ±5 pp | why not |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['task']} | {r['configured']:.0%} | {r['realised']:.1%} | {r['items']} | "
              f"{'yes' if r['within_tolerance'] else 'no'} | {r['why_not']} |" for r in share_rows]
    difficulties = sorted({r["difficulty"] for r in table if r["difficulty"] is not None})
    header = "| task | question type | " + " | ".join(f"difficulty {d}" for d in difficulties) + " | items |"
    grid = [header, "|" + " --- |" * (len(difficulties) + 3)]
    cells: dict[tuple[str, str], Counter] = {}
    for r in table:
        cells.setdefault((r["task"], r["question_type"]), Counter())[r["difficulty"]] += r["items"]
    for (task, kind), by_difficulty in cells.items():
        grid.append(f"| {task} | {kind} | " + " | ".join(str(by_difficulty.get(d, 0)) for d in difficulties)
                    + f" | {sum(by_difficulty.values())} |")
    configured = f"Configured shares: `{format_task_shares(shares)}`.\n\n" if shares else ""
    return configured + "\n".join(lines) + "\n\n" + "\n".join(grid)


def mix_bars(table: Sequence[Mapping]) -> dict[str, dict[str, int]]:
    """Items per task, stacked by difficulty: the chart's data."""
    bars: dict[str, Counter] = {}
    for r in table:
        bars.setdefault(r["task"], Counter())[f"difficulty {r['difficulty'] or '?'}"] += r["items"]
    return {task: dict(counts) for task, counts in bars.items()}
