"""A simulated OpenAI-compatible chat server that behaves like one GPU.

Continuous batching is modelled as S slots (an asyncio.Semaphore): at most S sequences
run at once, each takes ttft + output_tokens * tpot seconds, and further requests wait
for a slot. Replies are schema-valid question-answer JSON built from the sentences of
the <document> block of the prompt, so the backend's parser sees realistic text.

Faults are injected by fraction (HTTP 500, 429, malformed text, truncated JSON, empty
replies, stalls past the client's timeout, dropped connections, messy-but-repairable
JSON, a reply computed and then cut off by a dropped connection). The choice is a hash of the request's messages and how many times this server
has seen them, so a run is reproducible and a retry of the same request can succeed.

Requests of the tasks beyond qa (reasoning, multi_hop, conversation, unanswerable; the
schema name "<task>_items_<n>" or the prompt says which) get {"items": [...]} built from
the same sentences, with the mistakes real models make planted by fraction
(TASK_MISTAKES, recorded in /stats); the judge follows the task rubrics.

Plain asyncio streams, no framework: a dropped connection is a real closed socket.
Binds to 127.0.0.1 only; the CLI server exits after --max-seconds, and idle
connections are closed after --idle-timeout.

    python benchmarks/sim_server.py --port 8011 --slots 32 --ttft 0.05 --tpot 0.002
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import httpx

QUESTION_TYPES = ("factual", "how", "why", "compare", "explain")
# Fault kinds in the order their fractions are stacked on [0, 1).
FAULTS = ("fail_500", "fail_429", "malformed", "truncated", "empty", "stall", "drop", "messy",
          "answer_drop", "wrong_types")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error"}


@dataclass
class SimConfig:
    slots: int = 32
    ttft: float = 0.05  # seconds to the first token
    tpot: float = 0.002  # seconds per output token
    output_tokens: int = 100
    model: str = "sim-model"
    api_key: str | None = None  # when set, requests need "Authorization: Bearer <key>"
    reject_response_format: bool = False  # answer 400 to response_format, like old servers
    fail_500: float = 0.0
    fail_429: float = 0.0
    malformed: float = 0.0  # prose, no JSON: unparseable
    truncated: float = 0.0  # JSON cut at 70%, finish_reason "length": last pair lost
    empty: float = 0.0
    stall: float = 0.0  # answer only after stall_s (past the client's timeout)
    drop: float = 0.0  # close the connection without answering
    messy: float = 0.0  # code fences and a trailing comma: repairable
    # Compute the reply, then drop the connection half way through sending it: the work
    # is done (a slot was held), the reply lost, as when a server dies while answering.
    answer_drop: float = 0.0
    # Schema violations in a reply that parses: fields left out, null, or of the wrong type
    # (an answer that is a number, quotes that are a string or null, a turn without its user).
    wrong_types: float = 0.0
    # Deterministic per-chunk faults for tests: a document containing the marker always
    # gets a malformed reply, or always an HTTP 400 ("prompt too long").
    malformed_marker: str | None = None
    bad_request_marker: str | None = None
    # Like malformed_marker, but only when sampled greedily (temperature 0 or unset): a
    # greedy engine repeats its bad reply whatever the seed; any temperature escapes it.
    greedy_marker: str | None = None
    # Put the received Authorization header into error bodies, like a careless proxy:
    # the client must scrub it from what it logs.
    echo_auth_in_errors: bool = False
    stall_s: float = 30.0
    retry_after: float | None = None  # Retry-After header on 429
    fault_seed: int = 0
    idle_timeout_s: float = 60.0
    # Mistakes real models make in the items of the tasks beyond qa (issue 26), each a
    # fraction of items (drawn per item from a hash of the request and fault_seed, so a
    # run is reproducible); see TASK_MISTAKES.
    invented_sentence: float = 0.0  # an answer / assistant turn: a true sentence plus an invented one
    ignored_follow_up: float = 0.0  # conversation: a later user turn about something unrelated
    single_chunk_hop: float = 0.0  # multi_hop: the answer comes from one excerpt alone
    answerable_unanswerable: float = 0.0  # unanswerable: a question a sentence of the excerpt answers
    unsupported_step: float = 0.0  # reasoning: a step that is not in the source
    bad_quote: float = 0.0  # any item (qa too): a quote that does not occur in the source (words reordered)
    # Closed-book requests (the question alone, no <document>; preference pairs): this share
    # is answered by recalling the sentence seen in an earlier request that best matches the
    # question (right or wrong place, as a model's memory is); the rest confabulate: the
    # question's subject with an invented claim, plausible and supported by no source.
    closed_book_recall: float = 0.3
    # Leave `usage` out of every reply, as some servers do: the client counts the tokens.
    no_usage: bool = False


class SimStats:
    """Counters of one server; read them with snapshot() from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0  # HTTP requests to /v1/chat/completions
            self.outcomes: Counter[str] = Counter()
            self.active = 0  # sequences holding a slot
            self.peak_active = 0
            self.in_flight = 0  # chat requests received and not yet answered
            self.peak_in_flight = 0
            self.sequences = 0
            self.total_sequence_s = 0.0  # nominal GPU time: sum of ttft + tokens * tpot
            self.total_slot_s = 0.0  # measured time slots were held
            self.documents: Counter[str] = Counter()  # sha256 of the <document> text
            # ... of the requests answered with a usable reply (ok, messy or truncated):
            # a count above 1 is a generation done twice.
            self.answered: Counter[str] = Counter()
            self.with_response_format = 0
            self.authorization_ok = 0
            # Wall clock (time.time()) of the first chat request and the last answer:
            # the span a pipeline kept this server, busy or idle.
            self.first_request_at: float | None = None
            self.last_answer_at: float | None = None
            # Task items written (by task) and the mistakes planted in them: by kind, and
            # by planted_key(title, task, question, answer) -> kind.
            self.task_items: Counter[str] = Counter()
            self.mistakes: Counter[str] = Counter()
            self.planted: dict[str, str] = {}
            # Closed-book answers by kind: recalled (a sentence seen before) or confabulated.
            self.closed_book: Counter[str] = Counter()
            # The usage of every reply sent with a body (what a hosted API would bill).
            self.prompt_tokens = 0
            self.completion_tokens = 0

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "outcomes": dict(self.outcomes),
                "active": self.active,
                "peak_active": self.peak_active,
                "in_flight": self.in_flight,
                "peak_in_flight": self.peak_in_flight,
                "sequences": self.sequences,
                "total_sequence_s": round(self.total_sequence_s, 4),
                "total_slot_s": round(self.total_slot_s, 4),
                "documents": dict(self.documents),
                "answered": dict(self.answered),
                "with_response_format": self.with_response_format,
                "authorization_ok": self.authorization_ok,
                "first_request_at": self.first_request_at,
                "last_answer_at": self.last_answer_at,
                "task_items": dict(self.task_items),
                "mistakes": dict(self.mistakes),
                "planted": dict(self.planted),
                "closed_book": dict(self.closed_book),
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
            }


def document_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def document_text(messages: list[dict[str, Any]]) -> str:
    """The text between <document> and </document> of the last user message."""
    user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    content = user.get("content") or ""
    if not isinstance(content, str):  # list-of-parts content
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    start, end = content.find("<document>"), content.rfind("</document>")
    if start == -1 or end == -1 or end < start:
        return content.strip()
    return content[start + len("<document>") : end].strip()


def _pairs_wanted(body: dict[str, Any], messages: list[dict[str, Any]]) -> int:
    try:
        schema = body["response_format"]["json_schema"]["schema"]
        return int(schema["properties"]["pairs"]["minItems"])
    except (KeyError, TypeError, ValueError):
        pass
    text = " ".join(str(m.get("content", "")) for m in messages)
    match = re.search(r"Write (\d+) question", text)
    return int(match.group(1)) if match else 3


_WRONG = (("question_type", None), ("difficulty", "hard"), ("quotes", None), ("answer", 42), ("quotes", "a string"),
          ("reasoning", ["a", 1]), ("excerpts", "1 and 2"), ("question", None), ("turns", [{"user": None}]))


def broken_types(reply: dict[str, Any]) -> dict[str, Any]:
    """A reply whose items have, in turn, a field left out and one null or of the wrong
    type: what a model without structured output sends."""
    for index, item in enumerate(reply.get("pairs") or reply.get("items") or []):
        left_out, _ = _WRONG[index % len(_WRONG)]
        item.pop(left_out, None)
        field, value = _WRONG[(index + 3) % len(_WRONG)]
        item[field] = value
    return reply


def garbled(quote: str) -> str:
    """A quote that does not occur: its words in another order, as a model that
    misremembers its source writes them (no fuzzy match finds it)."""
    words = quote.split()
    return " ".join(words[1::2] + words[::2]) if len(words) > 2 else f"{quote} (paraphrased)"


# Sentence ends, a citation mark after one ("day.[12] The") included.
_QUOTE_SPLIT = re.compile(r"(?<=[.!?])\s+|(?<=[.!?]\])\s+|(?<=\d\])\s+(?=[A-Z])")


def quotes_for(texts: list[str], document: str) -> list[str]:
    """The sentences of what an item states that its source holds (citation marks aside):
    what a careful model quotes. An invented sentence is in no source, so it is never
    quoted; a statement with no such sentence quotes its first 200 characters."""
    source = " ".join(_CITATION.sub("", document).split())
    # A line the source holds whole is quoted whole (a reference entry has full stops that
    # are not sentence ends); others sentence by sentence.
    stated = [" ".join(s.split()) for text in texts for line in text.splitlines()
              for s in ([line] if " ".join(line.split()) in source else _QUOTE_SPLIT.split(line))]
    stated = [s.split(": ", 1)[1] if s.startswith(("Step ", "What they say about ")) and ": " in s else s
              for s in stated]
    quotes = [s for s in dict.fromkeys(stated) if len(s) >= 20 and s in source]
    return quotes or [" ".join(texts[0].split())[:200]]


def build_pairs(document: str, n_pairs: int, bad_quote: float = 0.0, seed: int = 0) -> list[dict[str, str]]:
    """Pairs whose answers are sentences of the document, each quoting its sentence (or,
    for a `bad_quote` share drawn by hash, a garbled quote)."""
    sentences = [s.strip() for s in _SENTENCE_END.split(document) if len(s.strip()) >= 20]
    if not sentences:
        sentences = [line.strip() for line in document.splitlines() if line.strip()] or [
            "The document is empty."
        ]
    pairs = []
    for i in range(n_pairs):
        sentence = sentences[i % len(sentences)]
        topic = " ".join(sentence.split()[:3])  # short: an answer is more than its question
        pairs.append({
            # Not "what does the document say": the curate rules reject passage-dependent questions.
            "question": f"What is known about {topic} (point {i + 1})?",
            "answer": sentence,
            "question_type": QUESTION_TYPES[i % len(QUESTION_TYPES)],
            "quotes": [sentence],
        })
        draw = int.from_bytes(hashlib.sha256(f"{seed}|quote|{sentence}|{i}".encode()).digest()[:8], "big") / 2**64
        if draw < bad_quote:
            pairs[-1]["quotes"] = [garbled(sentence)]
    return pairs


_JUDGE_PART = re.compile(r"<<<(SOURCE|QUESTION|ANSWER)\n(.*?)\n\1>>>", re.DOTALL)

# -- the tasks beyond qa (synth_assets.generation.task_prompts) ------------------------

TASKS = ("reasoning", "multi_hop", "conversation", "unanswerable")
# The mistakes that can befall an item of each task, stacked in this order on [0, 1).
TASK_MISTAKES = {
    "reasoning": ("invented_sentence", "unsupported_step", "bad_quote"),
    "multi_hop": ("invented_sentence", "single_chunk_hop", "bad_quote"),
    "conversation": ("invented_sentence", "ignored_follow_up", "bad_quote"),
    "unanswerable": ("invented_sentence", "answerable_unanswerable", "bad_quote"),
}
# The curation reason code meant to catch each mistake (synth_assets.core.task_rules and
# filters): an invented sentence leaves an answer (or a turn) unsupported by its source.
MISTAKE_REASONS = {
    ("reasoning", "invented_sentence"): "ungrounded",
    ("multi_hop", "invented_sentence"): "ungrounded",
    ("conversation", "invented_sentence"): "ungrounded_turn",
    ("unanswerable", "invented_sentence"): "ungrounded",
    ("reasoning", "unsupported_step"): "reasoning_unsupported",
    ("multi_hop", "single_chunk_hop"): "single_chunk_answerable",
    ("conversation", "ignored_follow_up"): "unrelated_follow_up",
    ("unanswerable", "answerable_unanswerable"): "answerable_unanswerable",
    **{(task, "bad_quote"): "citation_invalid" for task in ("reasoning", "multi_hop", "conversation", "unanswerable")},
}
# What the prompts of task_prompts.py say, for a request sent without response_format.
_TASK_PROMPT_WORDS = (
    ("multi_hop", re.compile(r"\[Excerpt 1\]|combining facts from at least two")),
    ("conversation", re.compile(r"conversation\(s\) between a user and an assistant")),
    ("unanswerable", re.compile(r"does NOT answer")),
    ("reasoning", re.compile(r"steps of reasoning")),
)
_SCHEMA_NAME = re.compile(r"^(reasoning|multi_hop|conversation|unanswerable)_items_(\d+)$")
_EXCERPT = re.compile(r"^\[Excerpt (\d+)\]\n", re.MULTILINE)
_TITLE = re.compile(r"^Document title: (.*)$", re.MULTILINE)
_WORD = re.compile(r"[a-z0-9]+")
_SMALL_WORDS = frozenset(
    "a an the of in on at to for from by with and or but is are was were be been being it its this that "
    "these those they them their there as not no what who when where which why how does did do has have had "
    "can could would should will about into than then also more most some any each other such".split())
# Invented claims: none of their words is in an ordinary document.
_INVENTED = (
    "a committee in Valparaiso later catalogued eighteen copper ledgers about it",
    "the Quillfeather survey of 1874 recorded its annual upkeep at nine hundred florins",
    "archivists in Tromsø moved the original manuscripts to a vault beneath the harbour",
    "a later treaty signed in Windhoek renamed the whole arrangement after a glassmaker",
    "its founders held a midsummer banquet each year on a barge near Linz",
)
# Questions about something else entirely (no word in common with a document about ducks,
# databases or word processors, and none that points back to an earlier turn).
_OFF_TOPIC = (
    "Which planet has the largest number of known moons?",
    "How long should sourdough bread rest before baking?",
    "Who won the football championship in Montevideo in 1930?",
    "What is the best way to tune a violin string?",
    "How deep is Lake Baikal at the deepest point?",
    "Which composer wrote the opera Carmen?",
    "How many calories does a banana contain?",
)
# One content word each beside the subject: two questions about different subjects
# are not near-duplicates (synth_assets.core.dedup).
_ABSENT_ATTRIBUTES = (
    "Who funded {x}?",
    "Who patented {x}?",
    "What did {x} cost?",
    "Who sponsored {x}?",
    "When was {x} insured?",
    "Who photographed {x}?",
    "Where is {x} archived?",
    "Who audited {x}?",
)
_CITATION = re.compile(r"^(?:\[\s*\d+\s*\]\s*)+")
_FUNCTION_WORDS = frozenset("the a an of in on is are was were to and for with as by that from".split())


def task_wanted(body: dict[str, Any], messages: list[dict[str, Any]]) -> str | None:
    """The task a generation request asks for: from the response_format schema name
    ("<task>_items_<n>"), else from the prompt's words; None for qa (and judging)."""
    try:
        match = _SCHEMA_NAME.match(body["response_format"]["json_schema"]["name"])
        return match.group(1) if match else None
    except (KeyError, TypeError):
        pass
    user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    text = str(user.get("content") or "")
    head = text.split("<document>", 1)[0]  # the ask, not the data
    for task, words in _TASK_PROMPT_WORDS:
        if words.search(head if task != "multi_hop" else text):
            return task
    return None


def _items_wanted(body: dict[str, Any], messages: list[dict[str, Any]]) -> int:
    try:
        return int(body["response_format"]["json_schema"]["schema"]["properties"]["items"]["minItems"])
    except (KeyError, TypeError, ValueError):
        pass
    text = " ".join(str(m.get("content", "")) for m in messages)
    match = re.search(r"Reply with exactly (\d+) items|Write (\d+) (?:question|conversation)", text)
    return int(match.group(1) or match.group(2)) if match else 1


def prompt_title(messages: list[dict[str, Any]]) -> str:
    user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    match = _TITLE.search(str(user.get("content") or "").split("<document>", 1)[0])
    return match.group(1).strip() if match else ""


def planted_key(title: str, task: str, question: str, answer: str) -> str:
    """How SimStats.planted names an item: its document's title, task, (first) question
    and the start of its (first) answer."""
    return f"{title}|{task}|{question}|{answer[:80]}"


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _SMALL_WORDS and len(w) > 2}


def is_prose(sentence: str) -> bool:
    """Eight words or more, two of them function words, not mostly capitalised (not a
    reference or a list entry), ending as a sentence ends."""
    words = sentence.split()
    return (sum(w.isalpha() for w in words) >= 8 and sentence[-1:] in ".!?" and sentence[:1].isupper()
            and sum(w.lower() in _FUNCTION_WORDS for w in words) >= 2
            and sum(w[:1].isupper() for w in words) <= len(words) / 2)


def task_sentences(text: str) -> list[str]:
    """The sentences an item may be built from: whole sentences of prose (eight words or
    more, two of them function words, not mostly capitalised: not a reference), line by
    line, citation marks before them ("[ 5 ] ") left out. A short first line (up to 500
    characters) is left out when the others have sentences: in a chunk with overlap it
    is the tail of the chunk before, often cut mid-sentence."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]

    def of(lines_: list[str]) -> list[str]:
        found = []
        for line in lines_:
            for sentence in _SENTENCE_END.split(line.lstrip("#*->0123456789. ")):
                sentence = _CITATION.sub("", " ".join(sentence.split()))
                if is_prose(sentence):
                    found.append(sentence)
        return found

    body = lines[1:] if len(lines) > 1 and len(lines[0]) <= 500 else lines
    # No prose: the lines of the body as they are (a reference list, a table).
    return of(body) or of(lines) or [" ".join(line.split()) for line in body if len(line.split()) >= 5][:8] or [
        " ".join(text.split())[:300] or "The document is empty."]


def _phrase(sentence: str, words: int = 6) -> str:
    """The opening words of a sentence, for a question about it."""
    parts = [w.strip(",;:()\"'.!?") for w in sentence.split()[:words]]
    parts = [w for w in parts if w]
    if parts and parts[0][:1].isupper() and parts[0][1:].islower():
        parts[0] = parts[0].lower()
    return " ".join(parts)


def _invented(true_sentence: str, index: int) -> str:
    """An invented sentence about as long as the true one it follows."""
    clauses, n = [], 0
    while n < max(10, len(true_sentence.split())):
        clause = _INVENTED[(index + len(clauses)) % len(_INVENTED)]
        clauses.append(clause)
        n += len(clause.split())
    text = ", and ".join(clauses)
    return text[0].upper() + text[1:] + "."


def _subject(sentences: list[str], index: int) -> tuple[str, str]:
    """(a named subject, a sentence naming it): the capitalised words (one or more in a
    row) first found inside a sentence."""
    for offset in range(len(sentences)):
        sentence = sentences[(index + offset) % len(sentences)]
        names = re.findall(r"(?<=[a-z,;] )[A-Z][A-Za-z0-9-]{2,}(?: [A-Z][A-Za-z0-9-]+)*", sentence)
        if names:
            return names[0], sentence
    sentence = sentences[index % len(sentences)]
    return _phrase(sentence, 3), sentence


def build_task_items(task: str, document: str, mistakes: list[str | None]
                     ) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Schema-valid items of `task` built from the <document> block (a multi-hop one's
    [Excerpt N] sections), one per entry of `mistakes` (None: a good item). Returns the
    items and (question, first answer, mistake) for each planted mistake."""
    items: list[dict[str, Any]] = []
    planted: list[tuple[str, str, str]] = []
    asked: set[str] = set()
    if task == "multi_hop":
        parts = _EXCERPT.split(document)
        excerpts = [task_sentences(parts[i + 1]) for i in range(1, len(parts) - 1, 2)] or [
            task_sentences(document)]
    sentences = task_sentences(document) if task != "multi_hop" else excerpts[0]
    for index, mistake in enumerate(mistakes):
        difficulty = 2 + index % 3
        if task == "reasoning":
            start = (2 * index) % max(1, len(sentences))
            steps = [sentences[(start + k) % len(sentences)] for k in range(min(2, len(sentences)))]
            if mistake == "unsupported_step":
                steps.insert(1, _invented(steps[0], index))
            answer = sentences[(start + len(steps)) % len(sentences)] if len(sentences) > 2 else steps[-1]
            if mistake == "invented_sentence":
                answer = f"{answer} {_invented(answer, index)}"
            question = f"How does {_phrase(steps[0])} lead to {_phrase(answer, 5)}?"
            items.append({"question": question, "answer": answer,
                          "question_type": ("causal", "procedural", "inferential")[index % 3],
                          "difficulty": difficulty,
                          "reasoning": "\n".join(f"Step {k}: {step}" for k, step in enumerate(steps, 1))})
        elif task == "multi_hop":
            first = excerpts[0][index % len(excerpts[0])]
            # A careful model: the sentence of another excerpt that adds the most words
            # the first excerpt lacks.
            known = set().union(*(_words(s) for s in excerpts[0]))
            best, used = None, [1, 2]
            for number, others in enumerate(excerpts[1:], 2):
                for sentence in others:
                    gain = len(_words(sentence) - known)
                    if best is None or gain > best[0]:
                        best, used = (gain, sentence), [1, number]
            second = best[1] if best else excerpts[0][(index + 1) % len(excerpts[0])]
            if mistake == "single_chunk_hop":  # both facts from the first excerpt
                second = excerpts[0][(index + 1) % len(excerpts[0])]
            answer = f"{first} {second}" if second != first else first
            if mistake == "invented_sentence":
                answer = f"{answer} {_invented(second, index)}"
            question = f"How is {_phrase(first, 5)} connected to {_phrase(second, 5)}?"
            items.append({"question": question, "answer": answer,
                          "question_type": ("bridge", "comparison")[index % 2],
                          "difficulty": difficulty, "excerpts": used})
        elif task == "conversation":
            count = max(3, min(5, len(sentences)))
            start = (count * index) % max(1, len(sentences))
            chosen = [sentences[(start + k) % len(sentences)] for k in range(count)]
            turns = [{"user": f"What can you tell me about {_phrase(chosen[0])}?", "assistant": chosen[0]}]
            turns += [{"user": f"And what else is there about {_phrase(sentence, 4)}?", "assistant": sentence}
                      for sentence in chosen[1:]]
            if mistake == "invented_sentence":
                turn = turns[1 + index % (count - 1)]
                turn["assistant"] = f"{turn['assistant']} {_invented(turn['assistant'], index)}"
            if mistake == "ignored_follow_up":
                vocabulary = _words(document)
                off = next((q for k in range(len(_OFF_TOPIC))
                            if not _words(q := _OFF_TOPIC[(index + k) % len(_OFF_TOPIC)]) & vocabulary),
                           _OFF_TOPIC[index % len(_OFF_TOPIC)])
                turns[1 + index % (count - 1)]["user"] = off
            question = turns[0]["user"]
            items.append({"turns": turns, "difficulty": difficulty})
        else:  # unanswerable
            subject, about = _subject(sentences, index)
            if mistake == "answerable_unanswerable":  # the excerpt answers it after all
                answered = sentences[(index + 1) % len(sentences)]
                question = f"Is it so that {_phrase(answered, 20)}?"
                missing = _phrase(answered, 20)
            else:
                question = _ABSENT_ATTRIBUTES[index % len(_ABSENT_ATTRIBUTES)].format(x=subject)
                missing = question.rstrip("?")
            says = about
            if mistake == "invented_sentence":
                says = f"{about} {_invented(about, index)}"
            answer = (f"The documents do not say {missing[0].lower()}{missing[1:]}. "
                      f"What they say about {subject}: {says}")
            items.append({"question": question, "answer": answer,
                          "question_type": "missing_fact", "difficulty": difficulty, "missing": missing})
        if question in asked:  # few sentences: the same question twice would be one item
            question = f"{question[:-1]}, in other words?"
            if task == "conversation":
                items[-1]["turns"][0]["user"] = question
            else:
                items[-1]["question"] = question
        asked.add(question)
        item = items[-1]
        stated = ([t["assistant"] for t in item["turns"]] if task == "conversation"
                  else [item["answer"], item.get("reasoning", "")])
        item["quotes"] = quotes_for(stated, document)
        if mistake == "bad_quote":
            item["quotes"][0] = garbled(item["quotes"][0])
        if mistake is not None:
            first = items[-1]["turns"][0]["assistant"] if task == "conversation" else items[-1]["answer"]
            planted.append((question, first, mistake))
    return items, planted


def _claims(task: str, answer: str) -> list[str]:
    """The sentences of a judged answer that state facts: labels ("Reasoning:", "Step 1:",
    "Answer:") removed, a conversation's user lines and an unanswerable answer's
    declining sentence and lead-in left out."""
    claims = []
    for line in answer.splitlines():
        line = line.strip()
        if task == "conversation" and line.startswith("User:"):
            continue
        line = re.sub(r"^(?:Reasoning|Answer|Assistant)\s*:\s*", "", line)
        line = re.sub(r"^Step \d+\s*:\s*", "", line)
        for sentence in _SENTENCE_END.split(line):
            sentence = sentence.strip()
            if not sentence:
                continue
            if task == "unanswerable":
                if re.match(r"(?i)the (documents?|sources?|excerpts?) do(es)? not say", sentence):
                    continue
                sentence = re.sub(r"(?i)^what they say about [^:]{1,80}:\s*", "", sentence)
            claims.append(sentence)
    return claims


def source_answers(question: str, source: str, share: float = 0.8) -> bool:
    """Whether a sentence of the source holds most of the question's words (the sim
    judge's reading of "the source answers the question")."""
    words = _words(question) - {"true", "known", "tell", "first", "exactly"}
    if len(words) < 2:
        return False
    return any(len(words & _words(sentence)) >= share * len(words)
               for line in source.splitlines() for sentence in _SENTENCE_END.split(line))


def answerable_from_one_excerpt(answer: str, excerpts: list[str]) -> bool:
    """Whether every claim of a multi-hop answer is found in one excerpt alone."""
    claims = [_normalise(c) for c in _claims("multi_hop", answer)]
    return bool(claims) and any(all(c in _normalise(e) for c in claims) for e in excerpts)


def _task_of_judge_prompt(prompt: str) -> str | None:
    for task, marker in (("reasoning", "- (reasoning)"), ("multi_hop", "- (multi-hop)"),
                         ("conversation", "- (conversation)"), ("unanswerable", "- (unanswerable)")):
        if marker in prompt.split("<<<SOURCE", 1)[0]:
            return task
    return None


def is_closed_book(body: dict[str, Any], messages: list[dict[str, Any]]) -> bool:
    """A closed-book request (synth_assets.generation.task_prompts): its schema name, or,
    without structured output, a question with no <document> block and the closed-book
    system prompt."""
    try:
        return body["response_format"]["json_schema"]["name"] == "closed_book_answer"
    except (KeyError, TypeError):
        pass
    system = next((str(m.get("content") or "") for m in messages if m.get("role") == "system"), "")
    return "from what you know" in system and not any("<document>" in str(m.get("content") or "")
                                                      for m in messages)


def closed_book_answer(question: str, memory: list[str], recall: float, seed: int = 0) -> tuple[str, str]:
    """(answer, kind) for a question asked without its source: `recall` of them (by a hash
    of the question) recall the remembered sentence sharing most words with the question
    ("recalled"); the others, or all when nothing shares a word, confabulate: the question's
    subject with an invented claim ("confabulated")."""
    digest = hashlib.sha256(f"{seed}|closed_book|{question}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    asked = _words(question)
    if draw < recall and memory:
        best = max(memory, key=lambda sentence: len(asked & _words(sentence)))
        if asked & _words(best):
            return best, "recalled"
    topic = re.sub(r"\([^)]*\)", "", question).strip(" ?")
    topic = re.sub(r"^(what is known about|what|how|why|when|who|which|where|explain|describe)\s+"
                   r"((is|are|was|were|does|do|did)\s+)?", "", topic, flags=re.IGNORECASE)
    topic = " ".join(topic.split()[:8]) or "it"
    clause = _INVENTED[digest[8] % len(_INVENTED)]
    return f"As for {topic}, {clause}; this is how it is usually described in general references.", "confabulated"


def judge_reply(prompt: str) -> dict[str, Any] | None:
    """A judge's reply to a judge prompt (synth_assets.core.judge), None for other prompts:
    9 when the answer appears in the source, 2 when it does not. With a task's rubric
    (judge.TASK_RUBRICS), each claim of the answer must appear in the source; a multi-hop
    answer found within one [Excerpt N] alone scores 2, and so does an unanswerable
    question that the source answers."""
    parts = dict(_JUDGE_PART.findall(prompt))
    if "SOURCE" not in parts or "ANSWER" not in parts:
        return None
    normalise = lambda text: " ".join(text.lower().split())  # noqa: E731
    task = _task_of_judge_prompt(prompt)
    source = parts["SOURCE"]
    # The claim-by-claim check the judge prompt asks for: the sentences not in the source.
    claims = _claims(task, parts["ANSWER"]) if task else _SENTENCE_END.split(parts["ANSWER"].strip())
    unsupported = [claim for claim in claims if claim.strip() and _normalise(claim) not in _normalise(source)]
    reply = _judge_verdict(task, parts, source, normalise)
    return {**reply, "unsupported": unsupported}


def _judge_verdict(task: str | None, parts: dict[str, str], source: str, normalise) -> dict[str, Any]:
    if task is None:
        if normalise(parts["ANSWER"]) in normalise(parts["SOURCE"]):
            return {"score": 9, "reason": "The answer is stated in the source."}
        return {"score": 2, "reason": "The source does not support the answer."}
    if task == "multi_hop":
        pieces = _EXCERPT.split(source)
        excerpts = [pieces[i + 1] for i in range(1, len(pieces) - 1, 2)]
        if len(excerpts) >= 2 and answerable_from_one_excerpt(parts["ANSWER"], excerpts):
            return {"score": 2, "reason": "One excerpt alone answers the question."}
    if task == "unanswerable" and source_answers(parts.get("QUESTION", ""), source):
        return {"score": 2, "reason": "The source does answer the question."}
    if all(_normalise(claim) in _normalise(source) for claim in _claims(task, parts["ANSWER"])):
        return {"score": 9, "reason": "Every claim is stated in the source."}
    return {"score": 2, "reason": "The source does not support every claim."}


class SimServer:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.stats = SimStats()
        self.port: int | None = None
        self._seen: Counter[str] = Counter()  # how often each request content came in
        # Sentences of the documents in the generation requests it has answered: what a
        # closed-book request may "remember" (a model's memory of what it read).
        self._memory: dict[str, None] = {}
        self._slots: asyncio.Semaphore | None = None
        self._server: asyncio.base_events.Server | None = None
        self._handlers: set[asyncio.Task] = set()
        self._stop: asyncio.Event | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._slots = asyncio.Semaphore(self.config.slots)
        self._stop = asyncio.Event()
        self._server = await asyncio.start_server(self._connection, host, port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def serve_until_stopped(self, max_seconds: float | None = None) -> None:
        assert self._stop is not None
        try:
            await asyncio.wait_for(self._stop.wait(), max_seconds)
        except asyncio.TimeoutError:
            pass
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    # -- HTTP -----------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._handlers.add(task)
        try:
            while True:  # keep-alive loop: ends on EOF, idle timeout, or a drop
                request = await asyncio.wait_for(_read_request(reader), self.config.idle_timeout_s)
                if request is None:
                    break
                if not await self._respond(*request, writer):
                    break
        except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError,
                asyncio.CancelledError):  # cancelled: the server is stopping
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _respond(self, method: str, path: str, headers: dict[str, str], body: bytes,
                       writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False closes the connection."""
        path = path.split("?", 1)[0]
        if method == "GET" and path == "/health":
            return await _send(writer, 200, {"status": "ok"})
        if method == "GET" and path == "/v1/models":
            return await _send(writer, 200, {"object": "list", "data": [
                {"id": self.config.model, "object": "model", "owned_by": "sim"}]})
        if method == "GET" and path == "/stats":
            return await _send(writer, 200, self.stats.snapshot())
        if method == "POST" and path == "/stats/reset":
            self.stats.reset()
            self._seen.clear()
            return await _send(writer, 200, {"reset": True})
        if method == "POST" and path == "/v1/chat/completions":
            return await self._chat(headers, body, writer)
        return await _send(writer, 404, {"error": {"message": f"no route {method} {path}"}})

    async def _chat(self, headers: dict[str, str], raw: bytes, writer: asyncio.StreamWriter) -> bool:
        config, stats = self.config, self.stats
        with stats._lock:
            stats.requests += 1
            if stats.first_request_at is None:
                stats.first_request_at = time.time()
            stats.in_flight += 1
            stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        try:
            if config.api_key is not None:
                if headers.get("authorization") != f"Bearer {config.api_key}":
                    message = "invalid api key"
                    if config.echo_auth_in_errors:
                        message += f": {headers.get('authorization')}"
                    return await self._error(writer, 401, message, "unauthorized")
                with stats._lock:
                    stats.authorization_ok += 1
            try:
                body = json.loads(raw)
                messages = body["messages"]
            except (ValueError, KeyError, TypeError):
                return await self._error(writer, 400, "body must be JSON with messages", "bad_request")
            if "response_format" in body:
                with stats._lock:
                    stats.with_response_format += 1
                if config.reject_response_format:
                    return await self._error(
                        writer, 400,
                        "response_format of type json_schema is not supported by this server",
                        "rejected_response_format")
            document = document_text(messages)
            with stats._lock:
                stats.documents[document_hash(document)] += 1
            if config.bad_request_marker and config.bad_request_marker in document:
                return await self._error(writer, 400, "prompt too long for the context window",
                                         "bad_request")
            fault = self._fault(messages)
            if config.malformed_marker and config.malformed_marker in document:
                fault = "malformed"
            if config.greedy_marker and config.greedy_marker in document and not body.get("temperature"):
                fault = "malformed"
            if fault == "drop":
                with stats._lock:
                    stats.outcomes["drop"] += 1
                return False
            if fault == "fail_500":
                message = "simulated server error"
                if config.echo_auth_in_errors:
                    message += f" (request had Authorization: {headers.get('authorization')})"
                return await self._error(writer, 500, message, "fail_500")
            if fault == "fail_429":
                extra = {} if config.retry_after is None else {"Retry-After": str(config.retry_after)}
                return await self._error(writer, 429, "simulated rate limit", "fail_429", extra)
            if fault == "stall":
                with stats._lock:
                    stats.outcomes["stall"] += 1
                await asyncio.sleep(config.stall_s)  # the client has given up by now
                fault = None  # if anyone is still listening, the reply is a good one

            output_tokens = config.output_tokens
            if isinstance(body.get("max_tokens"), int):
                output_tokens = min(output_tokens, body["max_tokens"])
            await self._run_sequence(output_tokens)

            closed_book = is_closed_book(body, messages)
            judged = None if closed_book else judge_reply(document)
            task = None if judged is not None or closed_book else task_wanted(body, messages)
            if closed_book:
                question = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
                answer, kind = closed_book_answer(question, list(self._memory), config.closed_book_recall,
                                                  config.fault_seed)
                with stats._lock:
                    stats.closed_book[kind] += 1
                content = json.dumps({"answer": answer})
            elif judged is not None:
                content = json.dumps(judged)
            elif task is not None:
                self._memory.update(dict.fromkeys(task_sentences(document)))
                content = json.dumps({"items": self._task_items(task, document, body, messages)})
            else:
                self._memory.update(dict.fromkeys(task_sentences(document)))
                content = json.dumps({"pairs": build_pairs(document, _pairs_wanted(body, messages),
                                                           self.config.bad_quote, self.config.fault_seed)})
            finish = "stop"
            if fault == "malformed":
                content = "Sure! Here are some questions about the text, what it says and why it matters."
            elif fault == "truncated":
                content, finish = content[: int(len(content) * 0.7)], "length"
            elif fault == "empty":
                content = ""
            elif fault == "messy":
                content = "```json\n" + content[:-2] + ",]}\n```"  # trailing comma, fenced
            elif fault == "wrong_types":
                content = json.dumps(broken_types(json.loads(content)))
            words = sum(len(str(m.get("content", "")).split()) for m in messages)
            prompt_tokens = round(words * 1.3)
            with stats._lock:
                stats.outcomes[fault or "ok"] += 1
                stats.prompt_tokens += prompt_tokens
                stats.completion_tokens += output_tokens
                if fault in (None, "messy", "truncated", "wrong_types"):
                    stats.answered[document_hash(document)] += 1
            if fault == "answer_drop":
                await _send(writer, 200, {"choices": [{"message": {"content": content}}]}, cut=True)
                return False
            reply = {
                "id": f"chatcmpl-sim-{stats.requests}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": config.model,
                "choices": [{"index": 0, "finish_reason": finish,
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": output_tokens,
                          "total_tokens": prompt_tokens + output_tokens},
            }
            if config.no_usage:
                del reply["usage"]
            return await _send(writer, 200, reply)
        finally:
            with stats._lock:
                stats.in_flight -= 1
                stats.last_answer_at = time.time()

    def _task_items(self, task: str, document: str, body: dict[str, Any],
                    messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The items of a task request, each with the mistake its hash draw gives it."""
        n = _items_wanted(body, messages)
        content = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        kinds = []
        for index in range(n):
            digest = hashlib.sha256(f"{self.config.fault_seed}|mistake|{content}|{index}".encode()).digest()
            draw, edge, kind = int.from_bytes(digest[:8], "big") / 2**64, 0.0, None
            for name in TASK_MISTAKES[task]:
                edge += getattr(self.config, name)
                if draw < edge:
                    kind = name
                    break
            kinds.append(kind)
        items, planted = build_task_items(task, document, kinds)
        title = prompt_title(messages)
        with self.stats._lock:
            self.stats.task_items[task] += len(items)
            for question, answer, kind in planted:
                self.stats.mistakes[kind] += 1
                self.stats.planted[planted_key(title, task, question, answer)] = kind
        return items

    async def _run_sequence(self, output_tokens: int) -> None:
        """Hold one of the S slots for ttft + tokens * tpot: one sequence on the GPU."""
        assert self._slots is not None
        stats = self.stats
        seconds = self.config.ttft + output_tokens * self.config.tpot
        async with self._slots:
            with stats._lock:
                stats.active += 1
                stats.peak_active = max(stats.peak_active, stats.active)
            started = time.perf_counter()
            try:
                await asyncio.sleep(seconds)
            finally:
                with stats._lock:
                    stats.active -= 1
                    stats.sequences += 1
                    stats.total_sequence_s += seconds
                    stats.total_slot_s += time.perf_counter() - started

    def _fault(self, messages: list[dict[str, Any]]) -> str | None:
        """Deterministic fault for this request: hash of content and times seen."""
        content = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        seen = self._seen[content]
        self._seen[content] += 1
        digest = hashlib.sha256(f"{self.config.fault_seed}|{content}|{seen}".encode()).digest()
        draw = int.from_bytes(digest[:8], "big") / 2**64
        edge = 0.0
        for name in FAULTS:
            edge += getattr(self.config, name)
            if draw < edge:
                return name
        return None

    async def _error(self, writer: asyncio.StreamWriter, status: int, message: str, outcome: str,
                     extra: dict[str, str] | None = None) -> bool:
        with self.stats._lock:
            self.stats.outcomes[outcome] += 1
        return await _send(writer, status, {"error": {"message": message, "code": status}}, extra)


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    line = await reader.readline()
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    for _ in range(100):  # bounded header count
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return method, path, headers, body


async def _send(writer: asyncio.StreamWriter, status: int, payload: Any,
                extra: dict[str, str] | None = None, cut: bool = False) -> bool:
    """Write one response; with `cut`, only its head and half its body (the caller then
    closes the connection)."""
    body = json.dumps(payload).encode()
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            "Content-Type: application/json", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in (extra or {}).items()]
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + (body[: len(body) // 2] if cut else body))
        await writer.drain()
    except ConnectionError:
        return False
    return True


# -- helpers for tests and benchmarks ----------------------------------------------


def start_server_in_thread(
    config: SimConfig | None = None, *, port: int = 0, **overrides: Any
) -> tuple[str, SimStats, Callable[[], None]]:
    """Run a server on 127.0.0.1 (`port`, or an ephemeral one) in a daemon thread with its own loop.

    Returns (base_url ending in /v1, the live SimStats, stop function)."""
    server = SimServer(replace(config or SimConfig(), **overrides))
    ready = threading.Event()
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()

    def run() -> None:
        async def main() -> None:
            try:
                await server.start("127.0.0.1", port)
            except BaseException as error:
                failure.append(error)
                ready.set()
                return
            ready.set()
            await server.serve_until_stopped()

        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="sim-openai-server", daemon=True)
    thread.start()
    if not ready.wait(10) or failure:
        raise RuntimeError(f"simulated server did not start: {failure}")

    def stop() -> None:
        if thread.is_alive():
            loop.call_soon_threadsafe(server.request_stop)
            thread.join(10)

    return f"http://127.0.0.1:{server.port}/v1", server.stats, stop


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server_process(
    max_seconds: float = 900.0, **options: Any
) -> tuple[str, Callable[[], dict[str, Any]], Callable[[], None]]:
    """Run the server as a separate process (no shared GIL with the client, as in real
    use). Returns (base_url, a function fetching /stats, stop function)."""
    port = _free_port()
    command = [sys.executable, os.path.abspath(__file__), "--port", str(port),
               "--max-seconds", str(max_seconds)]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            command.append(flag)
        elif value is not None and value is not False:
            command += [flag, str(value)]
    process = subprocess.Popen(command)
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{root}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("simulated server process did not start")
        time.sleep(0.05)

    def stats() -> dict[str, Any]:
        return httpx.get(f"{root}/stats", timeout=10).json()

    def stop() -> None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    return f"{root}/v1", stats, stop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--max-seconds", type=float, default=1800.0,
                        help="exit after this long (a bounded server)")
    parser.add_argument("--api-key-env", default=None,
                        help="name of an environment variable holding the key to require")
    defaults = SimConfig()
    for field in fields(SimConfig):
        if field.name == "api_key":
            continue
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true")
        elif default is None:
            kind = str if field.name.endswith("marker") else float
            parser.add_argument(flag, type=kind, default=None)
        else:
            parser.add_argument(flag, type=type(default), default=default)
    args = parser.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in fields(SimConfig) if f.name != "api_key"}
    if args.api_key_env:
        values["api_key"] = os.environ[args.api_key_env]
    server = SimServer(SimConfig(**values))

    async def run() -> None:
        await server.start("127.0.0.1", args.port)
        print(f"simulated OpenAI server on http://127.0.0.1:{server.port}/v1 "
              f"({server.config.slots} slots)", flush=True)
        await server.serve_until_stopped(args.max_seconds)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
