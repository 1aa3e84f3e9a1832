"""The backend chosen by SYNTH_ASSETS_GENERATION_BACKEND=model_free (the default)."""

from __future__ import annotations

import time

from synth_assets.generation.base import (
    GeneratedPair,
    GenerationFailure,
    GenerationOutcome,
    GenerationRequest,
    JudgeOutcome,
    JudgeRequest,
)
from synth_assets.core.tasks import CONVERSATION, MULTI_HOP, QA, REASONING, UNANSWERABLE, pick_partners
from synth_assets.generation.model_free import MODEL_FREE_TEMPLATE_VERSION, generate_pairs
from synth_assets.generation.model_free_tasks import (
    ChunkUnits,
    Item,
    conversation_items,
    multi_hop_items,
    qa_items,
    reasoning_items,
    unanswerable_items,
)

# Sentences of the source an item of each task uses up (an unanswerable item quotes one
# that others may use too): what sizes a document's mix (ModelFreeBackend._fill).
SENTENCES_PER_ITEM = {QA: 1, REASONING: 2, MULTI_HOP: 2, CONVERSATION: 4, UNANSWERABLE: 0.5}


class ModelFreeBackend:
    """Writes pairs from each chunk's own sentences with fixed templates: no model, no GPU."""

    generator = "model-free"
    model = None
    prompt_version = MODEL_FREE_TEMPLATE_VERSION

    def __init__(self, pairs_per_chunk: int, log=None, progress_every_s: float = 5.0,
                 task_shares: dict[str, float] | None = None) -> None:
        self.pairs_per_chunk = pairs_per_chunk
        # With shares, a mix of tasks is sized to what the documents give (_generate_tasks).
        self.task_shares = task_shares
        self.log = log
        self.progress_every_s = progress_every_s

    def generate(self, requests: list[GenerationRequest]) -> GenerationOutcome:
        started = last_progress = time.perf_counter()
        outcome = GenerationOutcome()
        if any(request.task != QA or request.n_items is not None for request in requests):
            return self._generate_tasks(requests, started)
        for done, request in enumerate(requests):
            now = time.perf_counter()
            if self.log is not None and now - last_progress >= self.progress_every_s:
                last_progress = now
                self.log.info(f"generated {done}/{len(requests)} chunks, "
                              f"{len(outcome.pairs) / (now - started):.1f} pairs/s")
            try:
                pairs = generate_pairs(
                    request.text,
                    list(request.headings),
                    max_pairs=self.pairs_per_chunk,
                    title=request.title,
                )
            except Exception as error:  # a bug on one chunk must not lose the others
                outcome.failures.append(
                    GenerationFailure(request.chunk_id, 1, f"{type(error).__name__}: {error}")
                )
                continue
            outcome.pairs.extend(
                GeneratedPair(
                    chunk_id=request.chunk_id,
                    question=pair.question,
                    answer=pair.answer,
                    question_type=pair.question_type,
                    evidence=pair.evidence,
                )
                for pair in pairs
            )
        return self._finish(outcome, len(requests), started)

    def _generate_tasks(self, requests: list[GenerationRequest], started: float) -> GenerationOutcome:
        """A mix of tasks. Each document's items per task are filled from the chunks asked
        first, then from the document's other chunks, so a chunk that cannot give an item
        (no three linked sentences for a conversation) does not lower the task's share;
        the hardest tasks take their sentences first, and no sentence serves two items."""
        outcome = GenerationOutcome()
        by_document: dict[str, list[GenerationRequest]] = {}
        for request in requests:
            by_document.setdefault(request.document_id, []).append(request)
        for document_requests in by_document.values():
            chunks: dict[str, ChunkUnits] = {}
            for request in document_requests:
                for chunk_id, text in ((request.chunk_id, request.text), *request.partners):
                    if chunk_id not in chunks:
                        try:
                            chunks[chunk_id] = ChunkUnits.of(chunk_id, text, list(request.headings), request.title)
                        except Exception as error:  # a bug on one chunk must not lose the others
                            outcome.failures.append(GenerationFailure(chunk_id, 1, f"{type(error).__name__}: {error}",
                                                                      request.task))
                            chunks[chunk_id] = ChunkUnits(chunk_id, text, [])
            order = sorted(chunks)  # chunk ids sort in document order
            self._fill(document_requests, chunks, order, outcome)
        return self._finish(outcome, len(requests), started)

    def _fill(self, document_requests: list[GenerationRequest], chunks: dict[str, ChunkUnits], order: list[str],
              outcome: GenerationOutcome) -> None:
        """One document's items, one at a time, each time for the task furthest below its
        share of what has been made so far (a task that can give no more drops out), so
        the document's mix follows the shares as far as its text allows. A task tries its
        asked-for chunks first, then the others, round robin (items spread over the
        document). The total is the sentences qa alone would use, divided by what an item
        of the mix costs in sentences (SENTENCES_PER_ITEM)."""
        shares = self.task_shares or {task: 1.0 for task in {r.task for r in document_requests}}
        capacity = sum(len(chunks[c].qa_pairs(self.pairs_per_chunk)) for c in order)
        total = round(capacity / sum(share * SENTENCES_PER_ITEM[task] for task, share in shares.items()))
        anchors = {task: list(dict.fromkeys([r.chunk_id for r in document_requests if r.task == task] + order))
                   for task in shares}
        requests = {(r.task, r.chunk_id): r for r in document_requests}
        next_chunk = dict.fromkeys(shares, 0)
        made = dict.fromkeys(shares, 0)
        exhausted: set[str] = set()
        while sum(made.values()) < total and len(exhausted) < len(shares):
            size = sum(made.values()) + 1
            task = max((t for t in shares if t not in exhausted), key=lambda t: (shares[t] * size - made[t], shares[t]))
            item = None
            for step in range(len(anchors[task])):
                position = (next_chunk[task] + step) % len(anchors[task])
                chunk_id = anchors[task][position]
                try:
                    found = self._items(task, chunks, order, chunk_id, requests.get((task, chunk_id)), 1)
                except Exception as error:  # a bug on one chunk must not lose the others
                    outcome.failures.append(GenerationFailure(chunk_id, 1, f"{type(error).__name__}: {error}", task))
                    continue
                if found:
                    item, next_chunk[task] = found[0], position + 1
                    break
            if item is None:
                exhausted.add(task)
                continue
            made[task] += 1
            outcome.pairs.append(GeneratedPair(
                chunk_id=item.source_chunk_ids[0], question=item.question, answer=item.answer,
                question_type=item.question_type, evidence=item.evidence, reasoning=item.reasoning,
                task=item.task, difficulty=item.difficulty, source_chunk_ids=item.source_chunk_ids,
                turns=item.turns, quotes=item.quotes))

    def _items(self, task: str, chunks: dict[str, ChunkUnits], order: list[str], chunk_id: str,
               request: GenerationRequest | None, n: int) -> list[Item]:
        chunk = chunks[chunk_id]
        n = min(n, self.pairs_per_chunk)
        if task == QA:
            return qa_items(chunk, n, self.pairs_per_chunk)
        if task == REASONING:
            return reasoning_items(chunk, n)
        if task == CONVERSATION:
            return conversation_items(chunk, n)
        if task == UNANSWERABLE:
            return unanswerable_items(chunk, n, "\n".join(c.text for c in chunks.values()))
        # multi_hop: the planned partners first, then the chunks sharing most terms (of
        # those with sentences left to join).
        planned = list(request.partners) if request is not None else []
        index = order.index(chunk_id)
        found = pick_partners(index, [chunks[c].text for c in order], k=4,
                              exclude={j for j, c in enumerate(order) if not chunks[c].free()})
        candidates = [(p, list(request.link_terms)) for p, _ in planned] + [(order[j], terms) for j, terms in found]
        items = []
        for partner_id, links in candidates:
            if len(items) >= n:
                break
            items += multi_hop_items(chunk, chunks[partner_id], links, n - len(items))
        return items

    def _finish(self, outcome: GenerationOutcome, n_requests: int, started: float) -> GenerationOutcome:
        seconds = time.perf_counter() - started
        outcome.stats = {
            "requests": n_requests,
            "pairs": len(outcome.pairs),
            "failures": len(outcome.failures),
            "seconds": round(seconds, 3),
            # No model writes tokens here (and nothing is cached): pairs per second is the speed.
            "pairs_per_second": round(len(outcome.pairs) / seconds, 1) if seconds else 0.0,
        }
        if self.log is not None:
            self.log.info(f"generated {n_requests}/{n_requests} requests, {outcome.stats['pairs_per_second']} pairs/s")
        return outcome

    def judge(self, requests: list[JudgeRequest]) -> JudgeOutcome:
        """Scores from the heuristic judge (core/judge.py): there is no model to ask, and
        this keeps the judge's threshold, reason code and metadata running offline."""
        from synth_assets.core.judge import heuristic_judge

        started = time.perf_counter()
        outcome = JudgeOutcome()
        for request in requests:
            outcome.scores[request.pair_id] = heuristic_judge(request.question, request.answer, request.chunk_text)
        outcome.stats = {"judged": len(outcome.scores), "judge_failures": 0,
                         "judge_seconds": round(time.perf_counter() - started, 3)}
        return outcome
