"""In-process vLLM: one engine per process, every prompt of the step in one call.

`vllm.LLM.chat` takes a list of conversations and schedules them all at once, so
continuous batching keeps the GPU full; JSON-schema structured output
(`StructuredOutputsParams(json=...)`, vLLM >= 0.12) makes every reply parse. The cache,
parsing, retries (each with a new seed) and stats are model_backend.py's, shared with
the openai backend; this module is the send step. It imports without vllm: the import
happens when the engine is built.

The engine lives as long as the process (`shared_engine`): every run `make run` makes
in one process uses it, since a second `LLM` would ask for its share of GPU memory
while the first still holds it, and loading costs 30-90 s. It is shut down at exit
(`shutdown_engine`, registered with atexit) as vLLM's own tests free an engine.

Not run on a GPU by the test suite: the tests drive this code through a test double
of `vllm.LLM` (see docs/GENERATION.md).
"""

from __future__ import annotations

import atexit
import gc
import json
import threading
from typing import Any

from synth_assets.generation.cache import GenerationCache
from synth_assets.generation.model_backend import ModelBackend, Prompt, Reply, Run, judge_task, qa_task

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


# The process's engine: (model and options as JSON, vllm.LLM), or None.
_shared: tuple[str, Any] | None = None
_shared_lock = threading.Lock()
_registered = False


def shared_engine(model: str, engine_options: dict[str, Any]):
    """The process's engine for this model and options, built on first use. Another
    model or other options shut the current engine down first: one engine holds the
    GPU at a time."""
    global _shared, _registered
    key = json.dumps([model, engine_options], sort_keys=True, default=str)
    with _shared_lock:
        if _shared is not None and _shared[0] == key:
            return _shared[1]
        _shutdown_locked()
        engine = build_engine(model, engine_options)
        _shared = (key, engine)
        if not _registered:
            atexit.register(shutdown_engine)
            _registered = True
        return engine


def shutdown_engine() -> None:
    """Free the process's engine and its GPU memory (at exit; safe to call again)."""
    with _shared_lock:
        _shutdown_locked()


def _shutdown_locked() -> None:
    global _shared
    if _shared is None:
        return
    engine, _shared = _shared[1], None
    # vLLM's V1 engine runs its core in a child process: stop it first, then drop the
    # last reference, tear down the (tensor-parallel) process groups, collect and
    # release the CUDA cache, as vLLM's tests do between engines.
    engine.llm_engine.engine_core.shutdown()
    del engine
    from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

    destroy_model_parallel()
    destroy_distributed_environment()
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class VLLMBackend(ModelBackend):
    generator = "vllm"

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
            self._engine = shared_engine(self.model, self.engine_options)
        return self._engine

    def close(self) -> None:
        # The engine outlives the run: the next run of this process uses it, and
        # shutdown_engine frees it at exit.
        self._engine = None

    def _qa_task(self):
        return qa_task(self.pairs_per_chunk, self.sampling, backend="vllm", structured_output="json_schema")

    def _judge_task(self):
        return judge_task({**self.sampling, "n": 1}, backend="vllm")

    def _extra_stats(self) -> dict[str, float]:
        return {"engine_calls": 0}

    def _send(self, prompts: list[Prompt], run: Run) -> list[Prompt]:
        """Every prompt in one `LLM.chat` call (or one per engine_batch_size); returns
        the prompts to ask again."""
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        # The prompts have made the same number of attempts, so they share one seed; a
        # call mixing tasks gives each prompt its task's schema (LLM.chat takes a list
        # of SamplingParams, one per conversation).
        params = {}
        for prompt in prompts:
            task = run.task_of(prompt)
            if task.schema_name not in params:
                params[task.schema_name] = SamplingParams(
                    **run.sampling(prompt), structured_outputs=StructuredOutputsParams(json=task.schema))
        again = []
        size = self.engine_batch_size or len(prompts)
        for start in range(0, len(prompts), size):
            wave = prompts[start : start + size]
            wave_params = [params[run.task_of(p).schema_name] for p in wave]
            outputs = self.engine.chat([p.messages for p in wave],
                                       wave_params[0] if len(params) == 1 else wave_params, use_tqdm=False)
            run.extra["engine_calls"] += 1
            run.requests += len(wave)
            retry = [prompt for prompt, output in zip(wave, outputs) if run.settle(prompt, _reply(output))]
            self._info(f"vLLM: {len(wave)} prompts in one engine call, {len(retry)} to retry")
            again += retry
        return again


def _reply(output) -> Reply:
    """A vLLM RequestOutput as a Reply: every completion (n > 1 gives several)."""
    return Reply([c.text for c in output.outputs], len(output.prompt_token_ids or []),
                 sum(len(c.token_ids or []) for c in output.outputs))
