"""The in-process vLLM backend through a test double of `vllm` (no GPU here).

These tests check what our code does with vLLM's documented offline API: one
`LLM.chat` call for every prompt of the step, sampling parameters and JSON-schema
structured output mapped from configuration, retries of unparseable replies, the
cache, and a clear error when vllm is not installed. They do not run a real engine.
"""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field

import dagster as dg
import pytest

from synth_assets.generation.base import GenerationRequest
from synth_assets.generation.cache import GenerationCache
from synth_assets.generation.prompts import qa_json_schema
from synth_assets.generation import vllm_backend
from synth_assets.generation.vllm_backend import VLLMBackend, VLLMUnavailableError, build_engine
from synth_assets.resources.generation import GenerationResource


@dataclass
class FakeCompletion:
    text: str
    token_ids: list[int] = field(default_factory=lambda: [1] * 40)


@dataclass
class FakeRequestOutput:
    outputs: list[FakeCompletion]
    prompt_token_ids: list[int] = field(default_factory=lambda: [1] * 300)


class FakeEngineCore:
    def __init__(self):
        self.shutdowns = 0

    def shutdown(self):
        self.shutdowns += 1


class FakeLLM:
    """Records every chat call; replies with valid JSON unless told to garble a chunk."""

    def __init__(self, garble_first_attempt_of: set[str] = frozenset(), always_garble: set[str] = frozenset()):
        self.llm_engine = types.SimpleNamespace(engine_core=FakeEngineCore())
        self.calls: list[tuple[list, object]] = []
        self.garble_first = set(garble_first_attempt_of)
        self.always_garble = set(always_garble)

    def chat(self, conversations, sampling_params, use_tqdm=True):
        self.calls.append((conversations, sampling_params))
        outputs = []
        for messages in conversations:
            user = messages[-1]["content"]
            marker = next((m for m in self.garble_first | self.always_garble if m in user), None)
            if marker and (marker in self.always_garble or marker in self.garble_first):
                self.garble_first.discard(marker)
                outputs.append(FakeRequestOutput([FakeCompletion("I cannot answer that")]))
                continue
            reply = {"pairs": [{"question": f"What is said about {marker or 'it'}?", "answer": "It is said.", "question_type": "factual"}]}
            outputs.append(FakeRequestOutput([FakeCompletion(json.dumps(reply))]))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch):
    """A stand-in `vllm` module with the documented SamplingParams/StructuredOutputsParams."""
    module = types.ModuleType("vllm")
    sampling_module = types.ModuleType("vllm.sampling_params")

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class StructuredOutputsParams:
        def __init__(self, json=None, **kwargs):
            self.json = json

    built = []

    class LLM(FakeLLM):
        def __init__(self, model, **options):
            super().__init__()
            built.append((model, options))

    module.SamplingParams = SamplingParams
    module.LLM = LLM
    module.built = built
    sampling_module.StructuredOutputsParams = StructuredOutputsParams
    # What shutdown_engine tears down after the engine, in order.
    module.torn_down = []
    parallel_state = types.ModuleType("vllm.distributed.parallel_state")
    parallel_state.destroy_model_parallel = lambda: module.torn_down.append("model_parallel")
    parallel_state.destroy_distributed_environment = lambda: module.torn_down.append("distributed_environment")
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling_module)
    monkeypatch.setitem(sys.modules, "vllm.distributed", types.ModuleType("vllm.distributed"))
    monkeypatch.setitem(sys.modules, "vllm.distributed.parallel_state", parallel_state)
    yield module
    # The process's engine must not outlive the fake it was built from.
    vllm_backend.shutdown_engine()


def requests_for(*names: str) -> list[GenerationRequest]:
    return [GenerationRequest(document_id="doc", chunk_id=f"doc#c{i}", text=f"Text about {name}.") for i, name in enumerate(names)]


def backend_with(engine, **kwargs) -> VLLMBackend:
    return VLLMBackend(
        model="Qwen/Qwen2.5-7B-Instruct",
        engine_options={},
        sampling={"temperature": 0.3, "top_p": 0.9, "max_tokens": 512, "seed": 7, "n": 1},
        pairs_per_chunk=3,
        engine=engine,
        **kwargs,
    )


def test_every_prompt_goes_to_the_engine_in_one_call_with_mapped_parameters(fake_vllm):
    engine = FakeLLM()
    outcome = backend_with(engine).generate(requests_for("ducks", "geese", "swans", "teal"))

    assert len(engine.calls) == 1
    conversations, params = engine.calls[0]
    assert len(conversations) == 4 and conversations[0][0]["role"] == "system"
    assert params.kwargs["temperature"] == 0.3 and params.kwargs["top_p"] == 0.9
    assert params.kwargs["max_tokens"] == 512 and params.kwargs["seed"] == 7 and params.kwargs["n"] == 1
    assert params.kwargs["structured_outputs"].json == qa_json_schema(3)
    assert len(outcome.pairs) == 4 and not outcome.failures
    assert outcome.stats["prompt_tokens"] == 4 * 300 and outcome.stats["completion_tokens"] == 4 * 40


def test_unparseable_replies_are_retried_then_recorded_without_failing_others(fake_vllm):
    engine = FakeLLM(garble_first_attempt_of={"geese"}, always_garble={"swans"})
    outcome = backend_with(engine, max_attempts=3).generate(requests_for("ducks", "geese", "swans"))

    # First call: all three; then only the two bad ones; then only the hopeless one.
    assert [len(conversations) for conversations, _ in engine.calls] == [3, 2, 1]
    assert {p.chunk_id for p in outcome.pairs} == {"doc#c0", "doc#c1"}
    assert [(f.chunk_id, f.attempts) for f in outcome.failures] == [("doc#c2", 3)]
    assert outcome.stats["retries"] == 3


def test_cached_replies_are_not_generated_again(fake_vllm, tmp_path):
    cache = GenerationCache(tmp_path / "cache.duckdb")
    first = FakeLLM()
    backend_with(first, cache=cache).generate(requests_for("ducks", "geese"))
    again = FakeLLM()
    outcome = backend_with(again, cache=cache).generate(requests_for("ducks", "geese", "swans"))

    assert [len(c) for c, _ in again.calls] == [1]  # only the new chunk reaches the engine
    assert outcome.stats["cache_hits"] == 2 and len(outcome.pairs) == 3


def test_a_cached_reply_the_parser_rejects_is_asked_again(fake_vllm, tmp_path):
    cache = GenerationCache(tmp_path / "cache.duckdb")
    requests = requests_for("ducks", "geese")
    backend = backend_with(FakeLLM(), cache=cache)
    key = backend.cache_key_for(requests[1])
    cache.put(key, model="m", prompt_version="qa-v1", reply="I cannot answer that")
    # Entries of the earlier vLLM format (a JSON list of completions) still hit.
    good = json.dumps({"pairs": [{"question": "Q?", "answer": "A.", "question_type": "factual"}]})
    cache.put(backend.cache_key_for(requests[0]), model="m", prompt_version="qa-v1", reply=json.dumps([good]))

    engine = FakeLLM()
    outcome = backend_with(engine, cache=cache).generate(requests)

    assert [len(c) for c, _ in engine.calls] == [1] and "geese" in engine.calls[0][0][0][-1]["content"]
    assert outcome.stats["cache_hits"] == 1 and not outcome.failures
    assert {p.chunk_id for p in outcome.pairs} == {"doc#c0", "doc#c1"}
    assert cache.get_many([key])[key].reply.startswith('{"pairs"')  # the rejected reply was replaced


class SeededLLM(FakeLLM):
    """Deterministic like a real engine: the same prompt with the same seed gets the same
    reply, and a chunk about geese gets a bad one at seed 7."""

    def chat(self, conversations, sampling_params, use_tqdm=True):
        self.always_garble = {"geese"} if sampling_params.kwargs.get("seed") == 7 else set()
        return super().chat(conversations, sampling_params, use_tqdm)


def test_a_retry_after_a_bad_reply_uses_another_seed(fake_vllm):
    engine = SeededLLM()
    outcome = backend_with(engine, max_attempts=3).generate(requests_for("ducks", "geese"))

    assert [(len(c), params.kwargs["seed"]) for c, params in engine.calls] == [(2, 7), (1, 8)]
    assert {p.chunk_id for p in outcome.pairs} == {"doc#c0", "doc#c1"} and not outcome.failures
    assert outcome.stats["retries"] == 1


def test_engine_options_reach_vllm_llm(fake_vllm):
    build_engine.__globals__  # the module is importable without vllm; the import is lazy
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(VLLMUnavailableError, match="CUDA"):
            build_engine("m", {"tensor_parallel_size": 2})
    resource = GenerationResource(backend="vllm", model="m", tensor_parallel_size=2, quantization="awq")
    options = resource.engine_options()
    assert options["tensor_parallel_size"] == 2 and options["quantization"] == "awq"
    assert options["max_model_len"] == resource.max_seq_len and options["gpu_memory_utilization"] == 0.9


def test_choosing_vllm_without_vllm_fails_at_setup_with_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    resource = GenerationResource(backend="vllm", model="Qwen/Qwen2.5-7B-Instruct")
    with pytest.raises(dg.Failure, match=r"\[vllm\]"):
        resource.create_backend()


class FakeJudgeLLM:
    """Replies to judge prompts: 8 for the first pair, garbage once then 3 for the second."""

    def __init__(self):
        self.calls = []
        self.garbled = False

    def chat(self, conversations, sampling_params, use_tqdm=True):
        self.calls.append((conversations, sampling_params))
        outputs = []
        for messages in conversations:
            user = messages[-1]["content"]
            if "geese" in user and not self.garbled:
                self.garbled = True
                text = "I would rate it highly"
            else:
                text = json.dumps({"score": 3 if "geese" in user else 8, "reason": "checked"})
            outputs.append(FakeRequestOutput([FakeCompletion(text)]))
        return outputs


def test_the_vllm_judge_sends_every_pair_in_one_greedy_schema_call(fake_vllm, tmp_path):
    from synth_assets.core.judge import judge_json_schema
    from synth_assets.generation.base import JudgeRequest

    requests = [JudgeRequest("a", "What do ducks eat?", "Seeds.", "Ducks eat seeds."),
                JudgeRequest("b", "What do geese eat?", "Grass.", "Geese eat grass.")]
    engine = FakeJudgeLLM()
    cache = GenerationCache(tmp_path / "cache.duckdb")
    outcome = backend_with(engine, cache=cache).judge(requests)

    assert [len(c) for c, _ in engine.calls] == [2, 1]  # one call for all, one retry
    params = engine.calls[0][1]
    assert params.kwargs["temperature"] == 0.0 and "top_p" not in params.kwargs
    assert params.kwargs["structured_outputs"].json == judge_json_schema()
    assert outcome.scores == {"a": (8, "checked"), "b": (3, "checked")} and not outcome.failures

    second = FakeJudgeLLM()
    assert backend_with(second, cache=cache).judge(requests).scores == outcome.scores
    assert second.calls == []  # both judgements came from the cache


def test_two_runs_in_one_process_build_one_engine_and_exit_shuts_it_down_once(
        fake_vllm, monkeypatch, pipeline_resources, instance):
    import torch

    from synth_assets.definitions import build_definitions
    from synth_assets.jobs import PROCESS_DOCUMENTS_JOB
    from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # build_engine asks for a GPU
    at_exit = []
    monkeypatch.setattr(vllm_backend, "atexit", types.SimpleNamespace(register=at_exit.append))
    monkeypatch.setattr(vllm_backend, "_registered", False)
    generation = GenerationResource(backend="vllm", model="m", cache_path=None)
    job = build_definitions({**pipeline_resources, "generation": generation}).resolve_job_def(PROCESS_DOCUMENTS_JOB)
    key = next(k for k in pipeline_resources["documents"].discover() if k.endswith(".md"))
    instance.add_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME, [key])
    selection = [dg.AssetKey(name) for name in
                 ("raw_documents", "parsed_documents", "document_chunks", "generated_qa_pairs")]
    for _ in range(2):  # two runs in one process, as make run makes them (no cache: both ask)
        assert job.execute_in_process(instance=instance, partition_key=key, asset_selection=selection).success

    assert len(fake_vllm.built) == 1
    engine = vllm_backend._shared[1]
    assert len(engine.calls) >= 2  # both runs asked the same engine
    assert at_exit == [vllm_backend.shutdown_engine]
    at_exit[0]()  # the interpreter exits
    at_exit[0]()
    assert engine.llm_engine.engine_core.shutdowns == 1
    assert fake_vllm.torn_down == ["model_parallel", "distributed_environment"]
    assert vllm_backend._shared is None


def test_another_model_in_the_same_process_shuts_the_first_engine_down_first(fake_vllm, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    first = vllm_backend.shared_engine("m", {"seed": 0})
    assert vllm_backend.shared_engine("m", {"seed": 0}) is first
    second = vllm_backend.shared_engine("other", {"seed": 0})
    assert second is not first and first.llm_engine.engine_core.shutdowns == 1
    assert [model for model, _ in fake_vllm.built] == ["m", "other"]


def test_engine_batch_size_is_set_by_its_variable_and_bounds_each_engine_call(fake_vllm, monkeypatch):
    from synth_assets.generation import vllm_backend
    from synth_assets.settings import Settings

    engine = FakeLLM()
    monkeypatch.setattr(vllm_backend, "build_engine", lambda model, options: engine)
    environ = {"SYNTH_ASSETS_GENERATION_BACKEND": "vllm", "SYNTH_ASSETS_MODEL": "m",
               "SYNTH_ASSETS_ENGINE_BATCH_SIZE": "2", "SYNTH_ASSETS_GENERATION_CACHE": ""}
    resource = Settings.from_env(environ).resources["generation"]
    assert resource.engine_batch_size == 2
    outcome = resource.create_backend().generate(requests_for("ducks", "geese", "swans", "teal", "eider"))
    assert [len(conversations) for conversations, _ in engine.calls] == [2, 2, 1]
    assert len(outcome.pairs) == 5 and outcome.stats["engine_calls"] == 3


class FakeEngineForBoth(FakeLLM):
    """Answers generation prompts as FakeLLM does and judge prompts with a 7; fails if
    two calls overlap (one vLLM engine serves one call at a time)."""

    def __init__(self):
        super().__init__()
        self.busy = False

    def chat(self, conversations, sampling_params, use_tqdm=True):
        assert not self.busy, "two engine calls at once"
        self.busy = True
        try:
            if "score" in json.dumps(sampling_params.kwargs["structured_outputs"].json):
                self.calls.append((conversations, sampling_params))
                return [FakeRequestOutput([FakeCompletion(json.dumps({"score": 7, "reason": "fine"}))])
                        for _ in conversations]
            return super().chat(conversations, sampling_params, use_tqdm)
        finally:
            self.busy = False


def test_generate_and_judge_in_process_judges_every_pair_in_one_call_after_generating(fake_vllm):
    from synth_assets.generation.base import JudgeRequest

    engine = FakeEngineForBoth()
    seen = []

    def judge_requests_for(request, pairs):
        seen.append(request.chunk_id)
        return [JudgeRequest(f"{request.chunk_id}#q{i}", p.question, p.answer, request.text)
                for i, p in enumerate(pairs, 1)]

    outcome, judged = backend_with(engine).generate_and_judge(
        requests_for("ducks", "geese", "swans"), judge_requests_for)
    assert len(outcome.pairs) == 3 and sorted(seen) == ["doc#c0", "doc#c1", "doc#c2"]
    assert [len(conversations) for conversations, _ in engine.calls] == [3, 3]  # generation, then the judge
    assert judged.scores == {f"doc#c{i}#q1": (7, "fine") for i in range(3)}
    assert judged.stats["judged_while_generating"] == 3
