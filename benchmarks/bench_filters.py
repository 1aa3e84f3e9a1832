"""How well and how fast the curation filters work.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_filters.py

(a) Quality. The example corpus (examples/documents) is parsed, chunked and given
    clean pairs by the model-free generator, as the pipeline does. The clean base is the
    pairs that pass the form rules not under test here (lengths, not a question, low
    information), without the generator's own duplicates (exact, or the same question
    in another frame). Then, in each of --rounds rounds with its own random seed,
    defects are planted per document. Some base pairs are altered: a refusal or
    meta-talk answer, a passage-dependent question, an answer from another document, a
    fabricated answer (invented facts about the chunk's subject), an answer that only
    echoes the question; and, reported apart as harder cases, an answer from another
    chunk of the same document, the answer with one name or number swapped, and a
    statement made of the chunk's own words in new combinations. Some pairs get an
    exact copy (case, punctuation or spacing changed) or a paraphrased copy (same
    answer; the question in a new frame, an opening phrase moved, and half the time one
    word swapped for a synonym) placed after them. Some answers are lightly reworded
    but stay grounded (a control: they must be kept). filter_pairs runs per document
    with the default configuration, then with the heuristic judge, then (fewer rounds,
    it is slow) with embeddings. Recall: share of a planted defect flagged with the
    reason code meant for it. Precision of a reason code: share of the pairs it flags
    that have a planted defect it is right for (untouched and reworded pairs, and any
    other defect, count against it).
(b) Speed. 100,000 synthetic pairs of realistic size: 20,000 chunks of ~3,000
    characters made of real corpus sentences (their content words renamed per subject,
    see _rename), 5 pairs each (answers are 1-2 of the chunk's sentences, questions of
    60-100 characters from templates and the answer's words), with 3% exact and 3%
    paraphrased duplicates, in documents of 50 pairs. filter_pairs with the default
    filters is timed per document (as the pipeline calls it) and as one batch of
    100,000; near-duplicate detection alone at N = 50,000 and 100,000 (best of 3 each;
    linear growth gives a ratio of 2.0); cross_document_duplicates on all pairs. Each
    timed run starts with an empty word-stem memory.
(c) Embedding similarity throughput (pairs/s) on --embedding-pairs pairs, 5 per chunk.
(d) Other languages and shapes (issue 17): the chunks and clean pairs of
    multilingual_set.py (German, Arabic, Korean, Chinese and English prose, Markdown
    tables, key-value lists; written for this project). In each of --multilingual-rounds
    rounds, per set, seven pairs get a planted defect: an exact or a near-duplicate copy,
    a passage-dependent question ("What does the text say about X?", "Was sagt der
    Text über X?", "ماذا يقول النص عن X؟" ...), a refusal or meta-talk answer ("Der Text
    nennt keine ...", "文中没有提到 ..."), an answer from another chunk, text aimed
    at a model injected into the chunk and taken as the answer, a pair in another
    language. Recall per set and defect, precision per set and reason code, clean pairs
    wrongly rejected per set. Language detection is on in every section (pairs carry no
    language here, so filter_pairs detects it for chunks and pairs, as timed in (b)).

Prints Markdown tables and writes benchmarks/results/filters.json.
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
import zlib
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from synth_assets.core import dedup  # noqa: E402
from synth_assets.core.dedup import DUPLICATE_QUESTION, NEAR_DUPLICATE_QUESTION  # noqa: E402
from benchmarks.multilingual_set import CHUNKS, INJECTIONS, PASSAGE_TEMPLATES, language_of
from benchmarks.multilingual_set import REFUSALS as ML_REFUSALS  # noqa: E402  # noqa: E402
from synth_assets.core.filters import (  # noqa: E402
    INSTRUCTION_LIKE,
    LANGUAGE_MISMATCH,
    ANSWER_REPEATS_QUESTION,
    ANSWER_TOO_LONG,
    ANSWER_TOO_SHORT,
    EMPTY,
    LOW_INFORMATION,
    LOW_JUDGE_SCORE,
    LOW_SEMANTIC_SIMILARITY,
    NOT_A_QUESTION,
    PASSAGE_DEPENDENT,
    QUESTION_TOO_LONG,
    QUESTION_TOO_SHORT,
    REFUSAL,
    UNGROUNDED,
    FilterConfig,
    _is_low_information,
    filter_pairs,
)
from synth_assets.core.text import STEMS, STOPWORDS  # noqa: E402

DOCUMENTS = ROOT / "examples" / "documents"
RESULTS = ROOT / "benchmarks" / "results" / "filters.json"
NOT_UNDER_TEST = {EMPTY, QUESTION_TOO_SHORT, QUESTION_TOO_LONG, ANSWER_TOO_SHORT, ANSWER_TOO_LONG,
                  NOT_A_QUESTION, LOW_INFORMATION}
MEASURED = [DUPLICATE_QUESTION, NEAR_DUPLICATE_QUESTION, UNGROUNDED, REFUSAL, PASSAGE_DEPENDENT,
            ANSWER_REPEATS_QUESTION, LOW_JUDGE_SCORE, LOW_SEMANTIC_SIMILARITY]
ANSWER_JUDGES = {LOW_JUDGE_SCORE, LOW_SEMANTIC_SIMILARITY}

# Planted defect -> (the reason code meant for it, other codes that are also right).
# A refusal is not supported by the chunk either, and the judge and the embedding
# similarity are meant to catch every bad answer.
DEFECTS: dict[str, tuple[str, set[str]]] = {
    "exact duplicate": (DUPLICATE_QUESTION, set()),
    "paraphrased duplicate": (NEAR_DUPLICATE_QUESTION, set()),
    "answer from another document": (UNGROUNDED, ANSWER_JUDGES),
    "fabricated answer": (UNGROUNDED, ANSWER_JUDGES),
    "refusal / meta-talk": (REFUSAL, {UNGROUNDED} | ANSWER_JUDGES),
    "passage-dependent question": (PASSAGE_DEPENDENT, {LOW_JUDGE_SCORE}),
    # an echo states nothing the chunk supports either
    "answer echoes the question": (ANSWER_REPEATS_QUESTION, {ANSWER_TOO_SHORT, UNGROUNDED} | ANSWER_JUDGES),
    # harder, reported apart (not in the list)
    "hard: answer from another chunk, same document": (UNGROUNDED, ANSWER_JUDGES),
    "hard: one name or number swapped": (UNGROUNDED, ANSWER_JUDGES),
    "hard: the chunk's own words recombined": (UNGROUNDED, ANSWER_JUDGES),
}
CONTROLS = ("untouched", "reworded answer (grounded)")
TARGETS = {  # defect: minimum recall (precision >= 0.9 for their reason codes)
    "exact duplicate": 0.95,
    "paraphrased duplicate": 0.95,
    "answer from another document": 0.95,
    "fabricated answer": 0.95,
}


# ---------------------------------------------------------------------------
# The corpus: real chunks and the model-free generator's pairs
# ---------------------------------------------------------------------------


def load_corpus() -> list[dict]:
    """Documents of examples/documents as {"document_id", "chunks", "pairs"}."""
    from synth_assets.core.chunking import (
        DEFAULT_BUFFER_TOKENS, DEFAULT_GENERATION_TOKENS, DEFAULT_MAX_SEQ_LEN,
        chunk_document, chunk_size_for, load_tokenizer,
    )
    from synth_assets.core.parsing import SUPPORTED_FORMATS, parse_document
    from synth_assets.generation.model_free import generate_pairs

    tokenizer, _ = load_tokenizer(None)
    size = chunk_size_for(DEFAULT_MAX_SEQ_LEN, DEFAULT_GENERATION_TOKENS, DEFAULT_BUFFER_TOKENS)
    documents = []
    for path in sorted(DOCUMENTS.iterdir()):
        if path.suffix.lower() not in SUPPORTED_FORMATS or path.name.startswith("LICENSE"):
            continue
        try:
            parsed = parse_document(path)
        except Exception as error:  # a bad example file is not what is measured here
            print(f"(skipped {path.name}: {error})")
            continue
        chunks = [c for c in chunk_document(parsed.document, tokenizer=tokenizer, max_tokens=size)
                  if not c.boilerplate]
        pairs = []
        for chunk in chunks:
            for pair in generate_pairs(chunk.text, chunk.headings, max_pairs=5, title=path.stem):
                pairs.append({"question": pair.question, "answer": pair.answer,
                              "question_type": pair.question_type, "chunk_text": chunk.text,
                              "chunk_index": chunk.chunk_index})
        documents.append({"document_id": path.name, "chunks": [c.text for c in chunks], "pairs": pairs})
    return documents


def clean_base(documents: list[dict]) -> tuple[dict[str, list[dict]], dict]:
    """Per document, the generated pairs that pass the rules not under test, without
    duplicate questions; and a summary of what was left out.

    A duplicate here is an exact copy or the same question in another frame: the same
    kind of question with the same content words ("Explain word processors in the
    context of X." and "Describe the word processor in the context of X."). Those are
    real duplicates the generator made; leaving them in would make the ground truth of
    the planted duplicates ambiguous. Questions that are merely similar stay, and a
    near-duplicate flag on them counts as a false positive."""
    base: dict[str, list[dict]] = {}
    dropped: Counter = Counter()
    for document in documents:
        reasons = filter_pairs(document["pairs"])
        seen: set[str] = set()
        seen_keys: set[dedup.QuestionKey] = set()
        kept = []
        for pair, why in zip(document["pairs"], reasons):
            text, key = dedup.normalise_text(pair["question"]), dedup.question_key(pair["question"])
            if NOT_UNDER_TEST & set(why):
                dropped["fails a form rule not under test"] += 1
            elif text in seen:
                dropped["exact duplicate in the generated set"] += 1
            elif key in seen_keys:
                dropped["same question in another frame in the generated set"] += 1
            else:
                seen.add(text)
                seen_keys.add(key)
                kept.append(pair)
        if kept:
            base[document["document_id"]] = kept
    return base, dict(dropped)


# ---------------------------------------------------------------------------
# Planting defects
# ---------------------------------------------------------------------------

_SYNONYM_PAIRS = (
    "largest biggest|developed created|introduced launched|founded established|eat consume|"
    "make produce|used employed|emerge appear|first initially|begin start|began started|"
    "company firm|machines devices|tools instruments|features functions|results findings|"
    "faster quicker|achieve attain|vulnerable defenseless|common frequent|particularly especially|"
    "heavier weightier|calls sounds|feed forage|important significant|reached arrived at|"
    "merged combined|main principal|role function|purpose aim|method approach|type kind|"
    "types kinds|help assist|show demonstrate|shows demonstrates|large big|small little|"
    "many numerous|often frequently|major key|increase rise|reduce lower|improve enhance|"
    "build construct|buy purchase|get obtain|need require|allow enable|allows enables|"
    "change modify|describe characterize|example instance|problem issue|benefit advantage|"
    "goal objective|era period|early initial|modern contemporary|famous well-known|"
    "known recognized|species kinds|birds fowl|origins roots|future prospects|"
    "evolution development|popular widespread|smaller tinier|strong powerful|caught captured"
)
SYNONYMS: dict[str, str] = {}
for _pair in _SYNONYM_PAIRS.split("|"):
    _a, _b = _pair.split(" ", 1)
    SYNONYMS.setdefault(_a, _b)
    if " " not in _b:
        SYNONYMS.setdefault(_b, _a)

_INTRO = re.compile(r"^((?:In|By|During|After|Before|Since|Until|For|On) [^,?]{2,40}|In general), (.+)\?$")
_FRAME = re.compile(r"^(?:what|which|who|when|where|why|how|explain|describe)\b"
                    r"(?: (?:is|are|was|were|do|does|did|has|have|had|can|could))?\s*", re.I)


def _swap_synonym(text: str, rng: random.Random) -> str:
    """One word replaced by a synonym; never inside "in the context of <section>": a
    section title is a name, which a model repeating a question copies."""
    words = text.split()
    lowered = [w.lower() for w in words]
    context = next((i for i in range(len(words) - 3) if lowered[i : i + 4] == ["in", "the", "context", "of"]), None)
    if context is not None and context == 0:  # "In the context of X, explain Y."
        end = next((i for i, w in enumerate(words) if w.endswith(",")), len(words) - 1)
        protected = set(range(end + 1))
    elif context is not None:
        protected = set(range(context, len(words)))
    else:
        protected = set()
    spots = [i for i, w in enumerate(words) if w.lower().strip("?.,;:") in SYNONYMS and i not in protected]
    if not spots:
        return text
    i = rng.choice(spots)
    core = words[i].strip("?.,;:")
    new = SYNONYMS[core.lower()]
    if core[:1].isupper():
        new = new[:1].upper() + new[1:]
    words[i] = words[i].replace(core, new)
    return " ".join(words)


def _lower_first(text: str) -> str:
    """Lowercase the first letter unless the first word is a name or an acronym."""
    first = text.split(" ", 1)[0]
    return text if first[1:2].isupper() or first == "I" else text[:1].lower() + text[1:]


def topic_of(question: str) -> str:
    """What a question is about, as a phrase: "What do ducks eat?" -> "ducks eat"."""
    body = question.strip().rstrip("?.!").split(" in the context of ")[0]
    return _FRAME.sub("", body).strip() or body


def _reframe(question: str, rng: random.Random) -> str:
    """The same question asked another way (its frame changes, not its subject)."""
    body = question.strip().rstrip("?.").strip()
    m = re.match(r"^(Explain|Describe) (.+?)(?: in the context of (.+))?$", body)
    if m:
        verb, topic, context = m.groups()
        other = "Describe" if verb == "Explain" else "Explain"
        ctx = f" in the context of {context}" if context else ""
        options = [f"{other} {topic}{ctx}.", f"Can you {verb.lower()} {topic}{ctx}?",
                   f"Give an explanation of {topic}{ctx}.", f"What can you tell me about {topic}{ctx}?",
                   f"Please {verb.lower()} {topic}{ctx}.", f"Tell me about {topic}{ctx}."]
        if context:
            options.append(f"In the context of {context}, {verb.lower()} {topic}.")
        return rng.choice(options)
    m = re.match(r"^What (is|are|was|were) (.+)$", body)
    if m:
        verb, rest = m.groups()
        options = [f"Can you tell me what {rest} {verb}?", f"Could you explain what {rest} {verb}?",
                   f"What exactly {verb} {rest}?", f"I'd like to know what {rest} {verb}."]
        if verb == "is":
            options.append(f"What's {rest}?")
        return rng.choice(options)
    m = re.match(r"^(What|Which|When|Why|How|Who|Where) (.+)$", body)
    if m:
        word, rest = m.groups()
        frames = {
            "What": ["What exactly {r}?", "Do you know what {r}?", "Tell me what {r}."],
            "Which": ["What {r}?", "Can you name which {r}?", "Which exactly {r}?"],
            "When": ["In what year {r}?", "At what point {r}?", "Do you know when {r}?", "When exactly {r}?"],
            "Why": ["For what reason {r}?", "Can you explain why {r}?", "Why exactly {r}?"],
            "How": ["In what way {r}?", "Can you describe how {r}?", "How exactly {r}?"],
            "Who": ["Which person {r}?", "Who exactly {r}?", "Do you know who {r}?"],
            "Where": ["In what place {r}?", "Where exactly {r}?"],
        }[word]
        return rng.choice(frames).format(r=rest)
    return f"Can you tell me: {_lower_first(body)}?"


def paraphrase(question: str, rng: random.Random) -> tuple[str, bool]:
    """A rewording as an LLM repeating itself would write it: always a new frame ("What
    is X?" -> "Can you tell me what X is?", "Explain" -> "Describe"), an opening phrase
    moved to the end when there is one, and one word swapped for a synonym half the time
    (not in a section title, see _swap_synonym). Returns it and whether a word was
    swapped."""
    q = question.strip()
    m = _INTRO.match(q)
    if m and rng.random() < 0.7:  # "In 1961, who developed X?" -> "Who developed X in 1961?"
        intro, rest = m.groups()
        q = f"{rest[:1].upper()}{rest[1:]} {_lower_first(intro)}?"
    q = _reframe(q, rng)
    if rng.random() < 0.5:
        swapped = _swap_synonym(q, rng)
        return swapped, swapped != q
    return q, False


def exact_copy(question: str, rng: random.Random) -> str:
    """The same question with other case, punctuation or spacing."""
    variants = [question.lower(), question.upper(), question.rstrip("?.") + " ?",
                question.rstrip("?.") + "?!", "  ".join(question.split()), question.replace(",", "")]
    return rng.choice(variants)


REFUSALS = [
    "As an AI language model, I cannot provide information about {topic}.",
    "As an AI, I don't have access to the source, so I cannot answer questions about {topic}.",
    "I'm sorry, but I don't have enough information to answer that.",
    "I'm sorry, I cannot answer this question about {topic}.",
    "The text does not say anything about {topic}.",
    "The passage doesn't mention {topic}.",
    "Unfortunately, the provided context does not specify this.",
    "The document does not provide information about {topic}.",
    "There is no information about {topic} in the given text.",
    "This is not mentioned in the passage.",
    "Based on the provided text, {answer}",
    "According to the passage, {answer}",
    "The passage states that {answer}",
    "I cannot determine this from the text provided.",
]
PASSAGE_DEPENDENT_QUESTIONS = [
    "According to the passage, {q}",
    "According to the text above, {q}",
    "Based on the passage, {q}",
    "Based on the text, {q}",
    "In the passage above, {q}",
    "According to the author, {q}",
    "As described in the text, {q}",
    "What does the passage say about {topic}?",
    "What does the author say about {topic}?",
    "What does this document tell us about {topic}?",
    "In this article, {q}",
    "According to the given context, {q}",
    "What does the excerpt suggest about {topic}?",
    "As mentioned above, {q}",
    "Which of the following best describes {topic}?",
    "From the information provided, {q}",
]
FABRICATIONS = [
    "{entity} was first described in {year} by {name} at the University of {place}.",
    "{entity} is mainly used to {purpose} in {place}, where it was banned in {year}.",
    "Most experts now agree that {entity} has little to do with {entity2}, as {name} showed in {year}.",
    "{entity} accounts for roughly {number} percent of all {goods} produced in {place} each year.",
    "In {year}, {name} replaced {entity} with a cheaper {goods} design that was sold in {place}.",
    "{entity} was originally developed by {name} as a way to {purpose}.",
    "{prefix} which was later banned by the {institution} in {year}.",
    "{prefix} although {name} disputed this claim in a {year} report for the {institution}.",
]
FILLERS = {
    "year": ["1847", "1923", "1958", "1766", "2004", "1891", "1972"],
    "name": ["Charles Whitmore", "Elena Kovacs", "Jonas Brandt", "Margaret Ellison", "Hiroshi Tanaka",
             "Pierre Lambert"],
    "place": ["Leeds", "Bavaria", "Ontario", "Tasmania", "Lyon", "Nebraska", "Bologna"],
    "purpose": ["store grain during long winters", "measure rainfall accurately",
                "train young soldiers", "preserve fish for export", "decorate royal palaces"],
    "goods": ["textile", "porcelain", "copper", "timber", "leather", "glassware"],
    "number": ["12", "37", "64", "80", "23"],
    "institution": ["European Commission", "Royal Society", "United Nations", "Ministry of Agriculture"],
}
_ENTITY = re.compile(r"\b[A-Z][\w'’-]+(?: [A-Z][\w'’-]+)*\b")


def fabricated_answer(pair: dict, rng: random.Random) -> str:
    """A confident, fluent answer about the chunk's own subject with invented facts."""
    entities = [e for e in _ENTITY.findall(pair["chunk_text"]) if len(e) > 3 and e.lower() != e]
    entity = rng.choice(entities) if entities else topic_of(pair["question"])
    entity2 = rng.choice(entities) if entities else "its neighbours"
    words = pair["answer"].split()
    prefix = " ".join(words[: max(3, len(words) // 2)]).rstrip(",;:.") + ","
    values = {key: rng.choice(options) for key, options in FILLERS.items()}
    text = rng.choice(FABRICATIONS).format(entity=entity, entity2=entity2, prefix=prefix, **values)
    return text[:1].upper() + text[1:]


_NUMBER = re.compile(r"\b\d{2,4}\b")


def swapped_answer(pair: dict, rng: random.Random) -> str | None:
    """The answer with one number or name replaced by another of the same chunk (every word
    is then in the chunk, but the statement is false); None if there is nothing to swap."""
    answer, chunk = pair["answer"], pair["chunk_text"]
    for pattern in (_NUMBER, _ENTITY):
        mine = [m for m in pattern.finditer(answer) if m.start() > 0]
        others = sorted(set(pattern.findall(chunk)) - set(pattern.findall(answer)))
        if mine and others:
            spot = rng.choice(mine)
            return answer[: spot.start()] + rng.choice(others) + answer[spot.end():]
    return None


_CONNECTIVES = ["{a} is {b} of {c}.", "{a} was {b} by {c}.", "{a} and {b} are both {c}.",
                "{a} has {b} because of {c}.", "{a} can be {b} with {c}.", "{a} were {b} for {c}."]


def recombined_answer(pair: dict, rng: random.Random) -> str | None:
    """A statement made only of the chunk's words (runs of 1-3 content words taken from
    different places, joined by function words): every word is in the chunk, the claim
    is not. None for a chunk too short to take three places from."""
    words = [w.strip(",;:()\"'.") for w in pair["chunk_text"].split()]
    starts = [i for i, w in enumerate(words) if len(w) > 3 and w.lower() not in STOPWORDS]
    if len(starts) < 30:
        return None
    runs = []
    for i in rng.sample(starts, 3):
        run = [words[i]]
        for w in words[i + 1 : i + rng.choice((1, 2, 3))]:
            if not w or w.lower() in STOPWORDS:
                break
            run.append(w)
        runs.append(" ".join(run))
    text = rng.choice(_CONNECTIVES).format(a=runs[0], b=runs[1].lower(), c=runs[2])
    return text[:1].upper() + text[1:]


def reworded_answer(answer: str, rng: random.Random) -> str:
    """A light, still grounded rewording: a synonym, a dropped opening phrase or list item
    or parenthesis, the way a model shortens and rephrases its source."""
    text = answer
    edits = rng.sample(["synonym", "opening", "list", "paren", "tail"], 2)
    for edit in edits:
        if edit == "synonym":
            text = _swap_synonym(text, rng)
        elif edit == "opening" and re.match(r"^[^,]{3,40}, ", text):
            rest = text.split(", ", 1)[1]
            text = rest[:1].upper() + rest[1:]
        elif edit == "list" and text.count(", ") >= 2:
            parts = text.split(", ")
            del parts[rng.randrange(1, len(parts) - 1)]
            text = ", ".join(parts)
        elif edit == "paren":
            text = re.sub(r"\s*\([^)]*\)", "", text, count=1)
        elif edit == "tail" and len(text.split()) > 16 and ", " in text[len(text) // 2:]:
            cut = text.rindex(", ")
            text = text[:cut] + "."
    return text


def echo_answer(question: str, rng: random.Random) -> str:
    """An answer that only says the question back."""
    body = question.rstrip("?.! ")
    return rng.choice([question, body + ".", body.lower(), topic_of(question)[:1].upper() + topic_of(question)[1:] + "."])


def plant(base: dict[str, list[dict]], rng: random.Random) -> dict[str, list[dict]]:
    """One test set: per document, the base pairs with defects planted (each pair gets a
    "planted" label: a DEFECTS key or a CONTROLS entry)."""
    other_answers = {doc: [p["answer"] for d, ps in base.items() if d != doc for p in ps] for doc in base}
    sets: dict[str, list[dict]] = {}
    for doc, pairs in base.items():
        out: list[dict] = []
        pending: list[tuple[int, dict]] = []  # copies to insert after their original
        for pair in pairs:
            roll = rng.random()
            new = dict(pair, planted="untouched")
            same_doc_other_chunk = [p["answer"] for p in pairs if p["chunk_text"] != pair["chunk_text"]]
            if roll < 0.06:
                new.update(answer=rng.choice(REFUSALS).format(topic=topic_of(pair["question"]),
                           answer=_lower_first(pair["answer"])), planted="refusal / meta-talk")
            elif roll < 0.12:
                template = rng.choice(PASSAGE_DEPENDENT_QUESTIONS)
                new.update(question=template.format(q=_lower_first(pair["question"]),
                           topic=topic_of(pair["question"])), planted="passage-dependent question")
            elif roll < 0.18:
                new.update(answer=rng.choice(other_answers[doc]), planted="answer from another document")
            elif roll < 0.24:
                new.update(answer=fabricated_answer(pair, rng), planted="fabricated answer")
            elif roll < 0.28:
                new.update(answer=echo_answer(pair["question"], rng), planted="answer echoes the question")
            elif roll < 0.32 and same_doc_other_chunk:
                new.update(answer=rng.choice(same_doc_other_chunk),
                           planted="hard: answer from another chunk, same document")
            elif roll < 0.36 and (swapped := swapped_answer(pair, rng)):
                new.update(answer=swapped, planted="hard: one name or number swapped")
            elif roll < 0.40 and (recombined := recombined_answer(pair, rng)):
                new.update(answer=recombined, planted="hard: the chunk's own words recombined")
            elif roll < 0.48:
                new.update(answer=reworded_answer(pair["answer"], rng), planted="reworded answer (grounded)")
            out.append(new)
            if new["planted"] in CONTROLS:  # duplicates of pairs that are otherwise good
                if rng.random() < 0.15:
                    pending.append((len(out) - 1, dict(pair, question=exact_copy(pair["question"], rng),
                                                       planted="exact duplicate")))
                if rng.random() < 0.3:
                    reworded, swapped = paraphrase(pair["question"], rng)
                    if dedup.normalise_text(reworded) != dedup.normalise_text(pair["question"]):
                        variant = "new frame + a synonym" if swapped else "new frame only"
                        pending.append((len(out) - 1, dict(pair, question=reworded, variant=variant,
                                                           planted="paraphrased duplicate")))
        # each copy goes somewhere after its original (so the original is the one kept)
        for k in range(len(pending)):
            original, copy = pending[k]
            position = rng.randint(original + 1, len(out))
            out.insert(position, copy)
            pending = [(o + 1 if o >= position else o, c) for o, c in pending]
        sets[doc] = out
    return sets


# ---------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------


def score(labelled: list[tuple[str, list[str]]]) -> dict:
    """Recall per planted defect, precision per reason code, false rejections of controls."""
    by_kind: dict[str, list[list[str]]] = defaultdict(list)
    for kind, reasons in labelled:
        by_kind[kind].append(reasons)
    recall = {}
    for kind, (meant, _) in DEFECTS.items():
        flagged = [meant in reasons for reasons in by_kind.get(kind, [])]
        recall[kind] = {"n": len(flagged), "reason": meant,
                        "recall": round(sum(flagged) / len(flagged), 4) if flagged else None}
    precision = {}
    for code in MEASURED:
        hits = [(kind, reasons) for kind, reasons in labelled if code in reasons]
        right = [kind for kind, _ in hits
                 if kind in DEFECTS and (code == DEFECTS[kind][0] or code in DEFECTS[kind][1])]
        wrong = Counter(kind for kind, _ in hits if kind not in right)
        precision[code] = {"flagged": len(hits),
                           "precision": round(len(right) / len(hits), 4) if hits else None,
                           "false_positives_by_planted": dict(wrong)}
    flagged_share = {
        code: {kind: round(sum(code in r for r in rows) / len(rows), 4) for kind, rows in by_kind.items()}
        for code in MEASURED
    }
    controls = {}
    for kind in CONTROLS:
        rows = by_kind.get(kind, [])
        rejected = Counter(r for reasons in rows for r in reasons)
        controls[kind] = {"n": len(rows), "rejected": sum(1 for r in rows if r),
                          "rejected_share": round(sum(1 for r in rows if r) / len(rows), 4) if rows else None,
                          "by_reason": dict(rejected)}
    return {"recall": recall, "precision": precision, "controls": controls, "flagged_share": flagged_share}


def run_quality(base: dict[str, list[dict]], rounds: int, seed: int, config: FilterConfig,
                examples: dict | None = None) -> tuple[dict, float, int]:
    labelled: list[tuple[str, list[str]]] = []
    variants: dict[str, list[bool]] = defaultdict(list)
    started = time.perf_counter()
    n = 0
    for r in range(rounds):
        sets = plant(base, random.Random(seed + r))
        for pairs in sets.values():
            reasons = filter_pairs(pairs, config)
            n += len(pairs)
            for pair, why in zip(pairs, reasons):
                labelled.append((pair["planted"], why))
                if "variant" in pair:
                    variants[pair["variant"]].append(NEAR_DUPLICATE_QUESTION in why)
                if examples is not None and r == 0:
                    meant = DEFECTS.get(pair["planted"], (None,))[0]
                    missed = meant is not None and meant not in why
                    false_alarm = pair["planted"] in CONTROLS and why
                    if missed or false_alarm:
                        examples.setdefault(pair["planted"], []).append(
                            {"question": pair["question"], "answer": pair["answer"][:200], "reasons": why})
    result = score(labelled)
    result["paraphrase_recall_by_variant"] = {
        name: {"n": len(hits), "recall": round(sum(hits) / len(hits), 4)} for name, hits in sorted(variants.items())
    }
    return result, time.perf_counter() - started, n


# ---------------------------------------------------------------------------
# Speed
# ---------------------------------------------------------------------------

QUESTION_TEMPLATES = [
    "What is the role of {a} in {b}?", "How does {a} relate to {b}?", "Why is {a} important for {b}?",
    "When did {a} first appear alongside {b}?", "Explain {a} in the context of {b}.",
    "Which {a} are mentioned together with {b}?", "Who was responsible for {a} and {b}?",
    "What does {a} have to do with {b}?", "Describe how {a} affects {b}.",
]
_SENTENCE = re.compile(r"[^.!?]+[.!?]")
_LONG_WORD = re.compile(r"[A-Za-z]{4,}")
# A prose sentence: starts with a capital letter, no markup, references or URLs.
_PROSE = re.compile(r"^[A-Z][^\[\]^|=∞<>{}#*_]*$(?<!Retrieved)")
_SYLLABLES = ("ka", "lo", "mi", "ren", "tu", "sa", "vor", "el", "qui", "dan", "pe", "ros", "ti", "na",
              "bel", "gor", "fa", "ush", "ont", "ri", "bo", "za", "ker", "lin", "mo", "sul", "dra", "ve",
              "pim", "cho", "gal", "nu", "tas", "wen", "yor", "hu", "ip", "ste", "bar", "om")


def _rename(sentence: str, salt: int) -> str:
    """Four in five of the sentence's content words replaced by pseudo-words fixed per
    subject (`salt`; ten documents share a subject).

    The example corpus has about 1,000 prose sentences: 100,000 answers drawn from them
    as they are would repeat each sentence some 100 times, far more than any real
    corpus (and every repeat is a near-duplicate candidate). Documents on different
    subjects use different names and terms; renaming per subject gives the synthetic
    set that variety (about 10,000 distinct words per 2,000 pairs, which grows with the
    set as a real vocabulary does) while keeping the sentences' length, structure and
    English function words.
    """
    def swap(match: re.Match) -> str:
        word = match.group(0)
        if word.lower() in STOPWORDS:
            return word
        h = zlib.crc32(f"{salt}:{word.lower()}".encode())
        if h % 5 == 0:  # a fifth of the words are shared by all documents
            return word
        pseudo = "".join(_SYLLABLES[(h >> shift) % len(_SYLLABLES)] for shift in (3, 9, 15, 21)[: 3 + (h >> 27) % 2])
        return pseudo.capitalize() if word[0].isupper() else pseudo
    return _LONG_WORD.sub(swap, sentence)


def synthetic_pairs(documents: list[dict], n_pairs: int, rng: random.Random, rename: bool = True) -> list[dict]:
    """n_pairs realistic pairs: 5 per ~3,000-character chunk made of corpus sentences
    (renamed per document, see _rename), documents of 50 pairs, and 3% exact and 3%
    paraphrased duplicates of an earlier question of the same document."""
    sentences = sorted({s.strip() for d in documents for c in d["chunks"] for s in _SENTENCE.findall(c)
                        if 6 <= len(s.split()) <= 50 and _PROSE.match(s.strip())
                        and not _is_low_information(s.strip(), 0.15)})
    pairs: list[dict] = []
    chunk_no = 0
    while len(pairs) < n_pairs:
        document_no = chunk_no // 10
        document_id = f"doc{document_no:05d}"
        chosen: list[str] = []
        while sum(len(s) + 1 for s in chosen) < 3000:
            sentence = rng.choice(sentences)
            chosen.append(_rename(sentence, document_no // 10) if rename else sentence)
        chunk = " ".join(chosen)
        fits = [i for i in range(len(chosen) - 1) if len(chosen[i]) <= 300] or list(range(len(chosen) - 1))
        for k, start in enumerate(sorted(rng.sample(fits, min(5, len(fits))))):
            answer = chosen[start]
            if len(answer) < 100 and len(answer) + len(chosen[start + 1]) < 300:
                answer = f"{answer} {chosen[start + 1]}"
            words = [w.strip(",;:()\"'.") for w in answer.split()]
            starts = [i for i, w in enumerate(words) if len(w) > 3 and w.lower() not in STOPWORDS] or [0]

            def span() -> str:
                i = rng.choice(starts)
                return " ".join(words[i : i + rng.choice((2, 3, 4))]).lower()
            question = rng.choice(QUESTION_TEMPLATES).format(a=span(), b=span())
            pairs.append({"document_id": document_id, "pair_id": f"{document_id}-{chunk_no:06d}-{k}",
                          "question": question, "answer": answer, "chunk_text": chunk,
                          "planted": "untouched"})
        chunk_no += 1
    pairs = pairs[:n_pairs]
    by_doc: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        by_doc[p["document_id"]].append(i)
    for indices in by_doc.values():
        for position, i in enumerate(indices[1:], start=1):
            roll = rng.random()
            source = pairs[indices[rng.randrange(position)]]
            if roll < 0.03:
                pairs[i] = dict(pairs[i], question=exact_copy(source["question"], rng), planted="exact duplicate")
            elif roll < 0.06:
                pairs[i] = dict(pairs[i], question=paraphrase(source["question"], rng)[0],
                                planted="paraphrased duplicate")
    return pairs


def run_speed(documents: list[dict], n_pairs: int, seed: int) -> dict:
    rng = random.Random(seed)
    started = time.perf_counter()
    pairs = synthetic_pairs(documents, n_pairs, rng)
    build_s = time.perf_counter() - started
    q_chars = sorted(len(p["question"]) for p in pairs)
    a_chars = sorted(len(p["answer"]) for p in pairs)
    chunks = {p["chunk_text"] for p in pairs}
    setup = {"pairs": len(pairs), "chunks": len(chunks), "documents": len({p["document_id"] for p in pairs}),
             "median_question_chars": q_chars[len(q_chars) // 2],
             "median_answer_chars": a_chars[len(a_chars) // 2],
             "median_chunk_chars": sorted(len(c) for c in chunks)[len(chunks) // 2],
             "build_s": round(build_s, 1)}

    def cold() -> float:
        """Empty the word-stem memory (each timed run starts as a fresh process would)."""
        STEMS.clear()
        return time.perf_counter()

    by_doc: dict[str, list[dict]] = defaultdict(list)
    for p in pairs:
        by_doc[p["document_id"]].append(p)
    started = cold()
    per_doc_reasons = [r for doc_pairs in by_doc.values() for r in filter_pairs(doc_pairs)]
    per_doc_s = time.perf_counter() - started
    flagged = Counter(r for rs in per_doc_reasons for r in rs)
    planted = Counter(p["planted"] for doc_pairs in by_doc.values() for p in doc_pairs)
    caught: Counter = Counter()
    ordered = [p for doc_pairs in by_doc.values() for p in doc_pairs]
    for p, reasons in zip(ordered, per_doc_reasons):
        meant = DEFECTS.get(p["planted"], (None,))[0]
        if meant and meant in reasons:
            caught[p["planted"]] += 1

    started = cold()
    filter_pairs(pairs)
    one_batch_s = time.perf_counter() - started

    # Best of three: the ratio of two timings is sensitive to anything else running on
    # the machine; the fastest run is the one least disturbed.
    questions = [p["question"] for p in pairs]
    near = {}
    for n in (n_pairs // 2, n_pairs):
        runs = []
        for _ in range(3):
            started = cold()
            dedup.near_duplicate_of(questions[:n])
            runs.append(time.perf_counter() - started)
        near[n] = min(runs)
    ratio = near[n_pairs] / near[n_pairs // 2]

    started = cold()
    cross = dedup.cross_document_duplicates(pairs)
    cross_s = time.perf_counter() - started
    return {
        "setup": setup,
        "filter_pairs_per_document_s": round(per_doc_s, 2),
        "filter_pairs_one_batch_s": round(one_batch_s, 2),
        "near_duplicate_s": {str(n): round(s, 2) for n, s in near.items()},
        "near_duplicate_ratio_2n_over_n": round(ratio, 3),
        "cross_document_duplicates_s": round(cross_s, 2),
        "cross_document_flagged": len(cross),
        "flagged_by_reason_per_document": dict(flagged),
        "planted": dict(planted),
        "planted_caught": dict(caught),
    }


def run_embedding_throughput(documents: list[dict], n_pairs: int, seed: int) -> dict:
    from synth_assets.core.embeddings import _model, embedding_model_available, semantic_similarity

    if not embedding_model_available():
        return {"available": False}
    _model.cache_clear()  # measure a fresh load, even if the quality run loaded it
    started = time.perf_counter()
    _model()
    load_s = time.perf_counter() - started
    # real sentences (not renamed: pseudo-words split into many more word pieces)
    pairs = synthetic_pairs(documents, n_pairs, random.Random(seed), rename=False)
    started = time.perf_counter()
    semantic_similarity([p["answer"] for p in pairs], [p["chunk_text"] for p in pairs])
    wall = time.perf_counter() - started
    return {"available": True, "pairs": len(pairs), "chunks": len({p["chunk_text"] for p in pairs}),
            "model_load_s": round(load_s, 2), "wall_s": round(wall, 2),
            "pairs_per_s": round(len(pairs) / wall, 1)}


# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# (d) Other languages and shapes: planted defects on multilingual_set.py
# ---------------------------------------------------------------------------

# Planted defect -> the codes that are right for it (the first is the one meant).
ML_DEFECTS: dict[str, tuple[str, ...]] = {
    "exact duplicate": (DUPLICATE_QUESTION, NEAR_DUPLICATE_QUESTION),
    "near duplicate": (NEAR_DUPLICATE_QUESTION, DUPLICATE_QUESTION),
    "passage-dependent question": (PASSAGE_DEPENDENT,),
    # a refusal is not supported by the chunk either
    "refusal / meta-talk": (REFUSAL, UNGROUNDED),
    "answer from another chunk": (UNGROUNDED,),
    "instruction-like (injected into the chunk)": (INSTRUCTION_LIKE,),
    # an answer in another language is not in the chunk either
    "pair in another language": (LANGUAGE_MISMATCH, UNGROUNDED),
}
ML_TARGETS = {"near duplicate": 0.9}  # every other defect: recall >= 0.95


def plant_multilingual(kind: str, rng: random.Random) -> list[dict]:
    """One document of `kind` (a language, "table" or "key-value"): its clean pairs, some
    altered or followed by a copy, each labelled with its planted defect or "clean"."""
    chunks = CHUNKS[kind]
    base = [{"question": q, "paraphrase": q2, "answer": a, "chunk_text": c["text"], "topic": c["topic"],
             "chunk": i, "planted": "clean"}
            for i, c in enumerate(chunks) for q, q2, a in c["pairs"]]
    language = language_of(kind)
    # Sets with fewer pairs than defects get a random subset of the defects each round.
    defects = rng.sample(list(ML_DEFECTS), min(len(ML_DEFECTS), len(base)))
    clean = list(base)  # an answer from another chunk is taken from the unaltered pairs
    chosen = rng.sample(range(len(base)), len(defects))
    copies: dict[int, dict] = {}
    for index, defect in zip(chosen, defects):
        pair = base[index]
        if defect == "exact duplicate":
            copies[index] = {**pair, "question": exact_copy(pair["question"], rng), "planted": defect}
        elif defect == "near duplicate":
            copies[index] = {**pair, "question": pair["paraphrase"], "planted": defect}
        elif defect == "passage-dependent question":
            template = rng.choice(PASSAGE_TEMPLATES[language])
            base[index] = {**pair, "question": template.format(topic=pair["topic"]), "planted": defect}
        elif defect == "refusal / meta-talk":
            refusal = rng.choice(ML_REFUSALS[language]).format(topic=pair["topic"])
            base[index] = {**pair, "answer": refusal, "planted": defect}
        elif defect == "answer from another chunk":
            other = rng.choice([p for p in clean if p["chunk"] != pair["chunk"]])
            base[index] = {**pair, "answer": other["answer"], "planted": defect}
        elif defect == "instruction-like (injected into the chunk)":
            injected = rng.choice(INJECTIONS[language])
            base[index] = {**pair, "answer": injected, "chunk_text": f"{pair['chunk_text']} {injected}",
                           "planted": defect}
        else:  # another language's pair, on this chunk
            others = [k for k in CHUNKS if language_of(k) != language]
            stranger = rng.choice(rng.choice(CHUNKS[rng.choice(others)])["pairs"])
            base[index] = {**pair, "question": stranger[0], "answer": stranger[2], "planted": defect}
    document = []
    for index, pair in enumerate(base):
        document.append(pair)
        if index in copies:
            document.append(copies[index])
    return document


def run_multilingual(rounds: int, seed: int, config: FilterConfig) -> dict:
    """Recall per kind and defect, precision per kind and reason code, clean pairs
    wrongly rejected per kind, over `rounds` plantings."""
    hits: dict = defaultdict(Counter)
    flags: dict = defaultdict(Counter)
    for round_index in range(rounds):
        rng = random.Random(seed * 1000 + round_index)
        for kind in CHUNKS:
            document = plant_multilingual(kind, rng)
            for pair, reasons in zip(document, filter_pairs(document, config)):
                planted = pair["planted"]
                hits[kind][planted, "n"] += 1
                if planted == "clean":
                    hits[kind]["clean", "rejected"] += bool(reasons)
                elif ML_DEFECTS[planted][0] in reasons:
                    hits[kind][planted, "caught"] += 1
                for code in set(reasons):
                    flags[kind][code, "n"] += 1
                    flags[kind][code, "right"] += planted != "clean" and code in ML_DEFECTS[planted]
    result: dict = {}
    for kind in CHUNKS:
        h, f = hits[kind], flags[kind]
        result[kind] = {
            "recall": {d: round(h[d, "caught"] / h[d, "n"], 3) for d in ML_DEFECTS},
            "precision": {code: round(f[code, "right"] / f[code, "n"], 3)
                          for code in sorted({c for c, _ in f})},
            "clean_rejected": round(h["clean", "rejected"] / h["clean", "n"], 4),
            "clean_pairs": h["clean", "n"],
            "planted_per_defect": {d: h[d, "n"] for d in ML_DEFECTS},
        }
    return result


def multilingual_table(result: dict) -> list[str]:
    kinds = list(result)
    lines = ["| planted defect (meant reason) | " + " | ".join(kinds) + " |",
             "| --- |" + " --- |" * len(kinds)]
    for defect, codes in ML_DEFECTS.items():
        lines.append(f"| {defect} (`{codes[0]}`) | " + " | ".join(f"{result[k]['recall'][defect]:.2f}" for k in kinds)
                     + " |")
    codes = sorted({c for k in kinds for c in result[k]["precision"]})
    lines += ["", "| precision of | " + " | ".join(kinds) + " |", "| --- |" + " --- |" * len(kinds)]
    for code in codes:
        lines.append(f"| `{code}` | " + " | ".join(
            f"{result[k]['precision'][code]:.2f}" if code in result[k]["precision"] else "-" for k in kinds) + " |")
    lines += ["", "| clean pairs wrongly rejected | " + " | ".join(kinds) + " |", "| --- |" + " --- |" * len(kinds),
              "| share (of n) | " + " | ".join(f"{result[k]['clean_rejected']:.3f} (n={result[k]['clean_pairs']})"
                                             for k in kinds) + " |"]
    return lines


def multilingual_targets(result: dict) -> dict[str, bool]:
    targets = {}
    for kind, r in result.items():
        for defect, recall in r["recall"].items():
            targets[f"{kind}: recall {defect} >= {ML_TARGETS.get(defect, 0.95)}"] = recall >= ML_TARGETS.get(defect, 0.95)
        for code, precision in r["precision"].items():
            targets[f"{kind}: precision {code} >= 0.9"] = precision >= 0.9
        targets[f"{kind}: clean pairs rejected <= 0.02"] = r["clean_rejected"] <= 0.02
    return targets


def main_table(result: dict) -> list[str]:
    lines = ["| planted defect | n | reason code meant | recall | precision of that code |",
             "| --- | --- | --- | --- | --- |"]
    for kind, row in result["recall"].items():
        p = result["precision"][row["reason"]]
        lines.append(f"| {kind} | {row['n']} | `{row['reason']}` | {row['recall']} | "
                     f"{p['precision']} ({p['flagged']} flagged) |")
    for kind, row in result["controls"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(row["by_reason"].items())) or "-"
        lines.append(f"| control: {kind} (must be kept) | {row['n']} | any | rejected "
                     f"{row['rejected_share']} | {reasons} |")
    return lines


def judge_table(result: dict, code: str) -> list[str]:
    """Share of each planted kind that `code` flags (recall for bad answers, false
    rejections for the rest) and the code's precision."""
    shares = result["flagged_share"][code]
    counts = {kind: row["n"] for kind, row in result["recall"].items()}
    counts.update({kind: row["n"] for kind, row in result["controls"].items()})
    lines = [f"| planted | n | flagged `{code}` |", "| --- | --- | --- |"]
    for kind in [*DEFECTS, *CONTROLS]:
        if counts.get(kind):
            lines.append(f"| {kind} | {counts[kind]} | {shares.get(kind, 0.0)} |")
    p = result["precision"][code]
    lines.append(f"| precision (judging answers: right on every bad-answer defect) | {p['flagged']} | "
                 f"{p['precision']} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=60,
                        help="planting rounds for the quality sets (each ~100 base pairs: 60 keep the "
                             "recall estimates within about +-0.01)")
    parser.add_argument("--embedding-rounds", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=100_000, help="pairs for the speed run")
    parser.add_argument("--embedding-pairs", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-embeddings", action="store_true")
    parser.add_argument("--multilingual-rounds", type=int, default=40)
    parser.add_argument("--multilingual-only", action="store_true",
                        help="only section (d): other languages, tables and key-value lists")
    args = parser.parse_args()
    command = "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_filters.py " + " ".join(sys.argv[1:])
    print(f"$ {command.strip()}")

    started = time.perf_counter()
    multilingual = run_multilingual(args.multilingual_rounds, args.seed, FilterConfig())
    ml_lines = [f"### other languages and shapes: {args.multilingual_rounds} rounds, "
                f"{time.perf_counter() - started:.1f} s", "", *multilingual_table(multilingual)]
    print("\n".join(ml_lines) + "\n")
    if args.multilingual_only:
        print("targets not met:", [k for k, v in multilingual_targets(multilingual).items() if not v])
        return

    started = time.perf_counter()
    documents = load_corpus()
    corpus_s = time.perf_counter() - started
    base, dropped = clean_base(documents)
    n_generated = sum(len(d["pairs"]) for d in documents)
    n_base = sum(len(p) for p in base.values())
    print(f"corpus: {len(documents)} documents, {sum(len(d['chunks']) for d in documents)} prose chunks, "
          f"{n_generated} generated pairs; clean base {n_base} pairs in {len(base)} documents "
          f"(left out: {dropped}); {corpus_s:.1f} s")

    results: dict = {"command": command.strip(), "python": platform.python_version(), "cpus": os.cpu_count(),
                     "corpus": {"documents": len(documents), "generated_pairs": n_generated,
                                "base_pairs": n_base, "base_documents": sorted(base), "left_out": dropped},
                     "quality": {}}
    configs = {"default filters": (FilterConfig(), args.rounds),
               "with heuristic judge": (FilterConfig(use_judge=True), args.rounds)}
    if not args.skip_embeddings:
        configs["with embeddings"] = (FilterConfig(use_embeddings=True), args.embedding_rounds)
    lines: list[str] = []
    for name, (config, rounds) in configs.items():
        examples: dict = {}
        result, seconds, n = run_quality(base, rounds, args.seed, config, examples)
        results["quality"][name] = {**result, "rounds": rounds, "pairs": n, "seconds": round(seconds, 1),
                                    "misses_and_false_alarms_round_0": examples}
        lines += [f"### {name}: {rounds} rounds, {n} pairs, {seconds:.1f} s", ""]
        if config.use_judge:
            lines += judge_table(result, LOW_JUDGE_SCORE)
        elif config.use_embeddings:
            lines += judge_table(result, LOW_SEMANTIC_SIMILARITY)
        else:
            lines += main_table(result)
            variants = ", ".join(f"{name}: {v['recall']} (n={v['n']})"
                                 for name, v in result["paraphrase_recall_by_variant"].items())
            lines += ["", f"Paraphrased duplicates by rewording: {variants}."]
        lines.append("")
    print("\n".join(lines))
    results["quality_tables_markdown"] = "\n".join(lines)
    results["multilingual"] = {"rounds": args.multilingual_rounds, **multilingual}
    results["multilingual_tables_markdown"] = "\n".join(ml_lines)

    speed = run_speed(documents, args.pairs, args.seed)
    results["speed"] = speed
    setup = speed["setup"]
    near = speed["near_duplicate_s"]
    speed_lines = [
        f"### speed: {setup['pairs']:,} synthetic pairs, {setup['chunks']:,} chunks, {setup['documents']:,} "
        f"documents (median question {setup['median_question_chars']} chars, answer "
        f"{setup['median_answer_chars']}, chunk {setup['median_chunk_chars']}); {os.cpu_count()} cores", "",
        "| step | seconds |", "| --- | --- |",
        f"| filter_pairs per document (as the asset calls it), all pairs | {speed['filter_pairs_per_document_s']} |",
        f"| filter_pairs, one batch of all pairs | {speed['filter_pairs_one_batch_s']} |",
        *[f"| near-duplicate detection alone, N = {int(n):,} | {t} |" for n, t in near.items()],
        f"| ratio 2N / N | {speed['near_duplicate_ratio_2n_over_n']} |",
        f"| cross_document_duplicates, all pairs ({speed['cross_document_flagged']} flagged) | "
        f"{speed['cross_document_duplicates_s']} |",
        "", f"planted in the speed set: {speed['planted']}; caught: {speed['planted_caught']}",
    ]
    if not args.skip_embeddings:
        emb = run_embedding_throughput(documents, args.embedding_pairs, args.seed)
        results["embedding_throughput"] = emb
        if emb["available"]:
            speed_lines += ["", f"embedding similarity (use_embeddings): {emb['pairs']} pairs, {emb['chunks']} "
                            f"chunks in {emb['wall_s']} s = {emb['pairs_per_s']} pairs/s (model load "
                            f"{emb['model_load_s']} s, not included)"]
    print("\n".join(speed_lines))
    results["speed_table_markdown"] = "\n".join(speed_lines)

    default = results["quality"]["default filters"]
    targets = {f"recall {kind} >= {minimum}": default["recall"][kind]["recall"] >= minimum
               for kind, minimum in TARGETS.items()}
    targets.update({f"precision {code} >= 0.9": default["precision"][code]["precision"] >= 0.9
                    for code in (DUPLICATE_QUESTION, NEAR_DUPLICATE_QUESTION, UNGROUNDED)})
    targets["filter_pairs per document <= 60 s"] = speed["filter_pairs_per_document_s"] <= 60
    targets["filter_pairs one batch <= 60 s"] = speed["filter_pairs_one_batch_s"] <= 60
    targets["near-duplicate 2N/N <= 2.3"] = speed["near_duplicate_ratio_2n_over_n"] <= 2.3
    targets.update(multilingual_targets(multilingual))
    results["targets_met"] = targets
    print("\ntargets:", json.dumps(targets, indent=1))

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
