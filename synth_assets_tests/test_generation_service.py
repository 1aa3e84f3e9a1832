"""The generation service (`make serve`): one model load shared by every run.

`vllm` is played by a stand-in executable that logs each start, sleeps as weight
loading does, then serves the simulated server (benchmarks/sim_server.py) under the
model's name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from synth_assets.definitions import build_definitions
from synth_assets.generation.service import ServiceDir, ServiceError, ServiceSpec, acquire, alive, healthy, stop
from synth_assets.jobs import PROCESS_DOCUMENTS_JOB
from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME
from synth_assets.resources.generation import GenerationResource

SIM_SERVER = Path(__file__).resolve().parents[1] / "benchmarks" / "sim_server.py"
LOAD_SECONDS = 1


@pytest.fixture
def fake_vllm(tmp_path):
    """(executable, starts log): `vllm serve MODEL --port P ...` that loads for 1 s."""
    starts = tmp_path / "vllm_starts.log"
    script = tmp_path / "fake_vllm.py"
    script.write_text(textwrap.dedent(f"""
        import runpy, sys, time
        args = sys.argv[1:]
        assert args[0] == "serve", args
        with open({str(starts)!r}, "a") as log:
            log.write(" ".join(args) + "\\n")
        time.sleep({LOAD_SECONDS})  # loading the weights
        port = args[args.index("--port") + 1]
        sys.argv = ["sim_server", "--port", port, "--max-seconds", "300", "--model", args[1],
                    "--ttft", "0.001", "--tpot", "0.0001", "--output-tokens", "20"]
        runpy.run_path({str(SIM_SERVER)!r}, run_name="__main__")
    """))
    return f"{sys.executable} {script}", starts


@pytest.fixture
def home(tmp_path):
    """An instance directory; whatever service a test leaves is stopped after it."""
    directory = tmp_path / "dagster_home"
    directory.mkdir()
    yield directory
    stop(directory)


def loads(starts: Path) -> int:
    return len(starts.read_text().splitlines()) if starts.exists() else 0


def wait_until(condition, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.1)


def test_ten_single_document_runs_load_the_model_once(pipeline_resources, instance, fake_vllm, home):
    executable, starts = fake_vllm
    generation = GenerationResource(backend="vllm_serve", model="sim-model", vllm_executable=executable,
                                    instance_dir=str(home), cache_path=None, service_idle_s=120)
    job = build_definitions({**pipeline_resources, "generation": generation}).resolve_job_def(PROCESS_DOCUMENTS_JOB)
    key = next(k for k in pipeline_resources["documents"].discover() if k.endswith(".md"))
    instance.add_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME, [key])
    # The simulated server's pairs are too alike for the quality gate below generation:
    # each run goes as far as generation, the first one from the file.
    upstream = [dg.AssetKey(name) for name in ("raw_documents", "parsed_documents", "document_chunks")]
    for run in range(10):  # each a run of its own, with no cache: every chunk is asked
        selection = [*upstream, dg.AssetKey("generated_qa_pairs")] if run == 0 else [dg.AssetKey("generated_qa_pairs")]
        assert job.execute_in_process(instance=instance, partition_key=key, asset_selection=selection).success
    assert loads(starts) == 1
    runs = instance.get_runs()
    assert len(runs) == 10
    record = ServiceDir(home).read()
    assert record is not None and healthy(record)
    # Each run gave its lease back: nobody is using the service now.
    assert ServiceDir(home).live_leases() == 0


def test_a_killed_run_leaves_the_service_serving_and_the_next_run_uses_it(fake_vllm, home):
    executable, starts = fake_vllm
    spec = ServiceSpec(executable, "sim-model")
    acquire(home, spec, idle_s=120).release()
    record = ServiceDir(home).read()
    # A run (its own process) takes a lease and is killed while it holds it.
    run = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from synth_assets.generation.service import ServiceSpec, acquire
        acquire({str(home)!r}, ServiceSpec({executable!r}, "sim-model"), idle_s=120, log=lambda line: None)
        print("leased", flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    assert run.stdout.readline().strip() == "leased"
    assert ServiceDir(home).live_leases() == 1
    run.send_signal(signal.SIGKILL)
    run.wait()

    assert healthy(record)
    lease = acquire(home, spec, idle_s=120)
    assert lease.record.port == record.port and lease.record.owner_pid == record.owner_pid
    # The killed run's lease is gone; only the new one is live.
    assert ServiceDir(home).live_leases() == 1
    lease.release()
    assert loads(starts) == 1


def test_a_dead_owner_is_cleaned_up_by_the_next_start(fake_vllm, home):
    executable, starts = fake_vllm
    spec = ServiceSpec(executable, "sim-model")
    acquire(home, spec, idle_s=120).release()
    old = ServiceDir(home).read()
    os.kill(old.owner_pid, signal.SIGKILL)
    wait_until(lambda: not alive(old.owner_pid, old.owner_started), "the owner is dead")
    assert alive(old.server_pid, old.server_started)  # its server is left holding the GPU

    said = []
    lease = acquire(home, spec, idle_s=120, log=said.append)
    lease.release()
    assert any(f"owner (pid {old.owner_pid}) died" in line and f"stopped its server (pid {old.server_pid})" in line
               for line in said), said
    wait_until(lambda: not alive(old.server_pid, old.server_started), "the orphaned server is stopped")
    new = ServiceDir(home).read()
    assert new.owner_pid != old.owner_pid and healthy(new)
    assert loads(starts) == 2


def test_the_service_stops_when_idle_and_on_serve_stop(fake_vllm, home):
    executable, starts = fake_vllm
    spec = ServiceSpec(executable, "sim-model")
    acquire(home, spec, idle_s=1).release()
    record = ServiceDir(home).read()
    wait_until(lambda: ServiceDir(home).read() is None, "the idle service removes its record")
    wait_until(lambda: not alive(record.server_pid, record.server_started), "the idle service's server stops")

    acquire(home, spec, idle_s=120).release()
    record = ServiceDir(home).read()
    assert "stopped the generation service" in stop(home)
    assert ServiceDir(home).read() is None
    assert not alive(record.server_pid, record.server_started)
    assert stop(home) == "no generation service is running"
    assert loads(starts) == 2


def test_a_service_for_another_model_is_not_used(fake_vllm, home):
    executable, _ = fake_vllm
    acquire(home, ServiceSpec(executable, "sim-model"), idle_s=120).release()
    with pytest.raises(ServiceError, match="another model or options.*make serve-stop"):
        acquire(home, ServiceSpec(executable, "other-model"), idle_s=120)


def test_make_ui_starts_the_service_first_only_with_the_vllm_serve_backend(fake_vllm, home, monkeypatch):
    from synth_assets import serve

    executable, starts = fake_vllm
    make = subprocess.run(["make", "-n", "ui"], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, check=True).stdout.splitlines()
    commands = [line for line in make if "synth_assets.serve" in line or "dagster dev" in line]
    assert "synth_assets.serve --if-used" in commands[0] and "dagster dev" in commands[1], make

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("SYNTH_ASSETS_MODEL", "sim-model")
    monkeypatch.setenv("SYNTH_ASSETS_VLLM_EXECUTABLE", executable)
    monkeypatch.setenv("SYNTH_ASSETS_GENERATION_BACKEND", "model_free")
    assert serve.main(["--if-used"]) == 0
    assert ServiceDir(home).read() is None and loads(starts) == 0
    monkeypatch.setenv("SYNTH_ASSETS_GENERATION_BACKEND", "vllm_serve")
    assert serve.main(["--if-used"]) == 0
    assert healthy(ServiceDir(home).read()) and loads(starts) == 1
