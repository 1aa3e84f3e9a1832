"""In-process vLLM: one engine per run process, every prompt of the step in one call.

`vllm.LLM.chat` takes a list of conversations and schedules them all at once, so
continuous batching keeps the GPU full; JSON-schema structured output
(`StructuredOutputsParams(json=...)`, vLLM >= 0.12) makes every reply parse. This
module imports without vllm: the import happens when the engine is built.

Not run on a GPU by the test suite: the tests drive this code through a test double
of `vllm.LLM` (see docs/GENERATION.md).
"""

from __future__ import annotations

import json
import time
from typing import Any

from synth_assets.core.judge import (
    JUDGE_PROMPT_VERSION,
    build_judge_messages,
    judge_json_schema,
    parse_judge_reply,
)
from synth_assets.generation.base import (
    GeneratedPair,
    GenerationFailure,
    GenerationOutcome,
    GenerationRequest,
    JudgeOutcome,
    JudgeRequest,
)
from synth_assets.generation.cache import CacheEntry, GenerationCache, cache_key
from synth_assets.generation.prompts import (
    PROMPT_VERSION,
    ReplyParseError,
    build_messages,
    parse_reply,
    qa_json_schema,
)

VLLM_INSTALL_HINT = (
    "the vllm backend needs vLLM and a CUDA GPU: install the extra with "
    "`pip install -e '.[vllm]'` on a machine with CUDA, or choose "
    "SYNTH_ASSETS_GENERATION_BACKEND=openai (any OpenAI-compatible server) or model_free"
)


class VLLMUnavailableError(RuntimeError):
    pass


def build_engine(model: str, engine_options: dict[str, Any]):
    """Build `vllm.LLM`, or say plainly why it cannot be built here."""
    try:
        import vllm
    except ImportError as error:
        raise VLLMUnavailableError(f"{VLLM_INSTALL_HINT} (import failed: {error})") from None
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        raise VLLMUnavailableError(f"{VLLM_INSTALL_HINT} (no CUDA device is visible)")
    options = {key: value for key, value in engine_options.items() if value is not None}
    return vllm.LLM(model=model, **options)


class VLLMBackend:
    generator = "vllm"
    prompt_version = PROMPT_VERSION

    def __init__(
        self,
        *,
        model: str,
        engine_options: dict[str, Any],
        sampling: dict[str, Any],
        pairs_per_chunk: int,
        max_attempts: int = 3,
        engine_batch_size: int | None = None,
        cache: GenerationCache | None = None,
        log=None,
        engine=None,
    ) -> None:
        self.model = model
        self.engine_options = engine_options
        # temperature, top_p, max_tokens, seed, n
        self.sampling = {key: value for key, value in sampling.items() if value is not None}
        self.pairs_per_chunk = pairs_per_chunk
        self.max_attempts = max_attempts
        # None: every pending prompt in one engine call (best batching). vLLM's offline
        # API returns only when a call is complete, so replies reach the cache per call;
        # a number bounds what a crash in the middle can lose.
        self.engine_batch_size = engine_batch_size
        self.cache = cache
        self.log = log
        self._engine = engine

    @property
    def engine(self):
        if self._engine is None:
            self._engine = build_engine(self.model, self.engine_options)
        return self._engine

    def close(self) -> None:
        # Dropping the engine frees the GPU memory at resource teardown.
        self._engine = None

    def _sampling_params(self):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        return SamplingParams(
            **self.sampling,
            structured_outputs=StructuredOutputsParams(json=qa_json_schema(self.pairs_per_chunk)),
        )

    def generate(self, requests: list[GenerationRequest]) -> GenerationOutcome:
        started = time.perf_counter()
        outcome = GenerationOutcome()
        stats = {"chunks": len(requests), "requests": 0, "engine_calls": 0, "cache_hits": 0,
                 "retries": 0, "prompt_tokens": 0, "completion_tokens": 0}
        conversations = {r.chunk_id: build_messages(r, self.pairs_per_chunk) for r in requests}
        key_params = {**self.sampling, "pairs_per_chunk": self.pairs_per_chunk, "backend": "vllm",
                      "structured_output": "json_schema"}
        keys = {cid: cache_key(self.model, key_params, messages) for cid, messages in conversations.items()}
        cached = self.cache.get_many(list(keys.values())) if self.cache else {}

        pending: list[str] = []
        for request in requests:
            hit = cached.get(keys[request.chunk_id])
            if hit is None:
                pending.append(request.chunk_id)
                continue
            stats["cache_hits"] += 1
            for text in json.loads(hit.reply):
                outcome.pairs.extend(self._pairs(request.chunk_id, parse_reply(text, self.pairs_per_chunk)))

        errors: dict[str, str] = {}
        attempts: dict[str, int] = {}
        params = self._sampling_params() if pending else None
        while pending:
            retry: list[str] = []
            wave_size = self.engine_batch_size or len(pending)
            for start in range(0, len(pending), wave_size):
                wave = pending[start : start + wave_size]
                retry += self._run_wave(wave, conversations, keys, params, attempts, errors, outcome, stats)
            stats["retries"] += len(retry)
            pending = retry
        outcome.failures = [GenerationFailure(cid, attempts[cid], err) for cid, err in errors.items()]
        seconds = time.perf_counter() - started
        stats.update(failures=len(outcome.failures), seconds=round(seconds, 3),
                     completion_tokens_per_second=round(stats["completion_tokens"] / seconds, 1) if seconds else 0.0)
        outcome.stats = stats
        return outcome

    def _run_wave(self, wave, conversations, keys, params, attempts, errors, outcome, stats) -> list[str]:
        """One engine call for `wave`; returns the chunks to try again."""
        outputs = self.engine.chat([conversations[cid] for cid in wave], params, use_tqdm=False)
        stats["engine_calls"] += 1
        stats["requests"] += len(wave)
        retry, entries = [], []
        for chunk_id, output in zip(wave, outputs):
            attempts[chunk_id] = attempts.get(chunk_id, 0) + 1
            prompt_tokens = len(output.prompt_token_ids or [])
            stats["prompt_tokens"] += prompt_tokens
            pairs, error, good_texts, completion_tokens = [], None, [], 0
            for completion in output.outputs:  # n > 1 gives several completions
                completion_tokens += len(completion.token_ids or [])
                try:
                    pairs.extend(parse_reply(completion.text, self.pairs_per_chunk))
                    good_texts.append(completion.text)
                except ReplyParseError as parse_error:
                    error = str(parse_error)
            stats["completion_tokens"] += completion_tokens
            if good_texts:
                # Only replies that parse are cached (a bad one is asked for again); the
                # value is the list of the chunk's completions, so n > 1 survives a hit.
                entries.append(CacheEntry(keys[chunk_id], self.model, PROMPT_VERSION,
                                          json.dumps(good_texts), prompt_tokens, completion_tokens))
            if pairs:
                outcome.pairs.extend(self._pairs(chunk_id, pairs))
            elif attempts[chunk_id] < self.max_attempts:
                retry.append(chunk_id)
            else:
                errors[chunk_id] = error or "the model returned no completion"
        if self.cache and entries:
            self.cache.put_many(entries)
        if self.log:
            self.log.info(f"vLLM: {len(wave)} prompts in one engine call, {len(retry)} to retry")
        return retry

    def judge(self, requests: list[JudgeRequest]) -> JudgeOutcome:
        """A 1-10 score and a reason for each pair: every prompt in one engine call
        (greedy, JSON-schema constrained), unparseable replies asked again up to
        max_attempts, parsed replies cached like generations."""
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        started = time.perf_counter()
        sampling = {**self.sampling, "temperature": 0.0, "max_tokens": 200, "n": 1}
        sampling.pop("top_p", None)
        conversations = {r.pair_id: build_judge_messages(r.question, r.answer, r.chunk_text) for r in requests}
        keys = {pid: cache_key(self.model, {**sampling, "task": "judge", "backend": "vllm"}, messages)
                for pid, messages in conversations.items()}
        cached = self.cache.get_many(list(keys.values())) if self.cache else {}
        outcome = JudgeOutcome()
        pending = []
        for pair_id, key in keys.items():
            try:
                outcome.scores[pair_id] = parse_judge_reply(cached[key].reply)
            except (KeyError, ValueError):
                pending.append(pair_id)
        cache_hits, engine_calls = len(keys) - len(pending), 0
        params = SamplingParams(**sampling, structured_outputs=StructuredOutputsParams(json=judge_json_schema()))
        for attempt in range(1, self.max_attempts + 1):
            if not pending:
                break
            outputs = self.engine.chat([conversations[pid] for pid in pending], params, use_tqdm=False)
            engine_calls += 1
            retry, entries = [], []
            for pair_id, output in zip(pending, outputs):
                text = output.outputs[0].text if output.outputs else ""
                try:
                    outcome.scores[pair_id] = parse_judge_reply(text)
                except ValueError as error:
                    outcome.failures[pair_id] = str(error)
                    retry.append(pair_id)
                    continue
                outcome.failures.pop(pair_id, None)
                entries.append(CacheEntry(keys[pair_id], self.model, JUDGE_PROMPT_VERSION, text,
                                          len(output.prompt_token_ids or []),
                                          len(output.outputs[0].token_ids or [])))
            if self.cache and entries:
                self.cache.put_many(entries)
            pending = retry
        outcome.stats = {"judged": len(outcome.scores), "judge_failures": len(outcome.failures),
                         "judge_engine_calls": engine_calls, "judge_cache_hits": cache_hits,
                         "judge_seconds": round(time.perf_counter() - started, 3)}
        return outcome

    @staticmethod
    def _pairs(chunk_id: str, parsed: list[dict]) -> list[GeneratedPair]:
        return [
            GeneratedPair(chunk_id=chunk_id, question=p["question"], answer=p["answer"],
                          question_type=p.get("question_type", "factual"))
            for p in parsed
        ]
