"""Model backends through the asset graph, against the simulated OpenAI-compatible server."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from benchmarks.sim_server import start_server_in_thread
from synth_assets.definitions import build_definitions
from synth_assets.resources.generation import GenerationResource
from synth_assets.run import run_all

SIM_SERVER = Path(__file__).resolve().parents[1] / "benchmarks" / "sim_server.py"


@pytest.fixture
def sim_server():
    base_url, stats, stop = start_server_in_thread(slots=8, ttft=0.001, tpot=0.0001, output_tokens=20)
    yield base_url, stats
    stop()


def generation_metadata(instance: dg.DagsterInstance, partition: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("generated_qa_pairs"), asset_partitions=[partition]), limit=1
    ).records
    return {key: value.value for key, value in records[0].asset_materialization.metadata.items()}


def test_openai_backend_in_the_graph_caches_every_reply(pipeline_resources, instance, sim_server, tmp_path):
    base_url, stats = sim_server
    generation = GenerationResource(
        backend="openai", model="sim-model", base_url=base_url, cache_path=str(tmp_path / "cache.duckdb")
    )
    defs = build_definitions({**pipeline_resources, "generation": generation})
    summary = run_all(defs, instance, show_progress=False)
    assert summary["failed"] == {} and summary["pairs_generated"] > 0
    sent_first = stats.snapshot()["requests"]
    assert sent_first > 0

    key = next(k for k in summary["documents"] if k.endswith(".md"))
    first = generation_metadata(instance, key)
    assert first["generator"] == "openai" and first["model"] == "sim-model"
    assert first["generation_requests"] > 0 and first["generation_cache_hits"] == 0
    assert first["generation_completion_tokens"] > 0 and "generation_completion_tokens_per_second" in first
    # What the document cost the model, per task: one reply per chunk here (no faults).
    usage = first["model_usage"]["qa"]
    assert usage["requests"] == first["chunks_sent"] and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0

    # A forced repeat (every document, up to date or not) sends nothing: every chunk's
    # reply comes from the cache.
    run_all(defs, instance, show_progress=False, force=True)
    assert stats.snapshot()["requests"] == sent_first
    again = generation_metadata(instance, key)
    assert again["generation_requests"] == 0 and again["generation_cache_hits"] == first["chunks_sent"]
    assert "model_usage" not in again  # cached replies cost nothing

    with duckdb.connect(pipeline_resources["duckdb"].database, read_only=True) as con:
        rows = con.execute("SELECT DISTINCT generator, model, prompt_version FROM generated_qa_pairs").fetchall()
    assert rows == [("openai", "sim-model", "qa-v2")]


def test_vllm_serve_starts_the_generation_service_which_outlives_the_run(pipeline_resources, instance, tmp_path):
    from synth_assets.generation.service import ServiceDir, alive, healthy, stop

    # A stand-in for `vllm serve`: takes the same arguments, serves the simulated server.
    fake_vllm = tmp_path / "fake_vllm.py"
    fake_vllm.write_text(textwrap.dedent(f"""
        import runpy, sys
        args = sys.argv[1:]
        assert args[0] == "serve" and args[2:4] == ["--host", "127.0.0.1"], args
        assert "--tensor-parallel-size" in args and "--max-model-len" in args, args
        print("fake vllm: loading model", args[1], flush=True)
        port = args[args.index("--port") + 1]
        sys.argv = ["sim_server", "--port", port, "--max-seconds", "120", "--ttft", "0.001", "--tpot", "0.0001"]
        runpy.run_path({str(SIM_SERVER)!r}, run_name="__main__")
    """))
    generation = GenerationResource(
        backend="vllm_serve", model="sim-model", vllm_executable=f"{sys.executable} {fake_vllm}",
        cache_path=str(tmp_path / "cache.duckdb"), instance_dir=str(tmp_path / "home"),
    )
    resources = {**pipeline_resources, "generation": generation}
    defs = build_definitions(resources)
    summary = run_all(defs, instance, show_progress=False)
    assert summary["failed"] == {} and summary["pairs_generated"] > 0

    key = summary["documents"][0]
    assert generation_metadata(instance, key)["generator"] == "vllm_serve"
    # The run said which service it used; the server outlives the run, logs to the
    # service's log, and stops on `make serve-stop`.
    runs = instance.get_runs(filters=dg.RunsFilter(job_name="process_documents"))
    logs = [record.user_message for run in runs for record in instance.all_logs(run.run_id)]
    # One run per document (three are fewer than the single-run threshold): one start.
    assert len(runs) == 3
    assert sum("generation service: started sim-model" in line for line in logs) == 1
    assert sum("generation service: using sim-model" in line for line in logs) == 2
    service = ServiceDir(tmp_path / "home")
    record = service.read()
    assert healthy(record) and processes_running(str(fake_vllm))
    assert "fake vllm: loading model sim-model" in service.log_path.read_text()
    assert "stopped the generation service" in stop(tmp_path / "home")
    assert not alive(record.server_pid, record.server_started) and service.read() is None


def processes_running(fragment: str) -> list[str]:
    """Command lines of live processes that mention `fragment` (Linux /proc)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fragment in text:
            found.append(text)
    return found


class JudgeCalls(GenerationResource):
    """The configured backend, recording the pair ids of each judge call."""

    def judge(self, requests: list, log=None):
        outcome = super().judge(requests, log)
        JUDGE_CALLS.append(([request.pair_id for request in requests], outcome.stats))
        return outcome


JUDGE_CALLS: list[tuple[list[str], dict]] = []


def test_the_judge_requests_of_every_document_go_out_in_one_call(
    pipeline_resources, instance, sim_server, tmp_path, monkeypatch
):
    import synth_assets.assets.curate as curate
    from synth_assets.jobs import PROCESS_DOCUMENTS_JOB
    from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME
    from synth_assets.planning import range_tags
    from synth_assets.resources.curation import CurationResource

    base_url, stats = sim_server
    generation = JudgeCalls(backend="openai", model="sim-model", base_url=base_url,
                            cache_path=str(tmp_path / "cache.duckdb"))
    resources = {**pipeline_resources, "generation": generation, "curation": CurationResource(use_judge=True)}
    keys = sorted(pipeline_resources["documents"].discover())
    docx = next(key for key in keys if key.endswith(".docx"))
    # The Word document's pairs cannot be read when its judge requests are prepared:
    # that document fails on its own, the others are judged and curated.
    load = curate.load_pairs_with_chunks

    def load_failing_for_docx(con, table, document_id):
        if document_id == docx:
            raise RuntimeError(f"{docx}: cannot read its pairs")
        return load(con, table, document_id)

    monkeypatch.setattr(curate, "load_pairs_with_chunks", load_failing_for_docx)
    JUDGE_CALLS.clear()
    instance.add_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME, keys)
    result = build_definitions(resources).resolve_job_def(PROCESS_DOCUMENTS_JOB).execute_in_process(
        instance=instance, tags=range_tags(keys[0], keys[-1]), raise_on_error=False)

    assert result.success
    # One judge call for the run, holding the pairs of both other documents.
    assert len(JUDGE_CALLS) == 1
    pair_ids, judge_stats = JUDGE_CALLS[0]
    judged_documents = {pair_id.split("#")[0] for pair_id in pair_ids}
    assert judged_documents == {key for key in keys if key != docx}
    # ... and each was judged already while generation went on: the curate step sent
    # nothing, every score came from the cache.
    assert judge_stats["judge_requests"] == 0 and judge_stats["judge_cache_hits"] == len(pair_ids)
    assert generation_metadata(instance, keys[0])["judged_while_generating"] >= len(pair_ids)
    with duckdb.connect(pipeline_resources["duckdb"].database, read_only=True) as con:
        failed = con.execute("SELECT document_id, stage, reason FROM document_failures").fetchall()
        judged = con.execute("SELECT DISTINCT document_id FROM filtered_qa_pairs WHERE judge_score IS NOT NULL"
                             ).fetchall()
    assert failed == [(docx, "filtered_qa_pairs", f"RuntimeError: {docx}: cannot read its pairs")]
    assert {row[0] for row in judged} == judged_documents
    outcomes = stats.snapshot()["outcomes"]
    assert outcomes.get("ok", 0) > 0


@pytest.mark.parametrize("backend", ["model_free", "openai", "vllm"])
def test_generated_qa_pairs_shows_the_configured_backend_as_its_kind(pipeline_resources, backend):
    generation = GenerationResource(backend=backend, model=None if backend == "model_free" else "m")
    defs = build_definitions({**pipeline_resources, "generation": generation})
    spec = defs.resolve_assets_def("generated_qa_pairs").specs_by_key[dg.AssetKey("generated_qa_pairs")]
    assert spec.kinds == {backend, "duckdb", "great_expectations"}


@pytest.mark.slow
def test_replies_with_missing_null_or_mistyped_fields_and_false_quotes_fail_no_document(
        pipeline_resources, instance, tmp_path):
    """Every task mixed, judge on, against a server whose replies leave fields out, send
    null or the wrong type, quote text that is not in the chunk and make the mistakes of
    real models: every document completes; the bad items are rejected with their reasons."""
    from synth_assets.resources.curation import CurationResource

    base_url, stats, stop = start_server_in_thread(
        slots=8, ttft=0.001, tpot=0.0001, output_tokens=20, wrong_types=0.3, messy=0.1, bad_quote=0.3,
        invented_sentence=0.2, ignored_follow_up=0.2, single_chunk_hop=0.2, unsupported_step=0.2)
    try:
        generation = GenerationResource(
            backend="openai", model="sim-model", base_url=base_url, cache_path=str(tmp_path / "cache.duckdb"),
            tasks="qa=0.4,reasoning=0.2,multi_hop=0.15,conversation=0.15,unanswerable=0.1")
        defs = build_definitions({**pipeline_resources, "generation": generation,
                                  "curation": CurationResource(use_judge=True)})
        summary = run_all(defs, instance, show_progress=False)
    finally:
        stop()
    assert stats.snapshot()["outcomes"].get("wrong_types", 0) > 0
    assert summary["failed"] == {} and summary["pairs_kept"] > 0
    with duckdb.connect(pipeline_resources["duckdb"].database, read_only=True) as con:
        reasons = {r for (r,) in con.execute("SELECT DISTINCT unnest(reject_reasons) FROM rejected_qa_pairs").fetchall()}
    assert {"citation_invalid", "unsupported_claim"} <= reasons
