"""The merge of corpus shards' datasets (`make merge`) at 100,000 documents, synthetic.

    .venv/bin/python benchmarks/bench_merge.py [--shards 10] [--documents 100000]
        [--rows-per-document 10] [--buckets 32] [--repeats 0.02]

Each shard's published version is written as training_dataset writes one (core/shards:
a Parquet and a JSON Lines file per format, split and bucket, a manifest, LATEST), from
synthetic pairs made with the export's own build_format_rows (alpaca, sharegpt,
messages, with provenance): `documents / shards` documents a shard, each with
`rows-per-document` questions of its own, and a share `repeats` of them asking a
question of the shard before (what a merge must leave out). Then, timed:

1. the first merge (every file's questions read once and kept by its hash), and its check;
2. nothing changed: the merge again (every file already known: manifests and links);
3. one document added to one shard: that shard re-published with its one changed bucket,
   then the merge (reads that bucket's new files only).

Prints the figures and writes benchmarks/results/merge.json.
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

import pandas as pd  # noqa: E402

from synth_assets.core.corpus_merge import merged_problems, plan_merge, published_corpora  # noqa: E402
from synth_assets.core.exporting import (  # noqa: E402
    ExportOptions,
    build_format_rows,
    publish,
    write_bucket,
    write_version,
)
from synth_assets.core.shards import SHARD_STORE, bucket_of  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "merge.json"
TOPICS = ["boiler", "cooling tower", "pump seals", "valve train", "heat exchanger", "control room", "feed water"]


def pairs(shard: int, documents: range, per_document: int, repeats: float) -> pd.DataFrame:
    rows = []
    for d in documents:
        for q in range(per_document):
            n = d * per_document + q
            # Every 1/repeats-th question asks one the previous shard asks (its next one).
            unit, plant = (n + 1, shard - 1) if shard and n % max(2, round(1 / repeats)) == 0 else (n, shard)
            question = f"How often is the {TOPICS[unit % len(TOPICS)]} of unit {unit} in plant {plant} inspected?"
            rows.append({"question": question, "answer": f"Every {q + 1} months, says section {q}.",
                         "reasoning": None, "turns": None, "pair_id": f"s{shard}d{d}#{q}",
                         "document_id": f"part{shard:02d}__doc{d:06d}.md", "chunk_id": f"c{d}", "language": "en",
                         "split": "validation" if d % 10 == 0 else "train"})
    return pd.DataFrame(rows)


def publish_shard(export_dir: Path, frame: pd.DataFrame, buckets: int, options: ExportOptions) -> None:
    """One shard's version as training_dataset writes it: every bucket's files, then a version."""
    frame = frame.assign(bucket=[bucket_of(d, buckets) for d in frame["document_id"]])
    shards = []
    for bucket, rows in frame.groupby("bucket"):
        shards += write_bucket(export_dir / SHARD_STORE, int(bucket),
                               build_format_rows(rows.drop(columns=["bucket"]).reset_index(drop=True), options))
    result = write_version(export_dir, shards, options, {}, {"generation": 1})
    publish(export_dir, result.version)


def timed(function) -> tuple[float, object]:
    started = time.perf_counter()
    value = function()
    return round(time.perf_counter() - started, 2), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--rows-per-document", type=int, default=10)
    parser.add_argument("--buckets", type=int, default=32)
    parser.add_argument("--repeats", type=float, default=0.02)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-merge-"))
    options = ExportOptions()
    per_shard = args.documents // args.shards
    results: dict = {"args": vars(args), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "uptime_start": os.popen("uptime").read().strip()}
    try:
        started = time.perf_counter()
        exports = {}
        for k in range(args.shards):
            exports[f"part{k:02d}"] = work / "shards" / f"part{k:02d}" / "exports"
            publish_shard(exports[f"part{k:02d}"], pairs(k, range(per_shard), args.rows_per_document, args.repeats),
                          args.buckets, options)
        results["writing_shards_s"] = round(time.perf_counter() - started, 1)
        print(f"{args.shards} shards of {per_shard} documents written in {results['writing_shards_s']} s", flush=True)
        merged_dir = work / "merged"

        def merge():
            plan = plan_merge(published_corpora(exports), merged_dir)
            result = write_version(merged_dir, plan.shards, options, {}, {"generation": None})
            return plan, result

        results["first_merge_s"], (plan, result) = timed(merge)
        results["first_check_s"], problems = timed(lambda: merged_problems(merged_dir, result.path))
        assert problems == [], problems
        results["rows"] = result.rows
        results["repeats_removed"] = plan.repeats
        results["files"] = len(plan.shards)
        results["files_with_repeats_left_out"] = plan.filtered
        results["nothing_changed_merge_s"], _ = timed(merge)
        # One document added to the last shard: its bucket's files change, nothing else.
        last = args.shards - 1
        grown = pairs(last, range(per_shard + 1), args.rows_per_document, args.repeats)
        publish_shard(exports[f"part{last:02d}"], grown, args.buckets, options)
        results["one_added_merge_s"], (plan, result) = timed(merge)
        results["one_added_check_s"], problems = timed(lambda: merged_problems(merged_dir, result.path))
        assert problems == [], problems
        results["uptime_end"] = os.popen("uptime").read().strip()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
