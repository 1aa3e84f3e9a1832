"""Model loads with the generation service, and a one-document run launched from the UI
against `make run` (issue 15). Nothing here needs a GPU.

`vllm` is played by a stand-in executable that logs each start, sleeps --load-s seconds
(20: weight loading) and then serves the simulated server (sim_server.py) under the
model's name. Each part uses a fresh instance under /tmp and the repository's
dagster.yaml and workspace.yaml, with the `vllm_serve` backend (parts `make-runs`,
`daemon`) or the model-free one (`ui-launch`):

- make-runs: `make serve`'s code (python -m synth_assets.serve), then ten times: one
  document added to the folder, `python -m synth_assets.run` (what `make run` runs).
- daemon: `dagster dev` (webserver and daemon). The documents sensor is stopped, a
  two-document run over a partition range (what a single-run backfill launched from
  the UI becomes) is submitted through the webserver's GraphQL with the service down,
  then another with it up; then the sensor is started and five documents are dropped
  into the folder one at a time, each waited for until its run ends.
- ui-launch: `dagster dev`, the sensor stopped; one document's run submitted through
  GraphQL (as the UI's Launch button does), timed from submission to the end of the
  run; then `python -m synth_assets.run` timed for another single new document.

    .venv/bin/python benchmarks/bench_model_loads.py [--parts make-runs,daemon,ui-launch] [--load-s 20]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import dagster as dg
import httpx
from dagster._core.instance.ref import InstanceRef
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
WIKI = (REPO / "examples" / "documents" / "wiki.md").read_text(encoding="utf-8")
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


class Session:
    """A fresh instance, documents folder and tables under /tmp."""

    def __init__(self, name: str, backend: str, load_s: float) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"bench_loads_{name}_", dir="/tmp"))
        self.home, self.docs, self.starts = self.root / "home", self.root / "docs", self.root / "vllm_starts.log"
        self.home.mkdir()
        self.docs.mkdir()
        shutil.copy(REPO / "dagster.yaml", self.home / "dagster.yaml")
        fake = self.root / "fake_vllm.py"
        fake.write_text(textwrap.dedent(f"""
            import runpy, sys, time
            args = sys.argv[1:]
            with open({str(self.starts)!r}, "a") as log:
                log.write(f"{{time.time():.1f}} " + " ".join(args) + "\\n")
            time.sleep({load_s})  # loading the weights
            port = args[args.index("--port") + 1]
            sys.argv = ["sim_server", "--port", port, "--max-seconds", "3600", "--model", args[1],
                        "--ttft", "0.01", "--tpot", "0.001", "--output-tokens", "60"]
            runpy.run_path({str(REPO / "benchmarks" / "sim_server.py")!r}, run_name="__main__")
        """))
        self.env = {
            **os.environ, "DAGSTER_HOME": str(self.home), "SYNTH_ASSETS_DOCUMENTS_DIR": str(self.docs),
            "SYNTH_ASSETS_DUCKDB_PATH": str(self.root / "pipeline.duckdb"),
            "SYNTH_ASSETS_EXPORT_DIR": str(self.root / "exports"),
            # No cache: every run asks the server, so each one needs it.
            "SYNTH_ASSETS_GENERATION_CACHE": "", "SYNTH_ASSETS_SENSOR_INTERVAL_S": "5",
            "SYNTH_ASSETS_GENERATION_BACKEND": backend, "SYNTH_ASSETS_MODEL": "sim-model",
            "SYNTH_ASSETS_VLLM_EXECUTABLE": f"{PYTHON} {fake}", "SYNTH_ASSETS_SERVICE_IDLE_S": "900",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GX_ANALYTICS_ENABLED": "False",
            "DAGSTER_DISABLE_TELEMETRY": "1",
        }
        self.added = 0
        self.dev: subprocess.Popen | None = None

    def loads(self) -> int:
        return len(self.starts.read_text().splitlines()) if self.starts.exists() else 0

    def add_document(self) -> str:
        """A new Markdown document (the example wiki page under a title of its own)."""
        self.added += 1
        name = f"note_{self.added:02d}.md"
        (self.docs / name).write_text(f"# Note {self.added}\n\nNote {self.added} of the benchmark.\n\n{WIKI}",
                                      encoding="utf-8")
        return name

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([PYTHON, *args], cwd=REPO, env=self.env, capture_output=True, text=True)

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(self.home)))

    # -- dagster dev ---------------------------------------------------------------

    def start_dev(self) -> DagsterGraphQLClient:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        log = open(self.root / "dagster_dev.log", "w")
        self.dev = subprocess.Popen(
            [str(Path(PYTHON).parent / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=5).status_code == 200:
                    break
            time.sleep(1)
        else:
            raise RuntimeError(f"dagster dev did not answer; see {self.root / 'dagster_dev.log'}")
        return DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=600)

    def sensor(self, action: str) -> None:
        done = subprocess.run([str(Path(PYTHON).parent / "dagster"), "sensor", action, "documents_sensor",
                               "-w", "workspace.yaml"], cwd=REPO, env=self.env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"dagster sensor {action}: {done.stderr[-2000:]}")

    def stop_dev(self) -> None:
        if self.dev is not None:
            os.killpg(self.dev.pid, signal.SIGTERM)
            try:
                self.dev.wait(timeout=120)
            except subprocess.TimeoutExpired:  # under load its children may not stop in time
                os.killpg(self.dev.pid, signal.SIGKILL)
                self.dev.wait()
            self.dev = None

    def stop_service(self) -> str:
        return self.run("-m", "synth_assets.serve", "--stop").stdout.strip()


def say(line: str) -> None:
    print(line, flush=True)


def wait_for_run(instance: dg.DagsterInstance, run_id: str, timeout_s: float = 1200) -> dg.DagsterRun:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run.status in FINISHED:
            return run
        time.sleep(0.5)
    raise RuntimeError(f"run {run_id} did not finish within {timeout_s} s")


def submit(client: DagsterGraphQLClient, tags: dict[str, str]) -> str:
    # The webserver may answer before the code location has loaded: ask again until then.
    deadline = time.monotonic() + 300
    while True:
        try:
            return client.submit_job_execution("process_documents", repository_location_name="synth_assets",
                                               repository_name="__repository__", tags=tags)
        except DagsterGraphQLClientError as error:
            if time.monotonic() > deadline:
                raise
            print(f"  (submission refused, asking again: {str(error)[:200]})", flush=True)
            time.sleep(2)


def run_seconds(instance: dg.DagsterInstance, run_id: str) -> float:
    record = instance.get_run_record_by_id(run_id)
    return record.end_time - record.start_time


def part_make_runs(load_s: float) -> None:
    session = Session("make_runs", "vllm_serve", load_s)
    try:
        served = session.run("-m", "synth_assets.serve")
        assert served.returncode == 0, served.stderr
        times = []
        for _ in range(10):
            session.add_document()
            started = time.perf_counter()
            done = session.run("-m", "synth_assets.run", "--no-progress")
            times.append(time.perf_counter() - started)
            generated = next((line for line in done.stdout.splitlines() if "pairs generated" in line), None)
            if generated is None or generated.split()[-1] == "0":  # no cache: pairs mean the server answered
                raise RuntimeError(f"make run generated nothing:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
            say(f"  make run {len(times)}: {times[-1]:.1f} s, {generated.strip()}")
        say(f"ten single-document make runs, service started by make serve: {session.loads()} load(s)")
    finally:
        session.stop_service()


def part_daemon(load_s: float) -> None:
    session = Session("daemon", "vllm_serve", load_s)
    try:
        client = session.start_dev()
        session.sensor("stop")
        instance = session.instance()
        for service in ("down", "up"):
            before = session.loads()
            keys = [session.add_document(), session.add_document()]
            instance.add_dynamic_partitions("documents", keys)
            started = time.perf_counter()
            run = wait_for_run(instance, submit(client, {RANGE_START: keys[0], RANGE_END: keys[1]}))
            say(f"two-document run launched through the webserver, service {service}: "
                       f"{session.loads() - before} load(s), {run.status.value}, "
                       f"{time.perf_counter() - started:.1f} s from submission")
        session.sensor("start")
        before = session.loads()
        for _ in range(5):
            key = session.add_document()
            deadline = time.monotonic() + 1200
            while True:
                runs = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": key}))
                if runs and runs[0].status in FINISHED:
                    say(f"  dropped {key}: its run (by the sensor) {runs[0].status.value}")
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no finished run for {key}")
                time.sleep(1)
        say(f"five documents dropped one at a time, daemon running, service up: "
                   f"{session.loads() - before} load(s)")
        say(f"whole daemon session: {session.loads()} load(s)")
    finally:
        session.stop_dev()
        session.stop_service()


def part_ui_launch() -> None:
    session = Session("ui_launch", "model_free", 0)
    try:
        client = session.start_dev()
        session.sensor("stop")
        instance = session.instance()
        for attempt in (1, 2):
            key = session.add_document()
            instance.add_dynamic_partitions("documents", [key])
            started = time.perf_counter()
            run_id = submit(client, {"dagster/partition": key})
            run = wait_for_run(instance, run_id)
            say(f"UI launch {attempt} ({key}): {time.perf_counter() - started:.1f} s from submission to the "
                       f"end ({run.status.value}), of which the run itself {run_seconds(instance, run_id):.1f} s")
        session.add_document()
        started = time.perf_counter()
        done = session.run("-m", "synth_assets.run", "--no-progress")
        total = time.perf_counter() - started
        last = instance.get_runs(dg.RunsFilter(job_name="process_documents"), limit=1)[0]
        say(f"make run of one new document: {total:.1f} s for the command (exit {done.returncode}; it also "
                   f"rebuilds the dataset), of which its process_documents run {run_seconds(instance, last.run_id):.1f} s")
    finally:
        session.stop_dev()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="make-runs,daemon,ui-launch")
    parser.add_argument("--load-s", type=float, default=20.0, help="the stand-in vllm's loading time")
    args = parser.parse_args()
    parts = {"make-runs": lambda: part_make_runs(args.load_s), "daemon": lambda: part_daemon(args.load_s),
             "ui-launch": part_ui_launch}
    print(f"uptime: {os.getloadavg()}")
    for name in args.parts.split(","):
        started = time.perf_counter()
        parts[name]()
        print(f"[{name}: {time.perf_counter() - started:.0f} s; load average {os.getloadavg()}]", flush=True)


if __name__ == "__main__":
    main()
