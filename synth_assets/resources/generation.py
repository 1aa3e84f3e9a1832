"""The generation resource: one place that decides which backend writes the pairs.

Backends (SYNTH_ASSETS_GENERATION_BACKEND):
- `model_free` (default): pairs from each chunk's own sentences; no model, runs anywhere.
- `openai`: any OpenAI-compatible server at `base_url` (vllm serve, SGLang, TGI,
  llama.cpp, Ollama, hosted APIs), or a fleet of them at `base_urls`; async, bounded
  concurrency, retries.
- `vllm`: vLLM in this process (the `[vllm]` extra and a CUDA GPU); one engine per
  process, shared by every run the process makes and shut down at exit, every prompt
  of the step in one call.
- `vllm_serve`: uses the generation service (`generation/service.py`, `make serve`): a
  `vllm serve` from `vllm_executable` on 127.0.0.1 that outlives runs, found in the
  instance directory or started on first use, stopped after `service_idle_s` idle.

Model backends share a content-addressed cache in DuckDB (`cache_path`), so a repeated
or resumed run does not pay for a generation it already has. The backend is built
lazily, on the first chunk it is asked for, and closed at resource teardown, so steps
that only need the tokenizer (document_chunks) never start an engine.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import dagster as dg
from pydantic import PrivateAttr

from synth_assets.core.chunking import (
    DEFAULT_BUFFER_TOKENS,
    DEFAULT_GENERATION_TOKENS,
    DEFAULT_MAX_SEQ_LEN,
    DEFAULT_OVERLAP_TOKENS,
    chunk_size_for,
)
from synth_assets.core.tasks import DEFAULT_TASK_SHARES, format_task_shares, parse_task_shares
from synth_assets.generation.model_free_backend import ModelFreeBackend
from synth_assets.generation.base import GenerationBackend

GENERATION_MODEL_ENV = "SYNTH_ASSETS_MODEL"
TASKS_ENV = "SYNTH_ASSETS_TASKS"
# What the model costs (docs/GENERATION.md#what-a-run-costs): each a positive number, or unset.
COST_SETTINGS_ENV = {
    "throughput_tokens_per_s": "SYNTH_ASSETS_THROUGHPUT_TOKENS_PER_S",
    "price_per_hour": "SYNTH_ASSETS_PRICE_PER_HOUR",
    "price_per_million_prompt_tokens": "SYNTH_ASSETS_PRICE_PER_MILLION_PROMPT_TOKENS",
    "price_per_million_completion_tokens": "SYNTH_ASSETS_PRICE_PER_MILLION_COMPLETION_TOKENS",
}
DEFAULT_PAIRS_PER_CHUNK = 5
DEFAULT_CACHE_PATH = "data/generation_cache.duckdb"
GPU_POOL = "gpu"

Backend = Literal["model_free", "openai", "vllm", "vllm_serve"]


class GenerationResource(dg.ConfigurableResource):
    """Writes grounded question-answer pairs for chunks; every row records the backend,
    the model and the prompt version it came from."""

    backend: Backend = "model_free"
    model: str | None = None
    pairs_per_chunk: int = DEFAULT_PAIRS_PER_CHUNK
    # The shares of training items per task (core/tasks.py, docs/TASKS.md), e.g.
    # "qa=0.4,reasoning=0.2,multi_hop=0.15,conversation=0.15,unanswerable=0.1". The
    # default is the question-answer pairs alone, as before tasks existed.
    tasks: str = DEFAULT_TASK_SHARES
    # The model's context and the tokens it may write size the chunks:
    # chunk_size = max_seq_len - 2 x generation_tokens - buffer_tokens.
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN
    generation_tokens: int = DEFAULT_GENERATION_TOKENS
    buffer_tokens: int = DEFAULT_BUFFER_TOKENS
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS
    # Tokenizer used to size chunks; defaults to the model's own when it is local.
    tokenizer: str | None = None
    # Sampling (every model backend).
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int | None = 0
    n: int = 1
    max_attempts: int = 3
    # OpenAI-compatible servers.
    base_url: str = "http://127.0.0.1:8000/v1"
    # A fleet of servers serving the same model; set, it replaces base_url (docs/GENERATION.md#fleet).
    base_urls: list[str] = []
    api_key_env: str = "OPENAI_API_KEY"  # the NAME of the variable holding the key
    max_concurrency: int = 64
    timeout_s: float = 120.0
    use_json_schema: bool = True
    # vLLM engine (in process, or passed to `vllm serve`).
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    dtype: str = "auto"
    quantization: str | None = None
    vllm_executable: str = "vllm"
    # In-process vllm: prompts per LLM.chat call. None: every prompt of the step in one
    # call (best batching); replies reach the cache per call, so a number bounds what a
    # crash can lose.
    engine_batch_size: int | None = None
    # vllm_serve: the instance directory ($DAGSTER_HOME) that records the service, and
    # how long it may sit unused before it stops (freeing the GPU).
    instance_dir: str | None = None
    service_idle_s: float = 900.0
    cache_path: str | None = DEFAULT_CACHE_PATH
    # What the model costs, for `make run`'s summary, the card and `--estimate`:
    # completion tokens per second the server(s) write, end to end (None: measured from
    # the recorded runs), and prices in any one currency: the server(s) per hour, all
    # their GPUs together (GPU time), and per million prompt / completion tokens (a
    # hosted API). Each must be a positive number (checked at start-up).
    throughput_tokens_per_s: float | None = None
    price_per_hour: float | None = None
    price_per_million_prompt_tokens: float | None = None
    price_per_million_completion_tokens: float | None = None

    _backend: Any = PrivateAttr(default=None)
    _lease: Any = PrivateAttr(default=None)

    @property
    def uses_a_model(self) -> bool:
        """Whether runs load a model or reach one (every backend but model_free)."""
        return self.backend != "model_free"

    @property
    def task_shares(self) -> dict[str, float]:
        """The task shares, parsed (checked at start-up by Settings.from_env)."""
        return parse_task_shares(self.tasks)

    def check_cost_settings(self) -> None:
        """A throughput or price that is not a positive number: ValueError naming its variable."""
        from synth_assets.core.usage import check_positive

        for name, variable in COST_SETTINGS_ENV.items():
            check_positive(getattr(self, name), variable)

    def prices(self):
        """The price settings (core.usage.Prices)."""
        from synth_assets.core.usage import Prices

        return Prices(self.price_per_hour, self.price_per_million_prompt_tokens,
                      self.price_per_million_completion_tokens)

    @property
    def chunk_tokens(self) -> int:
        return chunk_size_for(self.max_seq_len, self.generation_tokens, self.buffer_tokens)

    @property
    def tokenizer_name(self) -> str | None:
        return self.tokenizer or self.model

    @property
    def prompt_version(self) -> str:
        """The template or prompt version the configured backend records on its rows."""
        if self.backend == "model_free":
            from synth_assets.generation.model_free import MODEL_FREE_TEMPLATE_VERSION

            return MODEL_FREE_TEMPLATE_VERSION
        from synth_assets.generation.prompts import PROMPT_VERSION

        return PROMPT_VERSION

    def chunking_version(self) -> str:
        """What decides the chunks: their size, overlap and tokenizer. Part of
        document_chunks' code version."""
        return f"{self.chunk_tokens}:{self.overlap_tokens}:{self.tokenizer_name or '-'}"

    def output_version(self) -> str:
        """What decides the pairs this resource writes: backend, model, prompt version and
        sampling. Part of generated_qa_pairs' code version, so changing any of them marks
        that asset and everything below it stale in the UI."""
        import hashlib
        import json

        settings = {"pairs_per_chunk": self.pairs_per_chunk, **self.sampling()}
        if self.task_shares != {"qa": 1.0}:  # the qa-only default keeps the versions it always had
            settings["tasks"] = format_task_shares(self.task_shares)
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.backend}:{self.model or '-'}:{self.prompt_version}:{digest}"

    def sampling(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.generation_tokens,
            "seed": self.seed,
            "n": self.n,
        }

    def engine_options(self) -> dict[str, Any]:
        return {
            "tensor_parallel_size": self.tensor_parallel_size,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "max_model_len": self.max_seq_len,
            "dtype": self.dtype,
            "quantization": self.quantization,
            "seed": self.seed,
        }

    def _cache(self):
        if not self.cache_path:
            return None
        from synth_assets.generation.cache import GenerationCache

        return GenerationCache(self.cache_path)

    def _require_model(self) -> str:
        if not self.model:
            raise dg.Failure(
                f"the {self.backend} backend needs a model: set {GENERATION_MODEL_ENV} "
                "(e.g. Qwen/Qwen2.5-7B-Instruct)"
            )
        return self.model

    def create_backend(self, log=None) -> GenerationBackend:
        """The configured backend, built once per run process and reused by every step."""
        if self._backend is not None:
            return self._backend
        if self.backend == "model_free":
            backend = ModelFreeBackend(pairs_per_chunk=self.pairs_per_chunk, log=log, task_shares=self.task_shares)
        elif self.backend in ("openai", "vllm_serve"):
            backend = self._openai_backend(log)
        elif self.backend == "vllm":
            from synth_assets.generation.vllm_backend import VLLMBackend, VLLMUnavailableError, shared_engine

            model = self._require_model()
            try:
                engine = shared_engine(model, self.engine_options())
            except VLLMUnavailableError as error:
                raise dg.Failure(str(error), allow_retries=False) from None
            backend = VLLMBackend(
                model=model, engine_options=self.engine_options(), sampling=self.sampling(),
                pairs_per_chunk=self.pairs_per_chunk, max_attempts=self.max_attempts,
                engine_batch_size=self.engine_batch_size, cache=self._cache(), log=log, engine=engine,
            )
        else:  # pydantic already refuses other names; this guards future edits
            raise dg.Failure(f"unknown generation backend {self.backend!r}")
        self._backend = backend
        return backend

    def judge(self, requests: list, log=None):
        """1-10 scores for pairs (JudgeRequest) from the configured backend: the model as
        an LLM judge with the chunk shown, or the heuristic judge for model_free."""
        return self.create_backend(log).judge(requests)

    def _openai_backend(self, log):
        from synth_assets.generation.openai_backend import OpenAIBackend

        model = self._require_model()
        base_url = self.base_url
        if self.backend == "vllm_serve":
            from synth_assets.generation.service import ServiceError, acquire

            if not self.instance_dir:
                raise dg.Failure("the vllm_serve backend records its server in the instance directory: "
                                 "set DAGSTER_HOME", allow_retries=False)
            try:
                self._lease = acquire(self.instance_dir, self.service_spec(), idle_s=self.service_idle_s,
                                      log=log.info if log else print)
            except ServiceError as error:
                raise dg.Failure(str(error)) from None
            base_url = self._lease.base_url
        backend = OpenAIBackend(
            base_url=base_url,
            base_urls=self.base_urls if self.backend == "openai" else (),
            model=model,
            api_key_env=self.api_key_env,
            pairs_per_chunk=self.pairs_per_chunk,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.generation_tokens,
            seed=self.seed,
            max_concurrency=self.max_concurrency,
            timeout_s=self.timeout_s,
            max_attempts=self.max_attempts,
            use_json_schema=self.use_json_schema,
            cache=self._cache(),
            log=log,
            # Counts the tokens of replies sent without usage: the chunks' tokenizer.
            tokenizer_name=self.tokenizer_name,
        )
        if self.backend == "vllm_serve":
            backend.generator = "vllm_serve"  # rows say the pipeline started the server
        return backend

    def service_spec(self):
        """What the generation service serves: executable, model and engine options (the
        seed is per request, so it is left out: one service for every seed)."""
        from synth_assets.generation.service import ServiceSpec

        options = {k: v for k, v in self.engine_options().items() if k != "seed"}
        return ServiceSpec(self.vllm_executable, self._require_model(), options)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        close = getattr(self._backend, "close", None)
        if close:
            close()
        self._backend = None
        if self._lease is not None:  # the service stays up for the next run
            self._lease.release()
            self._lease = None
