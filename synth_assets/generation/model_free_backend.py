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
from synth_assets.generation.model_free import MODEL_FREE_TEMPLATE_VERSION, generate_pairs


class ModelFreeBackend:
    """Writes pairs from each chunk's own sentences with fixed templates: no model, no GPU."""

    generator = "model-free"
    model = None
    prompt_version = MODEL_FREE_TEMPLATE_VERSION

    def __init__(self, pairs_per_chunk: int, log=None, progress_every_s: float = 5.0) -> None:
        self.pairs_per_chunk = pairs_per_chunk
        self.log = log
        self.progress_every_s = progress_every_s

    def generate(self, requests: list[GenerationRequest]) -> GenerationOutcome:
        started = last_progress = time.perf_counter()
        outcome = GenerationOutcome()
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
        seconds = time.perf_counter() - started
        outcome.stats = {
            "requests": len(requests),
            "pairs": len(outcome.pairs),
            "failures": len(outcome.failures),
            "seconds": round(seconds, 3),
            # No model writes tokens here (and nothing is cached): pairs per second is the speed.
            "pairs_per_second": round(len(outcome.pairs) / seconds, 1) if seconds else 0.0,
        }
        if self.log is not None:
            self.log.info(f"generated {len(requests)}/{len(requests)} chunks, {outcome.stats['pairs_per_second']} pairs/s")
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
