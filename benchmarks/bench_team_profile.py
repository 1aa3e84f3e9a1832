"""The embedded profile against the team profile on one machine: 200 documents each.

    .venv/bin/python benchmarks/bench_team_profile.py [--documents 200]

The same documents as bench_incremental.py (one section of the examples per file,
written as .md; model-free generation) go through `synth_assets.run.run_all` (what
`make run` runs) twice, each in a fresh temporary folder:

- embedded: the Dagster instance in SQLite (the repository's dagster.yaml), the tables
  in one DuckDB file;
- team: the instance in PostgreSQL (deploy/team/dagster.yaml) and the tables in a
  DuckLake whose catalog is in PostgreSQL and whose data files are in a folder, on a
  throwaway PostgreSQL server started here (synth_assets_tests/postgres_server.py:
  Debian's `postgresql` must be installed).

Per profile: the wall time of the cold run, then the per-partition write latency:
every document's kept pairs and chunks are written again, one partition write per
connection as the assets do it (open, delete the document's rows, insert, commit), one
writer at a time, and the median and 95th percentile of those writes are reported.

Prints the figures and writes benchmarks/results/team_profile.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import dagster as dg  # noqa: E402
from bench_incremental import corpus_sections, resources, write_document  # noqa: E402

from synth_assets.definitions import build_definitions  # noqa: E402
from synth_assets.resources.storage import PipelineDatabase  # noqa: E402
from synth_assets.run import run_all  # noqa: E402
from synth_assets.storage import (  # noqa: E402
    DOCUMENT_CHUNKS_TABLE,
    FILTERED_QA_PAIRS_TABLE,
    read_partition,
    replace_partition_rows,
)
from synth_assets_tests import postgres_server  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "team_profile.json"
REWRITTEN_TABLES = (FILTERED_QA_PAIRS_TABLE, DOCUMENT_CHUNKS_TABLE)


def write_latencies(database: PipelineDatabase, keys: list[str]) -> list[float]:
    """Seconds per partition write: each document's rows of REWRITTEN_TABLES written again."""
    latencies = []
    for key in keys:
        for table in REWRITTEN_TABLES:
            with database.get_connection() as con:
                rows = read_partition(con, table, key).drop(columns=["document_id"])
            started = time.perf_counter()
            with database.get_connection() as con:
                replace_partition_rows(con, table, key, rows)
            latencies.append(time.perf_counter() - started)
    return latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure(name: str, defs: dg.Definitions, instance: dg.DagsterInstance) -> dict:
    started = time.perf_counter()
    summary = run_all(defs, instance, show_progress=False)
    wall = time.perf_counter() - started
    if summary["failed"] or not summary["export_ok"]:
        raise RuntimeError(f"{name}: the run did not succeed: failed {summary['failed']}, "
                           f"export {summary['export_error']}")
    latencies = write_latencies(defs.resources["duckdb"], summary["documents"])
    figures = {
        "cold_run_seconds": round(wall, 1),
        "documents": len(summary["documents"]),
        "pairs_kept": summary["pairs_kept"],
        "partition_writes": len(latencies),
        "write_median_ms": round(1000 * statistics.median(latencies), 1),
        "write_p95_ms": round(1000 * percentile(latencies, 0.95), 1),
    }
    print(name, json.dumps(figures), flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=200)
    args = parser.parse_args()
    if reason := postgres_server.skip_reason():
        sys.exit(f"the team profile needs PostgreSQL: {reason}")
    sections = corpus_sections()
    results: dict = {"documents": args.documents, "uptime_before": os.popen("uptime").read().strip()}
    with tempfile.TemporaryDirectory(prefix="bench-team-") as tmp:
        work = Path(tmp)
        folder = work / "documents"
        folder.mkdir()
        for i in range(args.documents):
            write_document(folder, sections, i)

        home = work / "embedded_home"
        home.mkdir()
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        with dg.DagsterInstance.from_config(str(home)) as instance:
            results["embedded"] = measure("embedded", build_definitions(resources(work, folder, "embedded")), instance)

        with postgres_server.running_server() as server:
            team_home = work / "team_home"
            team_home.mkdir()
            shutil.copy(ROOT / "deploy" / "team" / "dagster.yaml", team_home / "dagster.yaml")
            os.environ.update({"DAGSTER_PG_HOST": server.host, "DAGSTER_PG_PORT": str(server.port),
                               "DAGSTER_PG_DB": server.create_database("dagster"),
                               "DAGSTER_PG_USERNAME": server.user, "DAGSTER_PG_PASSWORD": ""})
            team_resources = {**resources(work, folder, "team"), "duckdb": PipelineDatabase(
                ducklake_catalog="postgres:" + server.dsn(server.create_database("lake")),
                ducklake_data_path=str(work / "lake_data"))}
            with dg.DagsterInstance.from_config(str(team_home)) as instance:
                results["team"] = measure("team", build_definitions(team_resources), instance)
    results["uptime_after"] = os.popen("uptime").read().strip()
    print(json.dumps(results, indent=1))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
