"""The generation service (`make serve`): one model load shared by every run.

`vllm` is played by a stand-in executable that logs each start, sleeps as weight
loading does, then serves the simulated server (benchmarks/sim_server.py) under the
model's name. Like vLLM it has an engine process in its process group, which frees the
"GPU" only when it exits (after FAKE_VLLM_ENGINE_EXIT_S seconds of SIGTERM, 0 unless
set); FAKE_VLLM_LOAD_S sets the load time (1 s).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
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
    """(executable, starts log): `vllm serve MODEL --port P ...` that loads for 1 s.
    Its events (start, engine stopping, engine exit) go to vllm_events.log beside the
    starts log, in the order they happened."""
    starts = tmp_path / "vllm_starts.log"
    events = tmp_path / "vllm_events.log"
    engine = tmp_path / "fake_engine.py"
    engine.write_text(textwrap.dedent(f"""
        import ctypes, os, signal, sys, time
        signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGTERM}})
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: no engine outlives its server
        if os.getppid() != int(sys.argv[1]):  # it died before that
            sys.exit()
        def note(event):
            with open({str(events)!r}, "a") as log:
                log.write(event + " " + sys.argv[1] + "\\n")
        signal.sigwait({{signal.SIGTERM}})
        note("stopping")
        time.sleep(float(os.environ.get("FAKE_VLLM_ENGINE_EXIT_S", "0")))  # freeing the GPU
        note("exit")
    """))
    script = tmp_path / "fake_vllm.py"
    script.write_text(textwrap.dedent(f"""
        import os, runpy, subprocess, sys, time
        time.sleep(float(os.environ.get("FAKE_VLLM_START_S", "0")))  # a loaded machine, before the first line
        args = sys.argv[1:]
        assert args[0] == "serve", args
        with open({str(starts)!r}, "a") as log:
            log.write(" ".join(args) + "\\n")
        with open({str(events)!r}, "a") as log:
            log.write(f"start {{os.getpid()}}\\n")
        subprocess.Popen([sys.executable, {str(engine)!r}, str(os.getpid())])  # same process group
        time.sleep(float(os.environ.get("FAKE_VLLM_LOAD_S", {LOAD_SECONDS})))  # loading the weights
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
    assert not alive(old.server_pid, old.server_started)  # stopped before the new one started
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


def test_a_run_arriving_while_the_idle_service_stops_waits_for_its_server_to_exit(fake_vllm, home,
                                                                                 monkeypatch):
    executable, starts = fake_vllm
    events = starts.with_name("vllm_events.log")
    monkeypatch.setenv("FAKE_VLLM_ENGINE_EXIT_S", "3")  # the engine frees the GPU 3 s after SIGTERM
    spec = ServiceSpec(executable, "sim-model")
    acquire(home, spec, idle_s=1).release()
    wait_until(lambda: "stopping" in events.read_text(), "the idle owner stops its server")
    acquire(home, spec, idle_s=120).release()  # in the gap: the first server is still exiting
    # The second server started only after the first one's engine had exited: never two.
    assert [line.split()[0] for line in events.read_text().splitlines()] == ["start", "stopping", "exit", "start"]
    assert loads(starts) == 2


def test_a_stray_file_in_the_leases_folder_does_not_stop_the_service(fake_vllm, home):
    executable, _ = fake_vllm
    acquire(home, ServiceSpec(executable, "sim-model"), idle_s=2).release()
    directory = ServiceDir(home)
    (directory.leases / "notes.txt").write_text("not a lease")
    (directory.leases / "abc-def").touch()
    # The owner reads the leases every half second: it stops for idleness, not a crash.
    wait_until(lambda: directory.read() is None, "the idle service removes its record")
    log = directory.log_path.read_text()
    assert "idle for 2 s, stopping" in log and "Traceback" not in log, log
    assert (directory.leases / "notes.txt").exists()  # not ours to remove


def test_serve_stop_during_the_model_load_stops_it(fake_vllm, home, monkeypatch):
    executable, starts = fake_vllm
    monkeypatch.setenv("FAKE_VLLM_LOAD_S", "120")
    monkeypatch.setenv("FAKE_VLLM_START_S", "1")  # as slow to begin as on a loaded machine
    refused: list[Exception] = []

    def run() -> None:
        try:
            acquire(home, ServiceSpec(executable, "sim-model"), idle_s=120, startup_timeout_s=60)
        except ServiceError as error:
            refused.append(error)

    waiting = threading.Thread(target=run, daemon=True)
    waiting.start()
    # Loading: the server is recorded and has begun (its pid is recorded when it is spawned,
    # before a loaded machine has run its first line).
    wait_until(lambda: getattr(ServiceDir(home).read(), "server_pid", None) is not None and loads(starts) == 1,
               "the model is loading")
    record = ServiceDir(home).read()
    assert "stopped the generation service" in stop(home, grace_s=10)
    assert not alive(record.server_pid, record.server_started) and ServiceDir(home).read() is None
    # The run that was waiting for the load is told, and does not start another server.
    waiting.join(10)
    assert "stopped while it was starting" in str(refused[0])
    assert loads(starts) == 1


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
