"""One document added, the whole `make run`, at N documents reached by seeding (issue 29).

    .venv/bin/python benchmarks/bench_seeded_incremental.py --documents 10000 [--templates 100]
        [--added 3] [--like-real] [--work DIR]

What bench_incremental.py measures ("one added" runs of `synth_assets.run.run_all`, what
`make run` runs), at a size whose real cold run would take hours (0.6-0.7 s a document):

1. real cold run: `--templates` documents made as bench_incremental makes them
   (`write_document`, its resources, a fresh Dagster instance from dagster.yaml and a
   DuckDB in a temporary folder), one `run_all`;
2. seeding up to `--documents`: the files of documents templates..N-1 written with
   `write_document` (each its own content and SHA-256), their partitions added in one
   call; each copies a template document: its instance records copied under the new key,
   in bulk, by bench_orchestration's `Corpus` (events, tags, check executions, asset
   records), then remembered as up to date as `run_all` does after a run; its DuckDB rows
   of every per-document table copied with the template's key replaced by the new one
   in every text column (ids, and chunk ids inside JSON), raw_documents written from the
   file (real size, mtime and SHA-256), source digests computed again. Dagster's own stale
   status must then see a sample of the copies as up to date (else the benchmark stops).
   Which template, and the questions:
   - default: template i % templates; each copy's questions (and Alpaca instructions)
     get a word of their own, as bench_training_dataset's `replicate(distinct=True)`;
   - `--like-real`: a template whose file has the same two sections as document i's
     (write_document takes section i % sections), and its number in the title
     ("Benchmark document <i>", which headings and questions quote) replaced by i in
     every text: the rows are those a real run makes for document i (checked at 80
     documents against a real run: every per-document table and the dataset index,
     duplicates, shards identical, except review_sample's random draws);
3. one whole training_dataset build over the N documents (`run_all(rebuild_dataset=True)`:
   a new dedup index generation, every document taken in, shards written, as after a
   cold run), then `run_all` again must find nothing to do and build nothing;
4. `--added` documents added one at a time (`write_document` with new indexes), each
   `run_all` timed: its seconds, the training_dataset step's, the time outside steps.

With --documents 100 (= --templates) nothing is seeded: the real run of 100 documents, the
reference a ratio is taken against. Each run's figures record the 1-minute load average:
other processes on this machine's 2 cores change them (compare runs taken side by side).

Prints the figures and writes benchmarks/results/seeded_incremental_<documents>[_like_real].json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_incremental  # noqa: E402  (sets the offline environment)
import dagster as dg  # noqa: E402
import duckdb  # noqa: E402
import pandas as pd  # noqa: E402
from bench_incremental import corpus_sections, resources, step_seconds, steps_since, write_document  # noqa: E402
from bench_orchestration import Corpus  # noqa: E402

from synth_assets import planning  # noqa: E402
from synth_assets.assets.export import source_digests  # noqa: E402
from synth_assets.core.documents import document_key, file_sha256  # noqa: E402
from synth_assets.definitions import build_definitions  # noqa: E402
from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME  # noqa: E402
from synth_assets.run import run_all  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
# Written from the files (raw_documents), by training_dataset for the whole dataset, or by
# a reviewer: not copied.
NOT_COPIED = {"raw_documents", "cross_document_duplicates", "contaminated_rows", "review_verdicts"}
# Columns that hold only a document's key or ids made from it.
ID_COLUMNS = {"document_id", "pair_id", "chunk_id", "duplicate_of", "relative_path", "source_chunk_ids",
              "candidate_id", "source_file", "file_name"}


def uptime() -> str:
    return os.popen("uptime").read().strip()


def copy_rows(database: str, folder: Path, copies: list[tuple[str, str, int, int]], like_real: bool) -> None:
    """DuckDB rows of each (new key, template key, index, template index) copied from the
    template: the questions made distinct, or (`like_real`) the template's document number
    in every text replaced by the copy's."""
    with duckdb.connect(database) as con:
        files = []
        for key, _, _, _ in copies:
            path = folder / key  # keys are the file names here (doc_0123.md)
            stat = path.stat()
            files.append((key, path.name, path.name, "markdown", stat.st_size, file_sha256(path), stat.st_mtime))
        con.executemany("INSERT INTO raw_documents VALUES (?, ?, ?, ?, ?, ?, ?)", files)
        con.register("copies_df", pd.DataFrame(copies, columns=["new_key", "template", "k", "t"]))
        con.execute("CREATE OR REPLACE TEMP TABLE copies AS SELECT * FROM copies_df")
        con.unregister("copies_df")
        tables = [row[0] for row in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()]
        for table in tables:
            if table in NOT_COPIED or table.startswith("dataset_"):
                continue
            columns = con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                  "WHERE table_name = ? AND table_schema = 'main' ORDER BY ordinal_position",
                                  [table]).fetchall()
            if "document_id" not in {name for name, _ in columns}:
                continue
            select = []
            for name, data_type in columns:
                value = f"t.{name}"
                if data_type == "VARCHAR":  # ids, and the chunk ids in JSON columns (evidence_spans)
                    value = f"replace({value}, c.template, c.new_key)"
                if like_real and data_type == "VARCHAR" and name not in ID_COLUMNS:  # "# Benchmark document <i>"
                    value = f"replace({value}, 'Benchmark document ' || c.t, 'Benchmark document ' || c.k)"
                elif not like_real and name in ("question", "instruction"):  # as replicate(distinct=True)
                    pair = "replace(coalesce(t.pair_id, ''), c.template, c.new_key)" if "pair_id" in dict(columns) \
                        else "''"
                    value = f"{value} || ' zq' || c.k || 'x' || substr(md5({pair}), 1, 6)"
                select.append(f"{value} AS {name}")
            con.execute(f"INSERT INTO {table} SELECT {', '.join(select)} FROM {table} t "
                        "JOIN copies c ON t.document_id = c.template")
        # The copies' formatted rows record the digest of their own pairs (and file).
        keys = [key for key, _, _, _ in copies]
        digests = pd.DataFrame(list(source_digests(con, keys).items()), columns=["document_id", "digest"])
        con.register("digests", digests)
        for table in ("alpaca_examples", "sharegpt_examples"):
            con.execute(f"UPDATE {table} SET source_digest = digests.digest FROM digests "
                        f"WHERE {table}.document_id = digests.document_id")
        con.unregister("digests")


def template_of(i: int, templates: int, sections: int, like_real: bool) -> int:
    """The template document copied as document i: i % templates, or (`like_real`) one
    whose file has the same two sections as document i's (write_document: i % sections)."""
    if not like_real:
        return i % templates
    same = list(range(i % sections, templates, sections))
    return same[(i // sections) % len(same)]


def seed(corpus: Corpus, defs, folder: Path, sections: list[str], templates: list[str], first: int,
         size: int, like_real: bool) -> dict[str, float]:
    """Documents first..size-1: files, partitions, instance records and DuckDB rows, each a
    copy of a template (template_of)."""
    chosen = {i: template_of(i, len(templates), len(sections), like_real) for i in range(first, size)}
    timings = {}
    started = time.perf_counter()
    paths = [write_document(folder, sections, i) for i in range(first, size)]
    keys = [document_key(path.name) for path in paths]
    timings["files"] = time.perf_counter() - started

    started = time.perf_counter()
    corpus.instance.add_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME, keys)
    timings["partitions"] = time.perf_counter() - started

    started = time.perf_counter()
    of_template: dict[str, list[str]] = {}
    for i, key in zip(range(first, size), keys):
        of_template.setdefault(templates[chosen[i]], []).append(key)
    for template, copied in of_template.items():
        corpus.load_template(template)
        corpus._copy_records(copied)  # noqa: SLF001
    timings["instance_records"] = time.perf_counter() - started

    started = time.perf_counter()
    copy_rows(corpus.defs.resources["duckdb"].database, folder,
              [(key, templates[chosen[i]], i, chosen[i]) for i, key in zip(range(first, size), keys)], like_real)
    timings["duckdb_rows"] = time.perf_counter() - started

    started = time.perf_counter()  # what run_all does after a run that completed them
    graph = defs.resolve_asset_graph()
    planning.remember_up_to_date(corpus.instance, planning.up_to_date_after_run(corpus.instance, graph, keys, keys))
    timings["remember"] = time.perf_counter() - started

    # Dagster's own stale status (no memory of up-to-date documents) on a sample of copies.
    started = time.perf_counter()
    resolver = planning.stale_status_resolver(corpus.instance, graph)
    for key in [templates[0]] + keys[:: max(1, len(keys) // 20)] + [keys[-1]]:
        needed = planning.assets_needing_work(corpus.instance, graph, key, resolver)
        assert needed == [], f"copied document {key} is not up to date for Dagster: {needed}"
    timings["check_fresh"] = time.perf_counter() - started
    return {name: round(value, 1) for name, value in timings.items()}


def timed_run(defs, instance, **kwargs) -> tuple[dict, dict]:
    """run_all once: its summary and figures (seconds, runs, steps, step seconds)."""
    before = {run.run_id for run in instance.get_runs()}
    started = time.perf_counter()
    summary = run_all(defs, instance, show_progress=False, **kwargs)
    seconds = time.perf_counter() - started
    runs, steps, partitions = steps_since(instance, before)
    took = step_seconds(instance, {run.run_id for run in instance.get_runs()} - before)
    return summary, {
        "seconds": round(seconds, 1), "runs": runs, "steps": steps, "partitions_run": len(partitions),
        "processed": len(summary["processed"]), "failed": len(summary["failed"]),
        "blocked": len(summary["blocked_by_checks"]), "pairs_kept": summary["pairs_kept"],
        "training_dataset_seconds": took.get("training_dataset", 0.0),
        "outside_steps_seconds": round(seconds - sum(took.values()), 1), "load_average_1min": os.getloadavg()[0],
        "step_seconds": took,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=3000)
    parser.add_argument("--templates", type=int, default=100, help="documents of the real cold run")
    parser.add_argument("--added", type=int, default=3)
    parser.add_argument("--like-real", action="store_true",
                        help="copy each document from a template with the same sections and put its own number "
                             "in the copied texts, instead of giving the copies' questions a word of their own")
    parser.add_argument("--work", type=Path, help="keep the instance and files here (default: a temporary folder)")
    args = parser.parse_args()
    sections = corpus_sections()
    assert args.templates <= args.documents
    assert not args.like_real or args.templates >= len(sections), "--like-real: a template per section at least"
    results: dict = {"documents": args.documents, "templates": args.templates, "like_real": args.like_real,
                     "distinct_sections": len(sections),
                     "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "uptime_before": uptime()}
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-seeded-incremental-"))
    shutil.rmtree(work, ignore_errors=True)
    folder = work / "documents"
    folder.mkdir(parents=True)
    home = work / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    try:
        templates = [document_key(write_document(folder, sections, i).name) for i in range(args.templates)]
        defs = build_definitions(resources(work, folder, "pipeline"))
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            summary, results["cold"] = timed_run(defs, instance)
            assert summary["processed"] == templates and not summary["failed"], summary["failed"]
            print("cold", json.dumps(results["cold"]), flush=True)

            started = time.perf_counter()
            results["seeding_seconds"] = {}  # none when --documents is --templates: the real run alone
            if args.documents > args.templates:
                results["seeding_seconds"] = seed(Corpus(work, instance, defs), defs, folder, sections, templates,
                                                  args.templates, args.documents, args.like_real)
            results["seeding_seconds"]["total"] = round(time.perf_counter() - started, 1)
            print("seeded", json.dumps(results["seeding_seconds"]), flush=True)

            summary, results["whole_dataset_build"] = timed_run(defs, instance, rebuild_dataset=True)
            assert not summary["processed"] and summary["export_ok"], "the seeded documents were not up to date"
            assert len(summary["documents"]) == args.documents
            print("whole_dataset_build", json.dumps(results["whole_dataset_build"]), flush=True)
            summary, results["nothing_changed"] = timed_run(defs, instance)
            assert not summary["processed"] and results["nothing_changed"]["runs"] == 0, results["nothing_changed"]
            print("nothing_changed", json.dumps(results["nothing_changed"]), flush=True)

            results["uptime_before_added"] = uptime()
            added = []
            for n in range(args.added):
                write_document(folder, sections, args.documents + n)
                summary, figures = timed_run(defs, instance)
                assert figures["processed"] == 1 and not summary["failed"], figures
                added.append(figures)
                print(f"one_added_{n}", json.dumps(figures), flush=True)
            results["uptime_after"] = uptime()
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    results["one_added"] = added
    each = [figures["seconds"] for figures in added]
    results["one_added_seconds_each"] = each
    results["one_added_median_seconds"] = sorted(each)[len(each) // 2]
    results["one_added_training_dataset_seconds_each"] = [figures["training_dataset_seconds"] for figures in added]
    results["one_added_outside_steps_seconds_each"] = [figures["outside_steps_seconds"] for figures in added]
    print(json.dumps(results, indent=1))
    out = RESULTS / f"seeded_incremental_{args.documents}{'_like_real' if args.like_real else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
