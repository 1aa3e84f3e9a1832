"""Incremental operation on 200 small documents: cold, unchanged, one added, overhead.

    .venv/bin/python benchmarks/bench_incremental.py [--documents 200]

The corpus: the example documents are parsed once, their Markdown cut into sections
(at headings), and each benchmark document is one section with its own title line
and a second, different section after it, written as a .md file (so every document
has different content and its own hash). Model-free generation, a fresh Dagster
instance and DuckDB in a temporary folder.

1. cold: `synth_assets.run.run_all` (what `make run` runs) on all documents: 200 new
   neighbouring documents, so one single-run backfill over all of them (steps counted);
2. nothing changed: run_all again (target: at most 5% of the cold time);
3. one document added: run_all again (target: only that partition's steps, at most
   10% of the cold time);
4. overhead: the same asset and check functions called directly in a plain Python
   loop (Dagster's direct invocation: same code, same DuckDB writes, no runs, no event
   log), against the cold single-run materialisation (target: at most 1.3x).

Prints the figures and writes benchmarks/results/incremental_<documents>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import dagster as dg  # noqa: E402

from synth_assets.checks import quality_checks  # noqa: E402
from synth_assets.core.parsing import parse_document  # noqa: E402
from synth_assets.assets import PIPELINE_ASSETS  # noqa: E402
from synth_assets.definitions import build_definitions
from synth_assets.resources.curation import CurationResource  # noqa: E402
from synth_assets.resources.documents import DocumentsFolder  # noqa: E402
from synth_assets.resources.export import ExportSettings  # noqa: E402
from synth_assets.resources.generation import GenerationResource  # noqa: E402
from synth_assets.resources.storage import PipelineDatabase  # noqa: E402
from synth_assets.run import run_all  # noqa: E402

EXAMPLES = ROOT / "examples" / "documents"
RESULTS = ROOT / "benchmarks" / "results" / "incremental.json"
MIN_SECTION_CHARS = 400


def corpus_sections() -> list[str]:
    sections = []
    for path in sorted(EXAMPLES.iterdir()):
        if path.name.startswith("LICENSE"):
            continue
        markdown = parse_document(path).markdown
        for section in re.split(r"\n(?=#{1,3} )", markdown):
            body = "\n".join(line for line in section.splitlines() if not line.startswith("#")).strip()
            if len(body) >= MIN_SECTION_CHARS and "<!--" not in body:
                sections.append(body)
    return sections


def write_document(folder: Path, sections: list[str], i: int) -> Path:
    first, second = sections[i % len(sections)], sections[(i * 7 + 3) % len(sections)]
    path = folder / f"doc_{i:03d}.md"
    path.write_text(f"# Benchmark document {i}\n\n## Part one\n\n{first}\n\n## Part two\n\n{second}\n",
                    encoding="utf-8")
    return path


def resources(work: Path, folder: Path, name: str) -> dict:
    return {
        "documents": DocumentsFolder(path=str(folder)),
        "duckdb": PipelineDatabase(database=str(work / f"{name}.duckdb")),
        "generation": GenerationResource(cache_path=None),
        "curation": CurationResource(),
        # SYNTH_ASSETS_DATASET_BUCKETS as make run reads it (docs/EXPORTS.md: about a hundred documents a bucket).
        "export": ExportSettings(export_dir=str(work / f"{name}_exports"),
                                 buckets=int(os.environ.get("SYNTH_ASSETS_DATASET_BUCKETS", ExportSettings().buckets))),
    }


def steps_since(instance: dg.DagsterInstance, run_ids: set[str]) -> tuple[int, int, set[str]]:
    """(runs, successful steps, partitions) of the runs not in `run_ids`."""
    runs = [run for run in instance.get_runs() if run.run_id not in run_ids]
    steps = sum(len(instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)) for run in runs)
    order = instance.get_dynamic_partitions("documents")
    partitions = set()
    for run in runs:
        if run.tags.get("dagster/partition"):
            partitions.add(run.tags["dagster/partition"])
        elif run.tags.get("dagster/asset_partition_range_start"):  # a single-run backfill
            start = order.index(run.tags["dagster/asset_partition_range_start"])
            end = order.index(run.tags["dagster/asset_partition_range_end"])
            partitions.update(order[start:end + 1])
    return len(runs), steps, partitions


def step_seconds(instance: dg.DagsterInstance, run_ids: set[str] | None = None) -> dict[str, float]:
    """Seconds of each step (STEP_START to STEP_SUCCESS) of the given runs (all runs by default)."""
    def records(event_type):
        found = instance.get_event_records(dg.EventRecordsFilter(event_type=event_type), limit=1_000_000)
        return [r.event_log_entry for r in found if run_ids is None or r.event_log_entry.run_id in run_ids]

    starts = {(e.run_id, e.step_key): e.timestamp for e in records(dg.DagsterEventType.STEP_START)}
    seconds: dict[str, float] = {}
    for entry in records(dg.DagsterEventType.STEP_SUCCESS):
        took = entry.timestamp - starts.get((entry.run_id, entry.step_key), entry.timestamp)
        seconds[entry.step_key] = round(seconds.get(entry.step_key, 0.0) + took, 2)
    return dict(sorted(seconds.items(), key=lambda item: -item[1]))


def plain_loop(work: Path, folder: Path, keys: list[str]) -> float:
    """Every asset and check function of every document, called directly in order."""
    res = resources(work, folder, "plain")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("documents", keys)
    per_document = [asset for asset in PIPELINE_ASSETS if asset.partitions_def is not None]
    checks_by_asset = {}
    for checks in quality_checks:
        for spec in checks.check_specs:
            checks_by_asset.setdefault(spec.asset_key, []).append(checks)
    log = logging.getLogger("plain-loop")

    class CheckContext:  # what our check functions read from their context
        def __init__(self, partition_key: str, specs):
            self.partition_key, self.log, self.instance, self.check_specs = partition_key, log, instance, specs
            self.op_execution_context = SimpleNamespace(
                has_partition_key=True, partition_key=partition_key, run_id="plain-loop")

    def run_checks(asset_key, partition_key):
        for checks in checks_by_asset.get(asset_key, []):
            needed = {k: res[k] for k in checks.required_resource_keys if k in res}
            result = checks.op.compute_fn.decorated_fn(CheckContext(partition_key, list(checks.check_specs)), **needed)
            if not result.passed and result.severity == dg.AssetCheckSeverity.ERROR:
                return False
        return True

    started = time.perf_counter()
    for key in keys:
        for asset in per_document:
            needed = {k: res[k] for k in asset.required_resource_keys if k in res}
            with dg.build_asset_context(partition_key=key, resources=needed, instance=instance) as context:
                asset(context=context)
            if not run_checks(asset.key, key):
                break
    [training] = [asset for asset in PIPELINE_ASSETS if asset.key == dg.AssetKey("training_dataset")]
    needed = {k: res[k] for k in training.required_resource_keys if k in res}
    with dg.build_asset_context(resources=needed, instance=instance) as context:
        training(context=context)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument("--added", type=int, default=1,
                        help="add this many documents one at a time after the cold run, each timed (the median is "
                             "reported: one run is at the mercy of this machine's drift)")
    parser.add_argument("--no-plain-loop", action="store_true",
                        help="skip the comparison with the assets called directly (it doubles the time)")
    args = parser.parse_args()
    sections = corpus_sections()
    results: dict = {"documents": args.documents, "distinct_sections": len(sections),
                     "uptime_before": os.popen("uptime").read().strip()}
    with tempfile.TemporaryDirectory(prefix="bench-incremental-") as tmp:
        work = Path(tmp)
        folder = work / "documents"
        folder.mkdir()
        for i in range(args.documents):
            write_document(folder, sections, i)
        home = work / "dagster_home"
        home.mkdir()
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        defs = build_definitions(resources(work, folder, "pipeline"))
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            timings = {}
            added = [f"one_added_{i}" if i else "one_added" for i in range(args.added)]
            for name in ("cold", "nothing_changed", *added):
                if name.startswith("one_added"):
                    write_document(folder, sections, args.documents + added.index(name))
                before = {run.run_id for run in instance.get_runs()}
                started = time.perf_counter()
                summary = run_all(defs, instance, show_progress=False)
                timings[name] = time.perf_counter() - started
                runs, steps, partitions = steps_since(instance, before)
                new_runs = {run.run_id for run in instance.get_runs()} - before
                took = step_seconds(instance, new_runs)
                results[name] = {
                    "seconds": round(timings[name], 1), "runs": runs, "steps": steps,
                    "partitions_run": len(partitions), "processed": len(summary["processed"]),
                    "failed": len(summary["failed"]), "blocked": len(summary["blocked_by_checks"]),
                    "pairs_kept": summary["pairs_kept"],
                    "outside_steps_seconds": round(timings[name] - sum(took.values()), 1),
                    "step_seconds": took,
                }
                print(name, json.dumps(results[name]), flush=True)
        results["uptime_after_runs"] = os.popen("uptime").read().strip()
        if not args.no_plain_loop:
            keys = sorted(p.name for p in folder.iterdir())[: args.documents]
            plain = plain_loop(work, folder, keys)
    cold = timings["cold"]
    results["cold_seconds_per_document"] = round(cold / args.documents, 3)
    results["nothing_changed_share_of_cold"] = round(timings["nothing_changed"] / cold, 3)
    each = sorted(timings[name] for name in timings if name.startswith("one_added"))
    results["one_added_seconds_each"] = [round(t, 1) for t in each]
    results["one_added_median_seconds"] = round(each[len(each) // 2], 1)
    results["one_added_share_of_cold"] = round(timings["one_added"] / cold, 3)
    if not args.no_plain_loop:
        results["plain_loop_seconds"] = round(plain, 1)
        results["orchestration_overhead"] = round(cold / plain, 2)
    print(json.dumps(results, indent=1))
    out = RESULTS.with_name(f"incremental_{args.documents}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
