"""The fault suite's long half: figures for docs/RELIABILITY.md.

    .venv/bin/python benchmarks/bench_reliability.py

1. faults: the openai backend against the simulated server (own process) with 20% of
   requests faulty (HTTP 500, 429, stalls past the timeout, dropped connections,
   malformed, truncated and empty replies): every chunk must end generated or
   recorded as failed with its reason.
2. crash in generation: `python -m synth_assets.run` on the example corpus with the
   openai backend, SIGKILLed while it generates, then run again: how many generations
   the resumed run repeats, whether the database opens, duplicate rows.
3. crash in a DuckDB write: a process replacing 20,000 rows in a loop, SIGKILLed 20
   times at varied moments: the file opens and holds one whole write each time.
4. concurrent runs: four process_documents runs for different documents at once, in
   four processes, against one DuckDB file and one instance.
5. bad inputs: a folder of hostile files beside good ones, through the whole pipeline:
   each bad file's message, and the good documents' fate.
6. daemon restart: the documents sensor in a real dagster-daemon, killed and
   restarted, then a new file: runs requested per document.
7. secrets: the API key of runs 1-2 (the server echoes it in its error bodies) searched
   for in every file, table, run event and console line they produced.

Prints Markdown tables and writes benchmarks/results/reliability.json.
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
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import duckdb  # noqa: E402

from benchmarks.bench_generation import corpus_chunks, replicate  # noqa: E402
from benchmarks.duckdb_writer import start_writer  # noqa: E402
from benchmarks.sim_server import start_server_process  # noqa: E402
from synth_assets.generation.openai_backend import OpenAIBackend  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "reliability.json"
SECRET = "sk-bench-4Rf9-must-never-appear-0c1d"
KEY_ENV = "BENCH_RELIABILITY_KEY"
FAULTS = {"fail_500": 0.03, "fail_429": 0.03, "malformed": 0.03, "truncated": 0.03,
          "empty": 0.03, "stall": 0.03, "drop": 0.02}  # 20% of requests


def fault_run() -> dict:
    requests = replicate(corpus_chunks()[0], 8)
    base_url, server_stats, stop = start_server_process(
        slots=32, ttft=0.05, tpot=0.002, output_tokens=100, api_key_env=KEY_ENV,
        echo_auth_in_errors=True, stall_s=5.0, retry_after=0.2, **FAULTS)
    try:
        # The resource's defaults: 3 attempts; a 2 s timeout stands in for 120 s.
        backend = OpenAIBackend(base_url=base_url, model="sim-model", api_key_env=KEY_ENV,
                                pairs_per_chunk=5, max_attempts=3, timeout_s=2.0)
        started = time.perf_counter()
        outcome = backend.generate(requests)
        wall = time.perf_counter() - started
        server = server_stats()
    finally:
        stop()
    generated = {p.chunk_id for p in outcome.pairs}
    failed = {f.chunk_id: f.error for f in outcome.failures}
    reasons = Counter(error.split(":")[0][:60] for error in failed.values())
    injected = {k: v for k, v in server["outcomes"].items() if k != "ok"}
    return {
        "chunks": len(requests), "generated": len(generated), "failed": len(failed),
        "lost": len(requests) - len(generated) - len(failed), "http_requests": server["requests"],
        "faults_injected": injected, "faults_injected_total": sum(injected.values()),
        "retries": outcome.stats["retries"], "failure_reasons": dict(reasons), "wall_s": round(wall, 1),
        "texts": [*failed.values(), str(outcome.stats)],
    }


def _pipeline_env(work: Path, base_url: str) -> dict:
    home = work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    return {
        **os.environ, "DAGSTER_HOME": str(home), KEY_ENV: SECRET,
        "SYNTH_ASSETS_GENERATION_BACKEND": "openai", "SYNTH_ASSETS_MODEL": "sim-model",
        "SYNTH_ASSETS_OPENAI_BASE_URL": base_url, "SYNTH_ASSETS_API_KEY_ENV": KEY_ENV,
        "SYNTH_ASSETS_MAX_CONCURRENCY": "4",
        "SYNTH_ASSETS_DUCKDB_PATH": str(work / "synth_assets.duckdb"),
        "SYNTH_ASSETS_GENERATION_CACHE": str(work / "generation_cache.duckdb"),
        "SYNTH_ASSETS_EXPORT_DIR": str(work / "exports"),
        "SYNTH_ASSETS_DOCUMENTS_DIR": str(ROOT / "examples" / "documents"),
    }


def crash_in_generation(work: Path) -> dict:
    """Kill `python -m synth_assets.run` mid-generation, run it again to the end."""
    base_url, server_stats, stop = start_server_process(
        slots=2, ttft=0.3, tpot=0.0, output_tokens=100, api_key_env=KEY_ENV, echo_auth_in_errors=True,
        fail_500=0.1)
    env = _pipeline_env(work, base_url)
    command = [sys.executable, "-m", "synth_assets.run", "--no-progress"]
    printed = []
    try:
        first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True)
        deadline = time.monotonic() + 600
        while sum(server_stats()["answered"].values()) < 20:  # a few documents in
            if first.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the run ended before it could be killed: " + first.stdout.read()[-2000:])
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
        printed.append(first.communicate()[0])
        before = server_stats()["answered"]
        with duckdb.connect(env["SYNTH_ASSETS_GENERATION_CACHE"], read_only=True) as con:
            committed = con.execute("SELECT count(*) FROM generation_cache").fetchone()[0]
        second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
        printed += [second.stdout, second.stderr]
        after = server_stats()["answered"]
    finally:
        stop()
    repeated = sum(count - 1 for count in after.values() if count > 1)
    with duckdb.connect(env["SYNTH_ASSETS_DUCKDB_PATH"], read_only=True) as con:
        pairs, distinct = con.execute("SELECT count(*), count(DISTINCT pair_id) FROM generated_qa_pairs").fetchone()
        chunk_rows, chunk_ids = con.execute("SELECT count(*), count(DISTINCT chunk_id) FROM document_chunks").fetchone()
        failures = con.execute("SELECT count(*) FROM generation_failures").fetchone()[0]
    return {
        "answered_before_kill": sum(before.values()), "committed_before_kill": committed,
        "chunks_answered_in_all": len(after),
        "repeated_generations": repeated, "second_run_exit_code": second.returncode,
        "database_opens": True, "duplicate_pair_rows": pairs - distinct,
        "duplicate_chunk_rows": chunk_rows - chunk_ids, "generation_failures_recorded": failures,
        "pairs": pairs, "summary": second.stdout.strip().splitlines()[-8:], "texts": printed,
    }


def crash_in_duckdb_write(work: Path, kills: int = 20, rows: int = 20_000) -> dict:
    database = work / "killed.duckdb"
    whole, opened = 0, 0
    for round_ in range(kills):
        writer = start_writer(database, "doc", writes=10_000, rows=rows)
        committed = [int(writer.stdout.readline()) for _ in range(2)]
        time.sleep(0.013 * (round_ % 10))  # spread the kills over a write (~0.15 s each)
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        with duckdb.connect(str(database)) as con:
            opened += 1
            count, versions, last = con.execute(
                "SELECT count(*), count(DISTINCT prompt_version), max(prompt_version) FROM generated_qa_pairs"
            ).fetchone()
        if count == rows and versions == 1 and int(last.split("-")[1]) >= committed[-1]:
            whole += 1
    return {"kills": kills, "database_opened": opened, "whole_write_after_kill": whole}


_ONE_DOCUMENT_RUN = """
import sys, dagster as dg
from synth_assets.definitions import defs
with dg.DagsterInstance.get() as instance:
    result = defs.resolve_job_def("process_documents").execute_in_process(
        partition_key=sys.argv[1], instance=instance, raise_on_error=False)
print("SUCCESS" if result.success else "FAILURE")
for event in result.all_events:
    if event.is_step_failure:
        print(event.step_failure_data.error.message.splitlines()[0])
"""


def concurrent_runs(work: Path) -> dict:
    import dagster as dg

    from synth_assets.core.documents import discover_documents

    folder = work / "documents"
    folder.mkdir(parents=True)
    names = ["wiki.md", "asciidoc_02.asciidoc", "word_sample.docx", "powerpoint_sample.pptx"]
    for name in names:
        shutil.copy(ROOT / "examples" / "documents" / name, folder / name)
    env = {**_pipeline_env(work, "http://127.0.0.1:9/v1"), "SYNTH_ASSETS_GENERATION_BACKEND": "model_free",
           "SYNTH_ASSETS_DOCUMENTS_DIR": str(folder)}
    keys = sorted(discover_documents(folder))
    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("documents", keys)
    started = time.perf_counter()
    runs = [subprocess.Popen([sys.executable, "-c", _ONE_DOCUMENT_RUN, key], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for key in keys]
    outputs = [run.communicate(timeout=900) for run in runs]
    wall = time.perf_counter() - started
    # The same four runs one after another, into another database: the row counts the
    # concurrent runs must match.
    sequential_env = {**env, "SYNTH_ASSETS_DUCKDB_PATH": str(work / "sequential.duckdb")}
    for key in keys:
        subprocess.run([sys.executable, "-c", _ONE_DOCUMENT_RUN, key], cwd=ROOT, env=sequential_env,
                       capture_output=True, check=True, timeout=900)
    lock_errors = sum("lock" in (out + err).lower() and "Could not set lock" in (out + err) for out, err in outputs)
    succeeded = sum(out.strip().splitlines()[-1:] == ["SUCCESS"] for out, _ in outputs)
    def row_counts(database: str) -> dict:
        with duckdb.connect(database, read_only=True) as con:
            return {
                table: dict(sorted(con.execute(f"SELECT document_id, count(*) FROM {table} GROUP BY ALL").fetchall()))
                for table in ("raw_documents", "parsed_documents", "document_chunks", "generated_qa_pairs",
                              "filtered_qa_pairs", "rejected_qa_pairs", "alpaca_examples", "sharegpt_examples")
            }

    concurrent, sequential = row_counts(env["SYNTH_ASSETS_DUCKDB_PATH"]), row_counts(sequential_env["SYNTH_ASSETS_DUCKDB_PATH"])
    return {"runs": len(keys), "succeeded": succeeded, "lock_failures": lock_errors, "wall_s": round(wall, 1),
            "rows_same_as_sequential_runs": concurrent == sequential,
            "rows": sum(n for counts in concurrent.values() for n in counts.values()), "row_counts": concurrent,
            "failures": [out for out, _ in outputs if "SUCCESS" not in out]}


def bad_inputs(work: Path) -> dict:
    import dagster as dg

    from synth_assets.core.documents import discover_documents
    from synth_assets.definitions import build_definitions
    from synth_assets.resources.documents import DocumentsFolder
    from synth_assets.resources.export import ExportSettings
    from synth_assets.resources.generation import GenerationResource
    from synth_assets.resources.storage import PipelineDatabase
    from synth_assets.run import run_all
    from synth_assets_tests.test_parsing import BAD_INPUTS, _make_bad_input

    folder = work / "hostile"
    folder.mkdir()
    for kind in sorted(BAD_INPUTS):
        _make_bad_input(kind, folder)
    with open(folder / "too big.pdf", "wb") as big:  # over the default 50 MB limit
        big.write(b"%PDF-1.4\n")
        big.truncate(51 * 1024 * 1024)
    outside = work / "outside.md"
    outside.write_text("# Secret\n\nThis file is outside the documents folder.\n", encoding="utf-8")
    (folder / "link to outside.md").symlink_to(outside)
    good = {"wiki.md": "Ann's \"wiki\" – café notes.md", "word_sample.docx": "word_sample.docx"}
    for source, name in good.items():
        shutil.copy(ROOT / "examples" / "documents" / source, folder / name)

    defs = build_definitions({
        "documents": DocumentsFolder(path=str(folder)),
        "duckdb": PipelineDatabase(database=str(work / "hostile.duckdb")),
        "generation": GenerationResource(cache_path=None),
        "export": ExportSettings(export_dir=str(work / "hostile_exports")),
    })
    (work / "hostile_home").mkdir()
    with dg.instance_for_test(temp_dir=str(work / "hostile_home")) as instance:
        summary = run_all(defs, instance, show_progress=False)
    files = sorted(p.name for p in folder.iterdir())
    registered = set(summary["documents"])
    discovered = {path.name for path in discover_documents(folder).values()}
    return {
        "files": len(files), "registered": len(registered), "failed": summary["failed"],
        "blocked_by_checks": summary["blocked_by_checks"],
        "not_registered": sorted(set(files) - discovered),
        "succeeded": sorted(registered - set(summary["failed"]) - set(summary["blocked_by_checks"])),
        "export_ok": summary["export_ok"], "pairs_kept": summary["pairs_kept"],
    }


def daemon_restart(work: Path) -> dict:
    """The documents sensor in a real `dagster-daemon`: two documents, kill -9 the
    daemon, restart it, then add a third. Runs stay queued (max_concurrent_runs 0), so
    what is counted is what the sensor requested."""
    import dagster as dg

    folder = work / "documents"
    folder.mkdir(parents=True)
    for name in ("wiki.md", "word_sample.docx"):
        shutil.copy(ROOT / "examples" / "documents" / name, folder / name)
    env = {**_pipeline_env(work, "http://127.0.0.1:9/v1"),
           "SYNTH_ASSETS_GENERATION_BACKEND": "model_free", "SYNTH_ASSETS_DOCUMENTS_DIR": str(folder),
           "SYNTH_ASSETS_SENSOR_INTERVAL_S": "5"}
    home = Path(env["DAGSTER_HOME"])
    (home / "dagster.yaml").write_text(  # queue runs, launch none
        "telemetry:\n  enabled: false\nconcurrency:\n  runs:\n    max_concurrent_runs: 0\n")
    os.environ["DAGSTER_HOME"] = str(home)

    def sensor_runs() -> list:
        with dg.DagsterInstance.get() as instance:
            return [run for run in instance.get_runs() if "synth_assets/trigger" in run.tags]

    command = [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")]

    def wait_for(count: int, seconds: float) -> int:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if len(sensor_runs()) >= count:
                break
            time.sleep(1)
        return len(sensor_runs())

    daemon = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        first = wait_for(2, 120)
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait(10)
        daemon = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(40)  # several sensor intervals after the restart
        after_restart = len(sensor_runs())
        shutil.copy(ROOT / "examples" / "documents" / "asciidoc_02.asciidoc", folder / "asciidoc_02.asciidoc")
        after_new_file = wait_for(after_restart + 1, 120)
        time.sleep(15)
        final = sensor_runs()
    finally:
        os.killpg(daemon.pid, signal.SIGKILL)
    keys = Counter(run.tags.get("dagster/partition") for run in final)
    return {"runs_requested_for_2_documents": first, "runs_after_kill_and_restart": after_restart,
            "runs_after_a_third_file": after_new_file, "runs_per_document": dict(keys),
            "processed_twice": sum(1 for n in keys.values() if n > 1)}


def secrets_found(work: Path, texts: list[str]) -> dict:
    hits = [str(p.relative_to(work)) for p in work.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    for database in work.rglob("*.duckdb"):
        with duckdb.connect(str(database), read_only=True) as con:
            for table, column in con.execute(
                "SELECT table_name, column_name FROM information_schema.columns WHERE data_type LIKE 'VARCHAR%'"
            ).fetchall():
                if con.execute(f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS VARCHAR) LIKE ?', [f"%{SECRET}%"]).fetchone()[0]:
                    hits.append(f"{database.name}:{table}.{column}")
    hits += [f"console/outcome text #{i}" for i, text in enumerate(texts) if SECRET in text]
    searched = sum(1 for p in work.rglob("*") if p.is_file())
    return {"files_searched": searched, "texts_searched": len(texts), "secrets_found": len(hits), "where": hits}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="run only these parts (faults, crash_in_generation, ...)")
    only = parser.parse_args().only
    os.environ[KEY_ENV] = SECRET  # the simulated servers require it; the runs send it
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-reliability-") as tmp:
        work = Path(tmp)
        for name, step in [("faults", lambda: fault_run()),
                           ("crash_in_generation", lambda: crash_in_generation(work / "crash")),
                           ("crash_in_duckdb_write", lambda: crash_in_duckdb_write(work)),
                           ("concurrent_runs", lambda: concurrent_runs(work / "concurrent")),
                           ("bad_inputs", lambda: bad_inputs(work)),
                           ("daemon_restart", lambda: daemon_restart(work / "daemon"))]:
            if only and name not in only:
                continue
            started = time.perf_counter()
            print(f"-- {name} ...", flush=True)
            results[name] = step()
            results[name]["bench_s"] = round(time.perf_counter() - started, 1)
            shown = {k: v for k, v in results[name].items() if k not in ("texts", "rows")}
            print(json.dumps(shown, indent=1, ensure_ascii=False), flush=True)
        texts = [t for part in results.values() for t in part.pop("texts", [])]
        results["secrets"] = secrets_found(work, texts)
        print(json.dumps(results["secrets"], indent=1))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
