"""Decontamination (issue 27): the threshold, the recall, and the time at 100,000 rows.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_decontamination.py

(a) Threshold. The example corpus's generated questions (bench_filters.load_corpus: the
    model-free generator on examples/documents), distinct after normalisation. For each,
    its similarity (core/decontamination.similarity: content words, context clause apart) with
    its rewordings (reword below: words swapped, order changed, a clause added, one word
    swapped for a synonym, and bench_filters.paraphrase: a new frame) and, as the false
    positives, its highest similarity with any *other* question of the corpus. Printed:
    the share of each above candidate thresholds.
(b) Speed and recall at scale. Candidates: bench_filters.synthetic_pairs, 100,000 rows
    (question and answer, the 100k filter benchmark's set). Eval set: 10,000 questions:
    9,000 in a benchmark's style (benchmark_questions: other frames than the generator's,
    about spans of the real, not renamed, corpus sentences), 500 candidate questions
    copied exactly (case and punctuation changed) and 500 reworded (reword). Timed: building the index (cold), loading
    it stored (DuckDB, in memory), matching the 100,000 rows.

Writes benchmarks/results/decontamination.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import duckdb  # noqa: E402

from benchmarks.bench_filters import (  # noqa: E402
    _PROSE, _SENTENCE, SYNONYMS, exact_copy, load_corpus, paraphrase, synthetic_pairs,
)
from synth_assets.core.decontamination import (  # noqa: E402
    EvalSetSpec,
    build_index,
    find_contaminated,
    load_eval_indexes,
    similarity,
)
from synth_assets.core.dedup import normalise_text, question_key  # noqa: E402

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
CLAUSES = ("according to the documentation", "in simple terms", "as described in the source",
           "for a beginner", "in a few sentences")


def reword(question: str, rng: random.Random) -> tuple[str, str]:
    """One rewording of a question and its kind: two words swapped, the question's order
    changed (an "in the context of" clause or an opening phrase moved), a clause added,
    a synonym, or a new frame (bench_filters.paraphrase)."""
    body = question.strip().rstrip("?.!")
    end = question.strip()[-1:] if question.strip()[-1:] in "?." else "?"
    words = body.split()
    kind = rng.choice(("swap", "order", "clause", "synonym", "frame"))
    if kind == "swap" and len(words) > 3:
        i = rng.randrange(1, len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
        return " ".join(words) + end, kind
    if kind == "order":
        m = re.match(r"^(.+?) in the context of (.+)$", body)
        if m:
            return f"In the context of {m.group(2)}, {m.group(1)[:1].lower()}{m.group(1)[1:]}{end}", kind
        if "," in body:
            head, tail = body.split(",", 1)
            return f"{tail.strip()[:1].upper()}{tail.strip()[1:]}, {head[:1].lower()}{head[1:]}{end}", kind
        return f"{body}, briefly{end}", kind
    if kind == "clause":
        return f"{body}, {rng.choice(CLAUSES)}{end}", kind
    if kind == "synonym":
        spots = [i for i, w in enumerate(words) if w.lower().strip(",;:") in SYNONYMS]
        if spots:
            i = rng.choice(spots)
            words[i] = SYNONYMS[words[i].lower().strip(",;:")]
            return " ".join(words) + end, kind
        return f"{body}, {rng.choice(CLAUSES)}{end}", "clause"
    return paraphrase(question, rng)[0], "frame"


EVAL_TEMPLATES = ("What is {a}?", "Who {a}?", "Where does {a} take place?", "How many {a} are there?",
                  "Which of the following describes {a}?", "In what year did {a} happen?", "Why does {a} matter?",
                  "What happens when {a}?", "True or false: {a}.", "Name {a}.")


def benchmark_questions(documents: list[dict], n: int, rng: random.Random) -> list[str]:
    """Questions in the style of a public benchmark, not the generator's: other frames,
    about a span of 3-7 words of a real (not renamed) corpus sentence."""
    sentences = sorted({s.strip() for d in documents for c in d["chunks"] for s in _SENTENCE.findall(c)
                        if 6 <= len(s.split()) <= 50 and _PROSE.match(s.strip())})
    questions = []
    while len(questions) < n:
        words = rng.choice(sentences).rstrip(".!?").split()
        start = rng.randrange(max(1, len(words) - 3))
        span = " ".join(words[start : start + rng.randint(3, 7)])
        questions.append(rng.choice(EVAL_TEMPLATES).format(a=span[:1].lower() + span[1:]))
    return questions


def run_threshold(questions: list[str], seed: int) -> dict:
    rng = random.Random(seed)
    keys = [question_key(q) for q in questions]
    reworded: dict[str, list[float]] = {}
    for q, key in zip(questions, keys):
        for _ in range(5):
            text, kind = reword(q, rng)
            reworded.setdefault(kind, []).append(similarity(key, question_key(text)))
    # Each question's highest similarity with any other question of the corpus.
    nearest = [max(similarity(key, other) for j, other in enumerate(keys) if j != i) for i, key in enumerate(keys)]
    share = lambda values, t: round(sum(v >= t for v in values) / len(values), 3)  # noqa: E731
    every = [v for values in reworded.values() for v in values]
    return {
        "questions": len(questions),
        "reworded_at_or_above": {str(t): share(every, t) for t in THRESHOLDS},
        "reworded_by_kind": {kind: {"n": len(v), **{str(t): share(v, t) for t in THRESHOLDS}}
                             for kind, v in sorted(reworded.items())},
        "other_questions_at_or_above": {str(t): share(nearest, t) for t in THRESHOLDS},
    }


def run_speed(documents: list[dict], n_rows: int, n_eval: int, seed: int) -> dict:
    rng = random.Random(seed)
    candidates = synthetic_pairs(documents, n_rows, random.Random(7))
    benchmark_like = benchmark_questions(documents, n_eval, random.Random(seed + 1))
    planted = rng.sample(range(len(candidates)), n_eval // 10)
    exact, reworded = planted[: len(planted) // 2], planted[len(planted) // 2 :]
    eval_questions = benchmark_like[: n_eval - len(planted)]
    eval_questions += [exact_copy(candidates[i]["question"], rng) for i in exact]
    eval_questions += [reword(candidates[i]["question"], rng)[0] for i in reworded]
    spec = EvalSetSpec(Path("bench_eval.jsonl"))

    started = time.perf_counter()
    index = build_index(spec, eval_questions, "bench")
    build_s = time.perf_counter() - started

    eval_file = Path("/tmp/bench_decontamination_eval.jsonl")
    eval_file.write_text("".join(json.dumps({"question": q}) + "\n" for q in eval_questions))
    con = duckdb.connect(":memory:")
    started = time.perf_counter()
    load_eval_indexes(con, [EvalSetSpec(eval_file)])
    build_and_store_s = time.perf_counter() - started
    started = time.perf_counter()
    index = load_eval_indexes(con, [EvalSetSpec(eval_file)])[0]
    load_s = time.perf_counter() - started

    records = [{"question": p["question"], "answer": p["answer"]} for p in candidates]
    started = time.perf_counter()
    matches = find_contaminated(records, [index])
    match_s = time.perf_counter() - started
    flagged = {i for i, m in enumerate(matches) if m is not None}
    exact_keys = {normalise_text(candidates[i]["question"]) for i in exact}
    # A planted question may also be asked by other candidate rows (the set holds 3% exact
    # and 3% paraphrased duplicates): those are contaminated too, not false positives.
    same_as_planted = {i for i, p in enumerate(candidates) if normalise_text(p["question"]) in exact_keys}
    reworded_keys = {question_key(candidates[i]["question"]) for i in reworded}
    near_planted = {i for i, p in enumerate(candidates) if question_key(p["question"]) in reworded_keys}
    unexplained = flagged - same_as_planted - near_planted - set(planted)
    # Matches of the 9,000 benchmark-style questions alone: none of them was planted, so
    # every one is a false positive (or a coincidence of the synthetic set).
    benchmark_texts = set(eval_questions[: n_eval - len(planted)])
    by_benchmark = [i for i, m in enumerate(matches) if m is not None and m.matched_text in benchmark_texts]
    return {
        "candidate_rows": len(records), "eval_questions": len(eval_questions),
        "index_build_s": round(build_s, 2), "index_build_and_store_s": round(build_and_store_s, 2),
        "index_load_s": round(load_s, 2), "match_s": round(match_s, 2),
        "build_and_match_s": round(build_s + match_s, 2),
        "exact_recall": round(sum(i in flagged for i in exact) / len(exact), 3),
        "reworded_recall": round(sum(i in flagged for i in reworded) / len(reworded), 3),
        "flagged": len(flagged), "flagged_not_planted": len(unexplained),
        "flagged_not_planted_share": round(len(unexplained) / len(records), 4),
        "flagged_by_benchmark_style_rows": len(by_benchmark),
        "flagged_by_benchmark_style_rows_sample": [(candidates[i]["question"], matches[i].matched_text,
                                                     matches[i].method, matches[i].score) for i in by_benchmark[:5]],
        "flagged_not_planted_sample": [(candidates[i]["question"], matches[i].matched_text, matches[i].method,
                                        matches[i].score) for i in sorted(unexplained)[:5]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--eval", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=27)
    args = parser.parse_args()
    documents = load_corpus()
    # Distinct questions: the generator's own repeats (one question in two frames) are not
    # "other questions".
    questions = sorted({p["question"] for d in documents for p in d["pairs"]})
    questions = list({question_key(q): q for q in questions}.values())
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load": os.getloadavg()[0]},
              "threshold": run_threshold(questions, args.seed),
              "speed": run_speed(documents, args.rows, args.eval, args.seed)}
    out = ROOT / "benchmarks" / "results" / "decontamination.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
