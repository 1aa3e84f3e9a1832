"""The tasks beyond qa (issue 26): are their defects caught, and does the mix keep the GPU busy?

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_tasks.py [--documents 200] [--mistake 0.2]

(a) Planted defects. The example documents (examples/documents, prose ones) are parsed
    and chunked as the pipeline does (synth_assets.core.chunking, with overlap). From
    their sentences, per chunk: good items of every task (qa controls; reasoning with
    steps that are sentences of the chunk; multi_hop joining a sentence of the chunk and
    one of the partner that core.tasks.pick_partners gives it, the sentence adding the
    most the anchor lacks; conversations of consecutive sentences whose later questions
    name a term of the turn before; unanswerable questions about an attribute the
    document never states, answered "The documents do not say ... What they say about
    X: <a sentence>"), and one set per defect kind: reasoning with an invented step;
    multi_hop answered by two sentences of one chunk; conversation with one assistant
    turn from another document or invented; conversation with a later user turn about
    something unrelated; unanswerable questions that a sentence of the document answers
    (the sentence's clause as a yes/no question, with one word left out, or as a
    why-question); unanswerable answers that state a fact without declining. The records
    are shaped as the curate step's (curate.load_items) and go through
    core.filters.filter_pairs per document, judge off. Recall of a defect kind: share of
    its items flagged with its reason code. Precision of a code: share of the items it
    flags that were planted with its defect.
(b) End to end against the simulated server (benchmarks/sim_server.py, 32 slots, its own
    process) with its mistakes on (--mistake, each kind) and the judge on:
    SYNTH_ASSETS_TASKS="qa=0.4,reasoning=0.2,multi_hop=0.15,conversation=0.15,unanswerable=0.1"
    on --documents documents (the example documents in turn, each copy its own title and
    ids). The requests are planned with generation.task_plan.plan_requests, sent with the
    openai backend's generate_and_judge (judge requests from curate.pairs_to_judge as the
    generate asset makes them, a generation cache in a temporary directory), then the
    curate step is done as filtered_qa_pairs does it: records as curate.load_items
    builds them, one judge call (cache hits, unless the curate step's judge requests
    differ from the generate step's), filter_pairs per document with the judge scores.
    Efficiency (as bench_generation.py): the server's total sequence time / slots over
    the measured wall time of the generate step (generation and judging overlapped).
    Reported: the share of kept multi_hop items whose answer the sim judge finds in one
    excerpt alone, every planted mistake's rejection with its reason code, items kept
    per task.

Prints tables and writes benchmarks/results/tasks.json.
"""

from __future__ import annotations

import argparse
import html.parser
import json
import logging
import os
import platform
import re
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from benchmarks import sim_server  # noqa: E402
from synth_assets.core.filters import FilterConfig, filter_pairs, pair_languages  # noqa: E402
from synth_assets.core.task_rules import (  # noqa: E402
    ANSWERABLE_UNANSWERABLE,
    MISSING_REFUSAL,
    REASONING_UNSUPPORTED,
    SINGLE_CHUNK_ANSWERABLE,
    UNGROUNDED_TURN,
    UNRELATED_FOLLOW_UP,
)
from synth_assets.core.tasks import content_stems, parse_task_shares, pick_partners  # noqa: E402

DOCUMENTS = ROOT / "examples" / "documents"
RESULTS = ROOT / "benchmarks" / "results" / "tasks.json"
FORMATS = (".md", ".html", ".docx")
SKIP = ("lorem_ipsum",)  # Latin filler: no facts to ask about
TASK_SHARES = "qa=0.4,reasoning=0.2,multi_hop=0.15,conversation=0.15,unanswerable=0.1"
TASK_CODES = (REASONING_UNSUPPORTED, SINGLE_CHUNK_ANSWERABLE, UNGROUNDED_TURN, UNRELATED_FOLLOW_UP,
              ANSWERABLE_UNANSWERABLE, MISSING_REFUSAL)
# Planted defect kind -> (task, the reason code meant for it).
DEFECTS = {
    "reasoning: unsupported step": ("reasoning", REASONING_UNSUPPORTED),
    "multi_hop: answerable from one chunk": ("multi_hop", SINGLE_CHUNK_ANSWERABLE),
    "conversation: ungrounded turn": ("conversation", UNGROUNDED_TURN),
    "conversation: unrelated follow-up": ("conversation", UNRELATED_FOLLOW_UP),
    "unanswerable: the source answers it": ("unanswerable", ANSWERABLE_UNANSWERABLE),
    "unanswerable: no refusal": ("unanswerable", MISSING_REFUSAL),
}
TARGET = 0.9
SETS_PER_CHUNK = 3  # sets of planted items per chunk, on other sentences each


# -- corpus ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkRow:
    chunk_id: str
    text: str  # with the overlap from the chunk before, what the model sees
    body: str
    headings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Document:
    document_id: str
    title: str
    chunks: tuple[ChunkRow, ...]


def pipeline_corpus() -> tuple[list[Document], str]:
    """The prose example documents, parsed and chunked as the pipeline does."""
    from synth_assets.core.chunking import (
        DEFAULT_BUFFER_TOKENS, DEFAULT_GENERATION_TOKENS, DEFAULT_MAX_SEQ_LEN, DEFAULT_OVERLAP_TOKENS,
        chunk_document, chunk_size_for, load_tokenizer,
    )
    from synth_assets.core.parsing import parse_document

    tokenizer, _ = load_tokenizer(None)
    size = chunk_size_for(DEFAULT_MAX_SEQ_LEN, DEFAULT_GENERATION_TOKENS, DEFAULT_BUFFER_TOKENS)
    documents = []
    for path in sorted(DOCUMENTS.iterdir()):
        if path.suffix.lower() not in FORMATS or path.name.startswith("LICENSE") or path.stem in SKIP:
            continue
        chunks = chunk_document(parse_document(path).document, tokenizer=tokenizer, max_tokens=size,
                                overlap_tokens=DEFAULT_OVERLAP_TOKENS)
        rows = tuple(ChunkRow(f"{path.stem}#{c.chunk_index}", c.text, c.body, tuple(c.headings))
                     for c in chunks if not c.boilerplate)
        if rows:
            documents.append(Document(path.stem, path.stem, rows))
    return documents, f"synth_assets.core.chunking ({size} tokens, {DEFAULT_OVERLAP_TOKENS} overlap, prose chunks)"


class _Paragraphs(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.paragraphs: list[str] = []
        self._depth = 0
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "p":
            self._depth += 1
            self._text = []

    def handle_endtag(self, tag):
        if tag == "p" and self._depth:
            self._depth -= 1
            text = re.sub(r"\[\d+\]", "", " ".join("".join(self._text).split()))
            if len(text.split()) >= 12:
                self.paragraphs.append(text)

    def handle_data(self, data):
        if self._depth:
            self._text.append(data)


def simple_corpus(chunk_chars: int = 1200, overlap_words: int = 30, max_chunks: int = 8) -> list[Document]:
    """wiki.md and wiki_duck.html split into paragraphs (no docling: fast, for tests),
    grouped into chunks of about `chunk_chars`, each but the first with the last
    `overlap_words` words of the chunk before as its first line, as the chunker does;
    wiki_duck gives several documents of `max_chunks` chunks."""
    wiki = [p.strip() for p in re.split(r"\n\s*\n", (DOCUMENTS / "wiki.md").read_text(encoding="utf-8"))
            if p.strip() and not p.startswith("#")]
    parser = _Paragraphs()
    parser.feed((DOCUMENTS / "wiki_duck.html").read_text(encoding="utf-8"))
    sources = [("wiki", wiki)]
    duck = parser.paragraphs
    for part in range(0, len(duck), 3 * max_chunks):
        sources.append((f"wiki_duck_{part // (3 * max_chunks)}", duck[part: part + 3 * max_chunks]))
    documents = []
    for name, paragraphs in sources:
        bodies, current = [], ""
        for paragraph in paragraphs:
            if current and len(current) + len(paragraph) > chunk_chars:
                bodies.append(current)
                current = ""
            current = f"{current}\n{paragraph}".strip()
        if current:
            bodies.append(current)
        bodies = bodies[:max_chunks]
        rows = []
        for index, body in enumerate(bodies):
            overlap = " ".join(bodies[index - 1].split()[-overlap_words:]) if index else ""
            rows.append(ChunkRow(f"{name}#{index}", f"{overlap}\n{body}" if overlap else body, body))
        if len(rows) >= 3:
            documents.append(Document(name, name, tuple(rows)))
    return documents


# -- (a) planted defects --------------------------------------------------------------

_OFF_TOPIC = sim_server._OFF_TOPIC
_ABSENT = sim_server._ABSENT_ATTRIBUTES  # one content word each beside the subject
_INVENTED = ("A committee in Valparaiso later catalogued eighteen copper ledgers about {x}, "
             "and its annual upkeep was recorded at nine hundred florins.",
             "Archivists in Tromsø moved the original {x} manuscripts to a vault beneath the harbour "
             "after a midsummer flood in 1874.")


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2}


def _subject(sentence: str) -> str | None:
    names = re.findall(r"(?<=[a-z,;] )[A-Z][A-Za-z0-9-]{2,}(?: [A-Z][A-Za-z0-9-]+)*", sentence)
    return names[0] if names else None


def _clause(sentence: str, max_words: int = 14) -> str:
    """The sentence's first clause (or, when that is under six words, its first words)."""
    clause = re.split(r"[,;:(]", sentence.rstrip(".!?"))[0]
    if len(clause.split()) < 6:
        clause = re.sub(r"[,;:()\"]", "", sentence.rstrip(".!?"))
    words = clause.split()[:max_words]
    if words and words[0][:1].isupper() and words[0][1:].islower():
        words[0] = words[0].lower()
    return " ".join(words)


def _record(document: Document, task: str, question: str, answer: str, chunk: ChunkRow, *,
            sources: tuple[ChunkRow, ...] = (), reasoning: str | None = None,
            turns: list[tuple[str, str]] | None = None) -> dict:
    """A record shaped as curate.load_items makes it."""
    sources = sources or (chunk,)
    record = {
        "question": question, "answer": answer, "task": task, "reasoning": reasoning,
        "chunk_text": "\n\n".join(c.text for c in sources) if task == "multi_hop" else chunk.text,
        "turns": json.dumps([list(t) for t in turns]) if turns else None,
        "source_chunk_ids": json.dumps([c.chunk_id for c in sources]),
        "source_texts": [c.body for c in sources] if task == "multi_hop" else None,
        "document_text": "\n".join(c.body for c in document.chunks) if task == "unanswerable" else None,
    }
    return record


def planted_items(document: Document, all_sentences: list[str]) -> list[tuple[str, dict]]:
    """(kind, record) for every good and defective item made from one document's chunks;
    kind is "good <task>" or a key of DEFECTS."""
    items: list[tuple[str, dict]] = []
    texts = [c.text for c in document.chunks]
    whole = "\n".join(c.body for c in document.chunks)
    # Prose only (a chunk of references or a list gives no sentences here).
    per_chunk = [[x for x in sim_server.task_sentences(c.text) if sim_server.is_prose(x)] for c in document.chunks]
    sets = [(index, chunk, sentences[4 * k:] + sentences[:4 * k], k)
            for index, (chunk, sentences) in enumerate(zip(document.chunks, per_chunk))
            for k in range(SETS_PER_CHUNK) if len(sentences) >= 4 * (k + 1)]
    used: set[str] = set()  # partner sentences already joined: each once
    for index, chunk, s, k in sets:
        salt = zlib.crc32(f"{chunk.chunk_id}/{k}".encode())
        # qa controls
        items.append(("good qa", _record(document, "qa", f"What is stated about {_clause(s[0], 6)}?", s[0], chunk)))
        # reasoning
        question = f"How does {_clause(s[0], 6)} lead to {_clause(s[2], 5)}?"
        steps = f"Step 1: {s[0]}\nStep 2: {s[1]}"
        items.append(("good reasoning", _record(document, "reasoning", question, s[2], chunk, reasoning=steps)))
        subject = _subject(s[1]) or _clause(s[1], 2)
        bad_steps = f"Step 1: {s[0]}\nStep 2: {_INVENTED[salt % 2].format(x=subject)}\nStep 3: {s[1]}"
        items.append(("reasoning: unsupported step", _record(
            document, "reasoning", f"Why does {_clause(s[1], 6)} follow from {_clause(s[0], 5)}?", s[2], chunk,
            reasoning=bad_steps)))
        # multi_hop
        partners = pick_partners(index, texts, k=1)
        candidates = [x for x in per_chunk[partners[0][0]] if x not in used] if partners else []
        if candidates:
            partner = document.chunks[partners[0][0]]
            known = set().union(*(content_stems(x) for x in s))
            second = max(candidates, key=lambda x: len(content_stems(x) - known))
            used.add(second)
            first = s[0]
            items.append(("good multi_hop", _record(
                document, "multi_hop", f"How is {_clause(first, 5)} connected to {_clause(second, 5)}?",
                f"{first} {second}", chunk, sources=(chunk, partner))))
            items.append(("multi_hop: answerable from one chunk", _record(
                document, "multi_hop", f"How is {_clause(s[1], 5)} connected to {_clause(s[3], 5)}?",
                f"{s[1]} {s[3]}", chunk, sources=(chunk, partner))))
        # conversation
        turns = [(f"What can you tell me about {_clause(s[0], 6)}?", s[0])]
        for sentence in s[1:4]:
            shared = [w for w in re.findall(r"[A-Za-z][a-z]{3,}", sentence) if content_stems(w) & content_stems(turns[-1][1])]
            topic = shared[0] if shared else "that"
            turns.append((f"And what else is there about {topic}, in {_clause(sentence, 4)}?", sentence))
        items.append(("good conversation", _record(document, "conversation", turns[0][0], turns[0][1], chunk,
                                                   turns=turns)))
        bad = list(turns)
        position = 1 + salt % (len(bad) - 1)
        foreign = all_sentences[(salt // 7) % len(all_sentences)]
        if salt % 2 or _words(foreign) <= _words(chunk.text):
            foreign = _INVENTED[salt % 2].format(x=_subject(bad[position][1]) or "it")
        bad[position] = (bad[position][0], foreign)
        items.append(("conversation: ungrounded turn", _record(document, "conversation", bad[0][0], bad[0][1], chunk,
                                                               turns=bad)))
        bad = list(turns)
        vocabulary = content_stems(whole)
        off = next((q for q in _OFF_TOPIC if not content_stems(q) & vocabulary), _OFF_TOPIC[-1])
        bad[position] = (off, bad[position][1])
        items.append(("conversation: unrelated follow-up", _record(document, "conversation", bad[0][0], bad[0][1],
                                                                   chunk, turns=bad)))
        # unanswerable
        named = next(((n, x) for x in s if (n := _subject(x))), (None, None))
        subject, about = named if named[0] else (_clause(s[0], 2), s[0])
        question = _ABSENT[salt % len(_ABSENT)].format(x=subject)
        missing = question.rstrip("?")
        decline = f"The documents do not say {missing[0].lower()}{missing[1:]}."
        items.append(("good unanswerable", _record(document, "unanswerable", question,
                                                   f"{decline} What they say about {subject}: {about}", chunk)))
        items.append(("unanswerable: no refusal", _record(document, "unanswerable", question,
                                                          f"{about} {s[(salt + 1) % len(s)]}", chunk)))
        answered = s[2]
        clause = _clause(answered)
        words = clause.split()
        variant = salt % 3
        if variant == 0:
            asked = f"Is it so that {clause}?"
        elif variant == 1 and len(words) > 5:  # one word left out
            asked = f"Is it so that {' '.join(words[:2] + words[3:])}?"
        else:
            asked = f"Why {clause}?"
        items.append(("unanswerable: the source answers it", _record(
            document, "unanswerable", asked,
            f"The documents do not say whether {clause}. What they say about {subject}: {about}", chunk)))
    return items


def planted_benchmark(documents: list[Document]) -> dict:
    all_sentences = [x for d in documents for c in d.chunks for x in sim_server.task_sentences(c.text)
                     if sim_server.is_prose(x)]
    config = FilterConfig()
    flagged: dict[str, Counter] = defaultdict(Counter)  # kind -> code -> count
    totals: Counter = Counter()
    kept: Counter = Counter()
    examples: dict[str, list] = defaultdict(list)
    for document in documents:
        items = planted_items(document, all_sentences)
        if not items:
            continue
        records = [record for _, record in items]
        for (kind, record), reasons in zip(items, filter_pairs(records, config)):
            totals[kind] += 1
            kept[kind] += not reasons
            for code in set(reasons):
                flagged[kind][code] += 1
            expected = DEFECTS.get(kind, (None, None))[1]
            if expected and expected not in reasons and len(examples[f"missed: {kind}"]) < 3:
                examples[f"missed: {kind}"].append({"question": record["question"], "answer": record["answer"],
                                                    "turns": record["turns"], "reasons": reasons})
            for code in set(reasons) & set(TASK_CODES):
                if DEFECTS.get(kind, (None, None))[1] != code and len(examples[f"wrongly {code}"]) < 3:
                    examples[f"wrongly {code}"].append({"kind": kind, "question": record["question"],
                                                        "answer": record["answer"], "turns": record["turns"],
                                                        "reasons": reasons})
    rows = []
    for kind, (task, code) in DEFECTS.items():
        caught = flagged[kind][code]
        flagged_total = sum(flagged[k][code] for k in totals)
        recall = caught / totals[kind] if totals[kind] else 0.0
        precision = caught / flagged_total if flagged_total else 0.0
        rows.append({"defect": kind, "task": task, "code": code, "items": totals[kind], "caught": caught,
                     "recall": round(recall, 3), "flagged_with_code": flagged_total,
                     "precision": round(precision, 3),
                     "meets_target": recall >= TARGET and precision >= TARGET})
    controls = {kind: {"items": totals[kind], "kept": kept[kind], "kept_share": round(kept[kind] / totals[kind], 3),
                       "rejected_by": dict(flagged[kind].most_common())}
                for kind in sorted(totals) if kind.startswith("good")}
    return {"defects": rows, "good_items": controls, "examples": dict(examples)}


# -- (b) end to end against the simulated server ---------------------------------------


def copies_of(documents: list[Document], n: int) -> list[Document]:
    """`n` documents: the corpus in turn, each copy with its own id, title and chunk ids."""
    result = []
    for k in range(n):
        base = documents[k % len(documents)]
        doc_id = f"{base.document_id}-{k}"
        result.append(Document(doc_id, f"{base.title} (copy {k})", tuple(
            ChunkRow(f"{doc_id}#{i}", c.text, c.body, c.headings) for i, c in enumerate(base.chunks))))
    return result


def end_to_end(documents: list[Document], base_url: str, server_stats, *, slots: int, shares: str = TASK_SHARES,
               pairs_per_chunk: int = 5, max_concurrency: int = 64, cache_dir: str | None = None) -> dict:
    """Generate (judging as generated) and curate `documents` as the generate and curate
    assets do, against a simulated server at `base_url`; `server_stats()` returns its
    /stats. Returns figures and the curated items."""
    from synth_assets.assets.curate import pairs_to_judge
    from synth_assets.generation.base import GenerationRequest, pair_record
    from synth_assets.generation.cache import GenerationCache
    from synth_assets.generation.openai_backend import OpenAIBackend
    from synth_assets.generation.prompts import _one_line
    from synth_assets.generation.task_plan import plan_requests

    task_shares = parse_task_shares(shares)
    config = FilterConfig(use_judge=True)
    requests, planned, shortfalls = [], Counter(), Counter()
    chunk_of: dict[str, ChunkRow] = {}
    document_of: dict[str, Document] = {}
    for document in documents:
        chunk_requests = [GenerationRequest(document.document_id, c.chunk_id, c.text, c.headings, document.title)
                          for c in document.chunks]
        made, counts, short = plan_requests(document.document_id, chunk_requests, task_shares, pairs_per_chunk)
        requests += made
        planned.update(counts)
        shortfalls.update(short.keys())
        for c in document.chunks:
            chunk_of[c.chunk_id] = c
            document_of[c.chunk_id] = document
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        cache = GenerationCache(Path(tmp) / "cache.duckdb")
        backend = OpenAIBackend(base_url=base_url, model="sim-model", pairs_per_chunk=pairs_per_chunk,
                                max_tokens=512, max_concurrency=max_concurrency, cache=cache)

        def judge_requests_for(request, pairs):  # as the generate asset makes them
            records = [{"pair_id": f"{request.request_id}#q{index:02d}", **pair_record(pair),
                        "chunk_text": request.text, "chunk_language": None,
                        "source_texts": [chunk_of[c].text for c in pair.source_chunk_ids]}
                       for index, pair in enumerate(pairs, 1)]
            return pairs_to_judge(records, config)

        before = server_stats()
        started = time.perf_counter()
        outcome, judged = backend.generate_and_judge(requests, judge_requests_for)
        generate_wall = time.perf_counter() - started
        after_generate = server_stats()

        # The curate step: records as curate.load_items builds them.
        by_document: dict[str, list[dict]] = defaultdict(list)
        counters: Counter = Counter()
        for pair in outcome.pairs:
            counters[pair.chunk_id] += 1
            document = document_of[pair.chunk_id]
            record = {"pair_id": f"{pair.chunk_id}#q{counters[pair.chunk_id]:02d}", "title": document.title,
                      **pair_record(pair), "chunk_text": chunk_of[pair.chunk_id].text}
            sources = json.loads(record["source_chunk_ids"])
            if pair.task == "multi_hop":
                record["source_texts"] = [chunk_of[c].body for c in sources]
                record["chunk_text"] = "\n\n".join(chunk_of[c].text for c in sources)
            if pair.task == "unanswerable":
                record["document_text"] = "\n".join(c.body for c in document.chunks)
            by_document[document.document_id].append(record)
        started = time.perf_counter()
        to_judge = {}
        for records in by_document.values():
            languages = pair_languages(records)
            for record, language in zip(records, languages):
                record["language"] = language
            to_judge.update((r.pair_id, r) for r in pairs_to_judge(records, config))
        curate_judged = backend.judge(list(to_judge.values())) if to_judge else None
        curate_wall = time.perf_counter() - started
        after_curate = server_stats()
        scores = curate_judged.scores if curate_judged else {}
        items = []
        for records in by_document.values():
            reasons = filter_pairs(records, config, judge_scores=[scores.get(r["pair_id"], (None, ""))[0]
                                                                   for r in records])
            for record, why in zip(records, reasons):
                record["reject_reasons"] = why
                record["judge_score"] = scores.get(record["pair_id"], (None, ""))[0]
                items.append(record)

    sequences = after_generate["total_sequence_s"] - before["total_sequence_s"]
    ideal = sequences / slots
    planted = after_curate["planted"]
    mistakes = defaultdict(lambda: {"planted": 0, "rejected": 0, "rejected_with_code": 0})
    missed = []
    for item in items:
        question = item["question"]
        kind = planted.get(sim_server.planted_key(_one_line(item["title"]), item["task"], question, item["answer"]))
        if kind is None:
            continue
        code = sim_server.MISTAKE_REASONS[(item["task"], kind)]
        row = mistakes[f"{item['task']}: {kind}"]
        row["code"] = code
        row["planted"] += 1
        row["rejected"] += bool(item["reject_reasons"])
        row["rejected_with_code"] += code in item["reject_reasons"]
        if code not in item["reject_reasons"] and len(missed) < 10:
            missed.append({"task": item["task"], "mistake": kind, "question": question, "answer": item["answer"],
                           "turns": item.get("turns"), "reasons": item["reject_reasons"]})
    for row in mistakes.values():
        row["recall_code"] = round(row["rejected_with_code"] / row["planted"], 3)
        row["recall_any"] = round(row["rejected"] / row["planted"], 3)
    per_task = defaultdict(lambda: {"generated": 0, "kept": 0, "rejections": Counter()})
    for item in items:
        row = per_task[item["task"]]
        row["generated"] += 1
        row["kept"] += not item["reject_reasons"]
        row["rejections"].update(item["reject_reasons"])
    kept_hops = [i for i in items if i["task"] == "multi_hop" and not i["reject_reasons"]]
    one_excerpt = [i for i in kept_hops if sim_server.answerable_from_one_excerpt(i["answer"], i["source_texts"])]
    curate_requests = after_curate["requests"] - after_generate["requests"]
    return {
        "documents": len(documents),
        "requests": len(requests),
        "requests_per_task": dict(Counter(r.task for r in requests)),
        "planned_items": dict(planned),
        "documents_short_of": dict(shortfalls),
        "items": len(items),
        "generation_failures": len(outcome.failures),
        "judged_while_generating": judged.stats.get("judged_while_generating", 0),
        "generate_wall_s": round(generate_wall, 3),
        "generate_ideal_wall_s": round(ideal, 3),
        "efficiency": round(ideal / generate_wall, 3) if generate_wall else 0.0,
        "server_sequences_generate": after_generate["sequences"] - before["sequences"],
        "server_peak_active": after_generate["peak_active"],
        "curate_judge_requests": len(to_judge),
        "curate_judge_cache_hits": curate_judged.stats.get("judge_cache_hits", 0) if curate_judged else 0,
        "curate_server_requests": curate_requests,
        "curate_judge_wall_s": round(curate_wall, 3),
        "per_task": {task: {**row, "kept_share": round(row["kept"] / row["generated"], 3) if row["generated"] else 0,
                            "rejections": dict(row["rejections"].most_common())}
                     for task, row in sorted(per_task.items())},
        "planted_mistakes": dict(sorted(mistakes.items())),
        "missed_mistakes": missed,
        "kept_multi_hop": len(kept_hops),
        "kept_multi_hop_one_excerpt": len(one_excerpt),
        "kept_multi_hop_one_excerpt_share": round(len(one_excerpt) / len(kept_hops), 3) if kept_hops else 0.0,
        "server_mistakes": after_curate["mistakes"],
        "server_outcomes": after_curate["outcomes"],
        "_items": items,
        "_planted": planted,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument("--mistake", type=float, default=0.2, help="fraction of each sim mistake kind")
    parser.add_argument("--slots", type=int, default=32)
    parser.add_argument("--ttft", type=float, default=0.05)
    parser.add_argument("--tpot", type=float, default=0.002)
    parser.add_argument("--output-tokens", type=int, default=100)
    parser.add_argument("--max-concurrency", type=int, default=64, help="the backend's default")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    documents, chunker = pipeline_corpus()
    print(f"corpus: {len(documents)} documents, {sum(len(d.chunks) for d in documents)} chunks ({chunker})")

    planted = planted_benchmark(documents)
    print("\n(a) planted defects, filter_pairs (judge off)\n")
    print("| defect | code | items | recall | flagged | precision | >= 0.9 |")
    print("|---|---|---|---|---|---|---|")
    for row in planted["defects"]:
        print(f"| {row['defect']} | {row['code']} | {row['items']} | {row['recall']} | {row['flagged_with_code']} | "
              f"{row['precision']} | {'yes' if row['meets_target'] else 'NO'} |")
    print("\ngood items kept: " + ", ".join(f"{k} {v['kept']}/{v['items']}" for k, v in planted["good_items"].items()))

    mistakes = {name: args.mistake for name in ("invented_sentence", "ignored_follow_up", "single_chunk_hop",
                                                "answerable_unanswerable", "unsupported_step", "bad_quote")}
    base_url, stats, stop = sim_server.start_server_process(
        slots=args.slots, ttft=args.ttft, tpot=args.tpot, output_tokens=args.output_tokens, **mistakes)
    try:
        e2e = end_to_end(copies_of(documents, args.documents), base_url, stats, slots=args.slots,
                         max_concurrency=args.max_concurrency)
    finally:
        stop()
    e2e.pop("_items")
    e2e.pop("_planted")
    print(f"\n(b) end to end: {e2e['documents']} documents, {e2e['requests']} requests "
          f"({e2e['requests_per_task']}), {e2e['items']} items, judge on, sim mistakes {args.mistake} each\n")
    print("| task | generated | kept | kept share | top rejections |")
    print("|---|---|---|---|---|")
    for task, row in e2e["per_task"].items():
        top = ", ".join(f"{k} {v}" for k, v in list(row["rejections"].items())[:4])
        print(f"| {task} | {row['generated']} | {row['kept']} | {row['kept_share']} | {top} |")
    print("\n| sim mistake | planted | rejected | rejected with its code | code |")
    print("|---|---|---|---|---|")
    for name, row in e2e["planted_mistakes"].items():
        print(f"| {name} | {row['planted']} | {row['recall_any']} | {row['recall_code']} | {row['code']} |")
    print(f"\nkept multi_hop answerable from one excerpt: {e2e['kept_multi_hop_one_excerpt']}/{e2e['kept_multi_hop']}"
          f" = {e2e['kept_multi_hop_one_excerpt_share']} (target <= 0.2)")
    print(f"generate step (judge overlapped): wall {e2e['generate_wall_s']} s, ideal {e2e['generate_ideal_wall_s']} s,"
          f" efficiency {e2e['efficiency']} (target >= 0.85); peak active {e2e['server_peak_active']}/{args.slots}")
    print(f"curate step judge: {e2e['curate_judge_requests']} requests, {e2e['curate_judge_cache_hits']} cache hits, "
          f"{e2e['curate_server_requests']} sent to the server, {e2e['curate_judge_wall_s']} s")
    targets = {
        "planted recall and precision >= 0.9 per kind": all(r["meets_target"] for r in planted["defects"]),
        "kept multi_hop answerable from one excerpt <= 0.2": e2e["kept_multi_hop_one_excerpt_share"] <= 0.2,
        "efficiency >= 0.85": e2e["efficiency"] >= 0.85,
    }
    print(f"targets: {targets}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "setup": {"corpus_documents": len(documents), "corpus_chunks": sum(len(d.chunks) for d in documents),
                  "chunker": chunker, "tasks": TASK_SHARES, "sim_mistake_fraction": args.mistake,
                  "slots": args.slots, "ttft": args.ttft, "tpot": args.tpot, "output_tokens": args.output_tokens,
                  "client_max_concurrency": args.max_concurrency, "python": platform.python_version(),
                  "cpus": os.cpu_count()},
        "planted": planted,
        "end_to_end": e2e,
        "targets_met": targets,
    }, indent=2, default=str) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
