"""Steps on a worker pool: the team profile with SYNTH_ASSETS_EXECUTOR=celery.

Two Celery workers on this machine (`dagster-celery worker start`), a Redis of our own on
a free port as broker and result backend, the Dagster instance in a throwaway PostgreSQL
and the tables in a DuckLake whose catalog is in it. Skipped, saying why, without Debian's
`redis-server` or PostgreSQL (`make test` installs both when run as root).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
import redis
from celery import Celery

from synth_assets.definitions import build_definitions
from synth_assets.jobs import PROCESS_DOCUMENTS_JOB
from synth_assets.planning import range_tags
from synth_assets.resources.documents import DocumentsFolder
from synth_assets.run import count_rows, register_documents, run_all
from synth_assets_tests import postgres_server
from synth_assets_tests.conftest import EXAMPLE_DOCUMENTS
from synth_assets_tests.test_team_deployment import lake, needs_postgres, team_instance

REPOSITORY = Path(__file__).resolve().parents[1]
CELERY_YAML = REPOSITORY / "deploy" / "team" / "celery.yaml"
BIN = Path(sys.executable).parent
REDIS_SERVER = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
needs_redis = pytest.mark.skipif(REDIS_SERVER is None, reason="Redis is not installed (Debian package `redis-server`; "
                                                              "`make test` installs it when run as root)")
DOCUMENTS = ("wiki.md", "asciidoc_02.asciidoc", "word_sample.docx", "table_06.html")
WORKERS = ("worker_a", "worker_b")


@contextmanager
def redis_server():
    """A Redis on a free port of 127.0.0.1, nothing saved to disk; yields its URL."""
    port = postgres_server._free_port()  # noqa: SLF001 (the same helper)
    server = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(100):
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"redis-server on port {port} did not answer")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextmanager
def celery_workers(names, broker: str, environ: dict, folder: Path):
    """`dagster-celery worker start` with deploy/team/celery.yaml once per name, one step
    at a time each; waits until every worker answers a ping; stops them after."""
    logs = {name: (folder / f"{name}.log").open("w") for name in names}
    workers = [subprocess.Popen([str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                                 "-y", str(CELERY_YAML), "-n", name, "--", "--concurrency=1"],
                                env={**environ, "PATH": f"{BIN}{os.pathsep}{environ['PATH']}"},  # it runs `celery`
                                cwd=REPOSITORY, stdout=logs[name], stderr=subprocess.STDOUT, start_new_session=True)
               for name in names]
    try:
        app = Celery(broker=broker, backend=broker)
        deadline = time.monotonic() + 120
        answered: set[str] = set()
        while len(answered) < len(names):
            if time.monotonic() > deadline or any(worker.poll() is not None for worker in workers):
                raise RuntimeError(f"the workers did not start: {[(folder / f'{n}.log').read_text()[-2000:] for n in names]}")
            answered |= {name.split("@")[0] for reply in app.control.ping(timeout=1) for name in reply}
        yield
    finally:
        for worker in workers:  # the dagster-celery command and the celery worker it started
            os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=60)
        for log in logs.values():
            log.close()


def documents_folder(root: Path) -> Path:
    root.mkdir()
    for name in DOCUMENTS:
        shutil.copy(EXAMPLE_DOCUMENTS / name, root / name)
    return root


def kept_pairs(database) -> list:
    with database.get_connection() as con:
        return con.execute("SELECT pair_id, question, answer FROM filtered_qa_pairs ORDER BY 1").fetchall()


def test_the_executor_comes_from_the_settings():
    from synth_assets.settings import Settings

    # (The broker setting is proven by the test below: its workers listen on a port of its own.)
    celery = build_definitions(settings=Settings.from_env({"SYNTH_ASSETS_EXECUTOR": "celery"}))
    job = celery.resolve_job_def(PROCESS_DOCUMENTS_JOB)
    assert job.executor_def.name == "celery"
    assert build_definitions().resolve_job_def(PROCESS_DOCUMENTS_JOB).executor_def is dg.in_process_executor
    with pytest.raises(ValueError, match="SYNTH_ASSETS_EXECUTOR"):
        Settings.from_env({"SYNTH_ASSETS_EXECUTOR": "threads"})


@pytest.fixture(scope="module")
def postgres():
    with postgres_server.running_server() as server:
        yield server


@needs_redis
@needs_postgres
def test_two_celery_workers_share_a_run_and_give_the_in_process_results(postgres, pipeline_resources, tmp_path,
                                                                        monkeypatch):
    documents = documents_folder(tmp_path / "four_documents")
    resources = {**pipeline_resources, "documents": DocumentsFolder(path=str(documents)),
                 "duckdb": lake(tmp_path / "alone")}
    with dg.instance_for_test() as alone_instance:
        alone = run_all(build_definitions(resources), alone_instance, show_progress=False)
    assert alone["failed"] == {} and alone["parsed"] == len(DOCUMENTS) and alone["pairs_kept"] > 0

    home = tmp_path / "team_home"
    instance = team_instance(home, postgres, monkeypatch)
    catalog = "postgres:" + postgres.dsn(postgres.create_database("lake"))
    team_lake = tmp_path / "team_lake"
    with redis_server() as broker, tempfile.TemporaryDirectory() as folder:
        # What every machine of the team deployment has in its environment (docs/DEPLOYMENT.md).
        environ = {**os.environ, "DAGSTER_HOME": str(home), "SYNTH_ASSETS_EXECUTOR": "celery",
                   "SYNTH_ASSETS_CELERY_BROKER": broker, "SYNTH_ASSETS_CELERY_BACKEND": broker,
                   "SYNTH_ASSETS_DOCUMENTS_DIR": str(documents), "SYNTH_ASSETS_DUCKLAKE_CATALOG": catalog,
                   "SYNTH_ASSETS_DUCKLAKE_DATA_PATH": str(team_lake / "lake_data"),
                   "SYNTH_ASSETS_EXPORT_DIR": str(tmp_path / "team_exports"),
                   "SYNTH_ASSETS_GENERATION_CACHE": str(tmp_path / "generation_cache.duckdb")}
        try:
            keys = sorted(DocumentsFolder(path=str(documents)).discover())
            register_documents(instance, keys)
            with celery_workers(WORKERS, broker, environ, Path(folder)):
                # The run's own process, as the run launcher starts it: the job from the code
                # location, its executor from the environment.
                launched = subprocess.run(
                    [str(BIN / "dagster"), "job", "execute", "-m", "synth_assets.definitions", "-a", "defs",
                     "-j", PROCESS_DOCUMENTS_JOB, "--tags", json.dumps(range_tags(keys[0], keys[-1]))],
                    env=environ, cwd=REPOSITORY, capture_output=True, text=True, timeout=900)
            runs = instance.get_runs()
            assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS, launched.stderr[-3000:]

            # Each step says, in its engine event, which Celery worker executed it.
            worker_of_step = {}
            for record in instance.get_records_for_run(runs[0].run_id).records:
                entry = record.event_log_entry
                event = entry.dagster_event
                if event is not None and event.is_engine_event and event.step_key:
                    metadata = event.engine_event_data.metadata
                    if "Celery worker" in metadata:
                        worker_of_step[event.step_key] = metadata["Celery worker"].value
            steps = {step.key for step in instance.get_execution_plan_snapshot(runs[0].execution_plan_snapshot_id).steps}
            assert set(worker_of_step) == steps, (worker_of_step, steps)
            assert {hostname.split("@")[0] for hostname in worker_of_step.values()} == set(WORKERS), worker_of_step

            team_database = lake(team_lake, catalog)
            counts = ("parsed", "chunks", "pairs_generated", "pairs_kept", "pairs_rejected")
            team = count_rows(build_definitions({**resources, "duckdb": team_database}), keys)
            assert team == {name: alone[name] for name in counts}
            assert kept_pairs(team_database) == kept_pairs(resources["duckdb"])
        finally:
            instance.dispose()
