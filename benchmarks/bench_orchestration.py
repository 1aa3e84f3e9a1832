"""Orchestration at 10,000, 50,000 and 100,000 documents (issue 29), on synthetic state.

    .venv/bin/python benchmarks/bench_orchestration.py [--sizes 10000 50000 100000] [--no-ui]
        [--profile DIR] [--work DIR]

What a completed run of N documents leaves behind is synthesised, not computed: no
100,000 files are parsed. One real `run_all` (what `make run` runs) over two small
documents in one single-run backfill gives the template: its rows in the pipeline's
DuckDB tables and its records in the Dagster instance (per document: 9 planned and 9
materialization events with their data-version tags and input event pointers, 6 planned
check executions). Every further document is a tiny Markdown file of its own (its own
hash, written to raw_documents with its real size, mtime and SHA-256), a partition
added with `add_dynamic_partitions` (one call), and a copy of the template document's
instance records and DuckDB rows with the partition key (and the storage ids its events
point to) replaced, written in bulk into the SQLite index shard (`event_logs`,
`asset_event_tags`, `asset_check_executions`): what a single-run backfill over these
documents writes, without the run. Then planning remembers them as up to date, as
`run_all` does after a run (`up_to_date_after_run`). Before measuring, Dagster's own
stale status is asked, without that memory, for a sample of the copied documents: all
must be up to date (else the copy is not what a run leaves and the benchmark stops).

The corpus grows 10k -> 50k -> 100k in one instance, and at each size:

- sensor, first tick: the documents sensor evaluated (`build_sensor_context`) with no
  cursor, so from the database's stored state (after `make run`, or a restart);
- sensor, nothing changed: the same sensor with the cursor its last tick left;
- `make run`, nothing changed: `synth_assets.run.run_all` (every document up to date);
- planner: the nightly catch-up (`schedules.catch_up_requests`: runs in progress,
  `planning.documents_needing_work` for every document, `remember_up_to_date`);
- UI: `dagster-webserver` on this instance, headless Chromium (as
  synth_assets_tests/test_ui_browser.py), generated_qa_pairs' partitions page opened
  until the partition count of the health bar shows N; the first load after the
  corpus grew (Dagster then brings its partition status cache up to date) and the
  next one.

Each operation runs three times in a row; all figures are kept, and the table takes the
fastest (the machine is shared: a slower attempt is another process's load, not ours),
except the UI's first load, which happens once. Prints the figures and writes
benchmarks/results/orchestration.json.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "orchestration.json"
TEMPLATE_DOCUMENTS = 2
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# The per-document tables whose rows are copied from the template document (raw_documents
# is written from each file; dataset-level tables such as cross_document_duplicates are not).
COPIED_TABLES = ["parsed_documents", "document_chunks", "generated_qa_pairs", "filtered_qa_pairs",
                 "alpaca_examples", "sharegpt_examples", "review_sample"]
POINTER = re.compile(r'("dagster/input_event_pointer/[^"]+": ")(\d+)(")')


SHARD: str | None = None  # --shard: this process is one corpus shard (its sub-folder of the corpus)


def file_of(i: int) -> str:
    """The document's path in the corpus folder (in its shard's sub-folder, if any)."""
    return f"{SHARD}/doc_{i:07d}.md" if SHARD else f"doc_{i:07d}.md"


def key_of(i: int) -> str:
    from synth_assets.core.documents import document_key

    return document_key(file_of(i))


CORPUS: Path | None = None  # --corpus: the corpus folder the shards share (default <work>/documents)


def environment(work: Path) -> dict[str, str]:
    """The settings the benchmark's code location and the webserver both read."""
    return {
        "DAGSTER_HOME": str(work / "dagster_home"),
        "SYNTH_ASSETS_DOCUMENTS_DIR": str(CORPUS or work / "documents"),
        **({"SYNTH_ASSETS_CORPUS_SHARD": SHARD} if SHARD else {}),
        "SYNTH_ASSETS_DUCKDB_PATH": str(work / "synth_assets.duckdb"),
        "SYNTH_ASSETS_EXPORT_DIR": str(work / "exports"),
        "SYNTH_ASSETS_GENERATION_CACHE": str(work / "generation_cache.duckdb"),
        "SYNTH_ASSETS_SENSOR_INTERVAL_S": "3600",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GX_ANALYTICS_ENABLED": "False",
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }


def write_files(folder: Path, start: int, stop: int) -> None:
    for i in range(start, stop):
        # Tiny and different: each file has its own SHA-256.
        (folder / file_of(i)).write_text(f"# Document {i}\n\nSynthetic document number {i}.\n", encoding="utf-8")


class Corpus:
    """The benchmark's instance, DuckDB and folder, grown by copying the template document."""

    def __init__(self, work: Path, instance, defs) -> None:
        self.work, self.instance, self.defs = work, instance, defs
        self.folder = CORPUS or work / "documents"
        self.size = 0

    def make_template(self) -> None:
        from synth_assets.run import run_all

        text = (ROOT / "examples" / "documents" / "wiki.md").read_text(encoding="utf-8")
        for i in range(TEMPLATE_DOCUMENTS):
            (self.folder / file_of(i)).write_text(f"# Document {i}\n\n{text}", encoding="utf-8")
        summary = run_all(self.defs, self.instance, show_progress=False, single_run_min=TEMPLATE_DOCUMENTS)
        assert summary["processed"] == [key_of(i) for i in range(TEMPLATE_DOCUMENTS)], summary
        assert not summary["failed"] and not summary["blocked_by_checks"] and summary["export_ok"], summary
        self.size = TEMPLATE_DOCUMENTS
        self.load_template(key_of(0))

    def load_template(self, key: str) -> None:
        """The instance records of document `key`, which _copy_records copies."""
        self.template_key = key
        with sqlite3.connect(self.index_path()) as con:
            # The template document's records, in the order the run wrote them.
            self.events = con.execute(
                "SELECT id, run_id, event, dagster_event_type, timestamp, step_key, asset_key FROM event_logs "
                "WHERE partition = ? ORDER BY id", [key]).fetchall()
            self.tags = con.execute(
                "SELECT event_id, asset_key, key, value, event_timestamp FROM asset_event_tags "
                "WHERE event_id IN (SELECT id FROM event_logs WHERE partition = ?)", [key]).fetchall()
            # Storage id -> asset of every materialization the input event pointers name.
            self.asset_of = dict(con.execute(
                "SELECT id, asset_key FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'").fetchall())
            self.checks = con.execute(
                "SELECT asset_key, check_name, run_id, execution_status, evaluation_event, "
                "evaluation_event_timestamp, evaluation_event_storage_id, materialization_event_storage_id, "
                "create_timestamp FROM asset_check_executions WHERE partition = ?", [key]).fetchall()

    def index_path(self) -> str:
        return self.instance.event_log_storage.path_for_shard("index")

    def grow(self, size: int) -> dict[str, float]:
        """Add documents self.size .. size-1: files, partitions, instance records, rows."""
        from synth_assets import planning
        from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME

        timings = {}
        keys = [key_of(i) for i in range(self.size, size)]
        self.files = [file_of(i) for i in range(self.size, size)]
        started = time.perf_counter()
        write_files(self.folder, self.size, size)
        timings["files"] = time.perf_counter() - started

        started = time.perf_counter()
        self.instance.add_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME, keys)
        timings["partitions"] = time.perf_counter() - started

        started = time.perf_counter()
        self._copy_records(keys)
        timings["instance_records"] = time.perf_counter() - started

        started = time.perf_counter()
        self._copy_rows(keys)
        timings["duckdb_rows"] = time.perf_counter() - started

        # What run_all does after a run that completed these documents.
        started = time.perf_counter()
        graph = self.defs.resolve_asset_graph()
        planning.remember_up_to_date(self.instance, planning.up_to_date_after_run(self.instance, graph, keys, keys))
        timings["remember"] = time.perf_counter() - started
        self.size = size
        return {name: round(value, 1) for name, value in timings.items()}

    def _copy_records(self, keys: list[str]) -> None:
        """The template document's events, tags and check rows, once per key, in bulk.

        A single-run backfill writes the planned events of every document first, then
        each asset's materializations: the copies keep that order, so each asset's latest
        event per partition and the pointers to upstream events are what a run leaves."""
        con = sqlite3.connect(self.index_path())
        try:
            next_id = con.execute("SELECT max(id) FROM event_logs").fetchone()[0] + 1
            planned = [e for e in self.events if e[3] == "ASSET_MATERIALIZATION_PLANNED"]
            done = [e for e in self.events if e[3] != "ASSET_MATERIALIZATION_PLANNED"]
            ids: dict[tuple[int, int], int] = {}  # (template id, document) -> new id
            for j in range(len(keys)):
                for event in planned:
                    ids[event[0], j] = next_id
                    next_id += 1
            for event in done:  # asset by asset, as the run's steps follow each other
                for j in range(len(keys)):
                    ids[event[0], j] = next_id
                    next_id += 1
            # A step over many documents records, as each document's input, the upstream
            # asset's latest event in the run (the last document's): so do the copies.
            last_of_asset = {event[6]: ids[event[0], len(keys) - 1] for event in done}
            quoted = json.dumps(self.template_key)
            tags_of: dict[int, list] = {}
            for tag in self.tags:
                tags_of.setdefault(tag[0], []).append(tag)
            rows, tag_rows = [], []
            for event in planned + done:
                template_id, run_id, text, event_type, timestamp, step_key, asset_key = event
                for j, key in enumerate(keys):
                    body = text.replace(quoted, json.dumps(key))
                    body = POINTER.sub(lambda m: f"{m[1]}{last_of_asset[self.asset_of[int(m[2])]]}{m[3]}", body)
                    new_id = ids[template_id, j]
                    rows.append((new_id, run_id, body, event_type, timestamp, step_key, asset_key, key))
                    for _, tag_asset, tag_key, value, tag_time in tags_of.get(template_id, []):
                        tag_rows.append((new_id, tag_asset, tag_key, value, tag_time))
            check_rows = [(check[0], check[1], key, *check[2:]) for key in keys for check in self.checks]
            with con:
                con.executemany("INSERT INTO event_logs (id, run_id, event, dagster_event_type, timestamp, step_key, "
                                "asset_key, partition) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                con.executemany("INSERT INTO asset_event_tags (event_id, asset_key, key, value, event_timestamp) "
                                "VALUES (?, ?, ?, ?, ?)", tag_rows)
                con.executemany("INSERT INTO asset_check_executions (asset_key, check_name, partition, run_id, "
                                "execution_status, evaluation_event, evaluation_event_timestamp, "
                                "evaluation_event_storage_id, materialization_event_storage_id, create_timestamp) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", check_rows)
        finally:
            con.close()
        self._update_asset_records(keys[-1])

    def _update_asset_records(self, key: str) -> None:
        """Each asset's record (its latest materialization, as the asset list shows it) set
        from the last copied document's events, as storing them one by one would."""
        from dagster._core.events.log import EventLogEntry
        from dagster._serdes import deserialize_value

        storage = self.instance.event_log_storage
        with sqlite3.connect(self.index_path()) as con:
            latest = con.execute(
                "SELECT id, event FROM event_logs WHERE partition = ? AND dagster_event_type = "
                "'ASSET_MATERIALIZATION' ORDER BY id", [key]).fetchall()
        with storage.index_transaction() as conn:
            for storage_id, text in latest:
                storage._store_asset_event(conn, deserialize_value(text, EventLogEntry), storage_id)  # noqa: SLF001

    def _copy_rows(self, keys: list[str]) -> None:
        import duckdb

        from synth_assets.core.documents import file_sha256

        files = []
        for key, relative in zip(keys, self.files):
            path = self.folder / relative
            stat = path.stat()
            files.append((key, relative, path.name, "markdown", stat.st_size, file_sha256(path), stat.st_mtime))
        with duckdb.connect(environment(self.work)["SYNTH_ASSETS_DUCKDB_PATH"]) as con:
            con.executemany("INSERT INTO raw_documents VALUES (?, ?, ?, ?, ?, ?, ?)", files)
            con.execute("CREATE OR REPLACE TEMP TABLE new_keys AS SELECT unnest(?) AS key", [keys])
            for table in COPIED_TABLES:
                con.execute(f"INSERT INTO {table} SELECT t.* REPLACE (k.key AS document_id) FROM {table} t, new_keys k "
                            "WHERE t.document_id = ?", [key_of(0)])

    def check_copies_are_fresh(self, sample: int = 20) -> None:
        """Dagster's own stale status (no memory of up-to-date documents) on copied
        documents and the template: each must need nothing."""
        from synth_assets import planning

        graph = self.defs.resolve_asset_graph()
        keys = [key_of(0)] + [key_of(i) for i in range(TEMPLATE_DOCUMENTS, self.size,
                                                          max(1, (self.size - TEMPLATE_DOCUMENTS) // sample))]
        resolver = planning.stale_status_resolver(self.instance, graph)
        for key in keys:
            needed = planning.assets_needing_work(self.instance, graph, key, resolver)
            assert needed == [], f"copied document {key} is not up to date for Dagster: {needed}"


def timed(name: str, function, profile_dir: Path | None, size: int, repeat: int = 3) -> list[float]:
    """Seconds of each of `repeat` calls in a row; with `profile_dir`, one more call under
    cProfile (not counted: the profiler slows it)."""
    figures = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        figures.append(round(time.perf_counter() - started, 3))
    if profile_dir:
        profiler = cProfile.Profile()
        profiler.runcall(function)
        profiler.dump_stats(str(profile_dir / f"{name}_{size}.prof"))
    print(f"  {name}: {figures}", flush=True)
    return figures


def measure(corpus: Corpus, profile_dir: Path | None) -> dict:
    import dagster as dg

    from synth_assets.jobs import PROCESS_DOCUMENTS_JOB  # noqa: F401  (the job the plans name)
    from synth_assets.run import run_all
    from synth_assets.schedules import catch_up_requests
    from synth_assets.sensors import DOCUMENTS_SENSOR

    defs, instance, size = corpus.defs, corpus.instance, corpus.size
    sensor = defs.get_sensor_def(DOCUMENTS_SENSOR)
    resources = {"documents": defs.resources["documents"], "duckdb": defs.resources["duckdb"]}
    results: dict = {}
    outcome: dict = {}

    def tick(cursor):
        def evaluate():
            with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
                result = sensor(context)
            assert not result.run_requests and not result.dynamic_partitions_requests, "the sensor found changes"
            outcome["cursor"] = result.cursor
        return evaluate

    results["sensor_first_tick"] = timed("sensor_first_tick", tick(None), profile_dir, size)
    cursor = outcome["cursor"]
    results["sensor_cursor_bytes"] = len(cursor)
    results["sensor_tick"] = timed("sensor_tick", tick(cursor), profile_dir, size)

    def make_run():
        summary = run_all(defs, instance, show_progress=False)
        assert not summary["processed"] and len(summary["up_to_date"]) == size, "run_all found work"
    results["make_run_nothing_changed"] = timed("make_run_nothing_changed", make_run, profile_dir, size)

    graph = defs.resolve_asset_graph()

    def planner():
        requests = catch_up_requests(instance, graph, "bench", 10)
        assert requests == [], f"the planner found work: {len(requests)} runs"
    results["planner_catch_up"] = timed("planner_catch_up", planner, profile_dir, size)
    return results


class Webserver:
    """`dagster-webserver` on the benchmark's instance (no daemon: nothing may launch runs)."""

    def __init__(self, work: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.log = (work / "webserver.log").open("w")
        # The code server imports this checkout's synth_assets (the venv's editable install may name another).
        env = {**os.environ, **environment(work), "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster-webserver")), "-w", str(ROOT / "workspace.yaml"),
             "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.base_url = f"http://127.0.0.1:{self.port}"
        import httpx

        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{self.base_url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dagster-webserver did not start: see {work / 'webserver.log'}")
            time.sleep(1)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


def ui_load(page, base_url: str, size: int) -> float:
    """Seconds from navigation to the partitions page of generated_qa_pairs showing the
    count of its N materialized partitions (the health bar's legend and the list)."""
    started = time.perf_counter()
    page.goto(f"{base_url}/assets/generated_qa_pairs?view=partitions")
    # The count of materialized partitions comes with the partition statuses (the health
    # data), after the list of keys ("10,000 Partitions Selected").
    page.locator(f"text=Materialized ({size}) >> visible=true").first.wait_for(timeout=600_000)
    page.locator(f"text={size:,} Partitions >> visible=true").first.wait_for(timeout=600_000)
    return round(time.perf_counter() - started, 3)


def measure_ui(work: Path, size: int, screenshot_dir: Path) -> dict:
    from playwright.sync_api import sync_playwright

    server = Webserver(work)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(600_000)
            first = ui_load(page, server.base_url, size)
            page.screenshot(path=str(screenshot_dir / f"partitions_{size}.png"))
            page.close()
            page = context.new_page()
            page.set_default_timeout(600_000)
            second = ui_load(page, server.base_url, size)
            browser.close()
    finally:
        server.stop()
    print(f"  ui_partitions_page: first {first}, again {second}", flush=True)
    return {"ui_partitions_page_first": first, "ui_partitions_page": second}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument("--no-ui", action="store_true", help="leave out the UI's partitions page")
    parser.add_argument("--profile", type=Path, help="write a cProfile of each operation's last attempt here")
    parser.add_argument("--work", type=Path, help="keep the instance and files here (default: a temporary folder)")
    parser.add_argument("--shards", type=int, help="corpus shards: each size split into this many shards, each "
                        "one process (--shard) with its own instance and tables, in sub-folders of one corpus")
    parser.add_argument("--shard", help=argparse.SUPPRESS)  # one shard's process (--shards runs them)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, default=RESULTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.shards:
        return run_shards(args)
    global SHARD, CORPUS
    SHARD, CORPUS = args.shard, args.corpus
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-orchestration-"))
    shutil.rmtree(work, ignore_errors=True)
    (CORPUS or work / "documents").joinpath(SHARD or "").mkdir(parents=True, exist_ok=True)
    (work / "dagster_home").mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", work / "dagster_home" / "dagster.yaml")
    os.environ.update(environment(work))
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)

    import dagster as dg

    from synth_assets import definitions  # reads the settings above, as the webserver will

    results: dict = {"sizes": {}, "uptime_start": os.popen("uptime").read().strip(),
                     "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "cpus": os.cpu_count()}
    try:
        with dg.DagsterInstance.get() as instance:
            corpus = Corpus(work, instance, definitions.defs)
            corpus.make_template()
            for size in sorted(args.sizes):
                print(f"{size} documents: growing from {corpus.size}", flush=True)
                seeding = corpus.grow(size)
                print(f"  seeded in {seeding}", flush=True)
                corpus.check_copies_are_fresh()
                figures = {"seeding_seconds": seeding, "uptime": os.popen("uptime").read().strip(),
                           "instance_index_mb": round(os.path.getsize(corpus.index_path()) / 1e6),
                           "duckdb_mb": round(os.path.getsize(work / "synth_assets.duckdb") / 1e6)}
                figures.update(measure(corpus, args.profile))
                if not args.no_ui:
                    figures.update(measure_ui(work, size, args.profile or work))
                results["sizes"][size] = figures
                args.results.parent.mkdir(parents=True, exist_ok=True)
                args.results.write_text(json.dumps(results, indent=1))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    results["uptime_end"] = os.popen("uptime").read().strip()
    args.results.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


def run_shards(args) -> None:
    """Each size as `--shards` corpus shards of size/shards documents: every shard a process
    of its own (its instance, DuckDB and Dagster code location, as `make run SHARD=<name>`
    gives it), its documents in its sub-folder of one corpus folder, the shards built one
    after the other so each measures with the others' files and instances beside it. The
    UI is measured on the first shard only."""
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-orchestration-shards-"))
    shutil.rmtree(work, ignore_errors=True)
    results: dict = {"shards": args.shards, "sizes": {}, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out = ROOT / "benchmarks" / "results" / "orchestration_shards.json"
    try:
        for size in sorted(args.sizes):
            corpus = work / f"corpus_{size}"
            per_shard = {}
            for k in range(args.shards):
                name = f"part{k:02d}"
                shard_results = work / f"{name}_{size}.json"
                command = [sys.executable, __file__, "--shard", name, "--corpus", str(corpus), "--sizes",
                           str(size // args.shards), "--work", str(work / f"{name}_{size}"), "--results",
                           str(shard_results)] + (["--no-ui"] if args.no_ui or k else [])
                print(f"{size} documents, shard {name}: {' '.join(command[1:])}", flush=True)
                subprocess.run(command, check=True, cwd=ROOT)
                per_shard[name] = json.loads(shard_results.read_text())["sizes"][str(size // args.shards)]
            results["sizes"][size] = per_shard
            out.write_text(json.dumps(results, indent=1))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
