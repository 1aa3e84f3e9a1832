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

    # A forced repeat (every document, up to date or not) sends nothing: every chunk's
    # reply comes from the cache.
    run_all(defs, instance, show_progress=False, force=True)
    assert stats.snapshot()["requests"] == sent_first
    again = generation_metadata(instance, key)
    assert again["generation_requests"] == 0 and again["generation_cache_hits"] == first["chunks_sent"]

    with duckdb.connect(pipeline_resources["duckdb"].database, read_only=True) as con:
        rows = con.execute("SELECT DISTINCT generator, model, prompt_version FROM generated_qa_pairs").fetchall()
    assert rows == [("openai", "sim-model", "qa-v1")]


def test_managed_vllm_serve_is_started_and_stopped(pipeline_resources, instance, tmp_path):
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
        cache_path=str(tmp_path / "cache.duckdb"),
    )
    resources = {**pipeline_resources, "generation": generation}
    defs = build_definitions(resources)
    summary = run_all(defs, instance, show_progress=False)
    assert summary["failed"] == {} and summary["pairs_generated"] > 0

    key = summary["documents"][0]
    assert generation_metadata(instance, key)["generator"] == "vllm_serve"
    # The server's log reached the Dagster log, and the server was stopped at teardown.
    logs = [
        record.user_message
        for record in instance.all_logs(instance.get_runs(limit=1, filters=dg.RunsFilter(job_name="process_documents"))[0].run_id)
    ]
    assert any("[vllm serve] fake vllm: loading model sim-model" in line for line in logs)
    assert not processes_running(str(fake_vllm))


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
