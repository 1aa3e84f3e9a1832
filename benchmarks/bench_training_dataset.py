"""What building training_dataset costs as the corpus grows (issues 18 and 29).

    .venv/bin/python benchmarks/bench_training_dataset.py --copies 9 --distinct [--profile out.prof]

"One document added" runs that document's steps and then training_dataset: the build is
the part of it that could grow with the corpus. This takes the DuckDB of a finished run
(`--source`, default data/synth_assets.duckdb, which `make run` writes for the example
documents), copies every document's rows `--copies` times under new document, chunk and
pair ids (`--distinct`: each copy's questions get a word of their own, so that many of
them stop being cross-document duplicates of the original's), and times the
training_dataset function alone on it (Dagster's direct invocation, an ephemeral
instance with every document registered): first the whole build (a new dedup index
generation), then, after one more copy of a document is added, the incremental build
that takes in that document alone. cProfile of the incremental build when asked.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_incremental  # noqa: E402,F401  (sets the offline environment)
import dagster as dg  # noqa: E402
import duckdb  # noqa: E402
import pandas as pd  # noqa: E402

from synth_assets.assets.export import TrainingDatasetConfig, source_digests, training_dataset  # noqa: E402
from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME  # noqa: E402
from synth_assets.resources.curation import CurationResource  # noqa: E402
from synth_assets.resources.export import ExportSettings  # noqa: E402
from synth_assets.resources.generation import GenerationResource  # noqa: E402
from synth_assets.resources.review import ReviewSettings  # noqa: E402
from synth_assets.resources.storage import PipelineDatabase  # noqa: E402

RENAMED = ("document_id", "pair_id", "chunk_id", "duplicate_of", "relative_path")
# The dataset's own build state is not copied: the first timed build starts it afresh.
BUILD_STATE = ("dataset_generations", "dataset_words", "dataset_index", "dataset_bands", "dataset_shards")


def replicate(con: duckdb.DuckDBPyConnection, copies: int, distinct: bool, first: int = 1,
              only: str | None = None) -> list[str]:
    """Every document's rows (or document `only`'s) copied as copies first..copies-1;
    returns every document."""
    tables = [row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
    for table in BUILD_STATE:
        if table in tables:
            con.execute(f"DELETE FROM {table}") if only is None else None
    for table in (t for t in tables if t not in BUILD_STATE):
        columns = [row[0] for row in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]).fetchall()]
        if "document_id" not in columns:
            continue
        for k in range(first, copies):
            select = []
            for column in columns:
                if column in RENAMED:
                    select.append(f"{column} || '~copy{k}' AS {column}")  # NULL stays NULL
                elif distinct and column in ("question", "instruction"):
                    select.append(f"{column} || ' zq{k}x' || substr(md5(coalesce(pair_id, '')), 1, 6) AS {column}")
                else:
                    select.append(column)
            con.execute(f"INSERT INTO {table} SELECT {', '.join(select)} FROM {table} "
                        "WHERE document_id NOT LIKE '%~copy%'" + (" AND document_id = ?" if only else ""),
                        [only] if only else [])
    documents = [row[0] for row in con.execute("SELECT DISTINCT document_id FROM raw_documents").fetchall()]
    # The copies' formatted rows record the digest of their own (renamed) pairs.
    digests = pd.DataFrame(list(source_digests(con, [d for d in documents if "~copy" in d]).items()),
                           columns=["document_id", "digest"])
    con.register("digests", digests)
    for table in ("alpaca_examples", "sharegpt_examples"):
        con.execute(f"UPDATE {table} SET source_digest = digests.digest FROM digests "
                    f"WHERE {table}.document_id = digests.document_id")
    return documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=str(ROOT / "data" / "synth_assets.duckdb"))
    parser.add_argument("--copies", type=int, default=9)
    parser.add_argument("--distinct", action="store_true")
    parser.add_argument("--buckets", type=int, default=ExportSettings().buckets,
                        help="SYNTH_ASSETS_DATASET_BUCKETS (about a hundred documents a bucket is the advice)")
    parser.add_argument("--profile", help="write cProfile statistics of the incremental build to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        database = Path(tmp) / "pipeline.duckdb"
        shutil.copy(args.source, database)
        with duckdb.connect(str(database)) as con:
            documents = replicate(con, args.copies, args.distinct)
        available = {"duckdb": PipelineDatabase(database=str(database)),
                     "export": ExportSettings(export_dir=str(Path(tmp) / "exports"), buckets=args.buckets),
                     "curation": CurationResource(), "review": ReviewSettings(), "generation": GenerationResource()}
        resources = {k: v for k, v in available.items() if k in training_dataset.required_resource_keys}
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME, documents)

        def build(profile=None) -> tuple[float, dict]:
            started = time.perf_counter()
            with dg.build_asset_context(resources=resources, instance=instance) as context:
                if profile:
                    profile.enable()
                result = training_dataset(context=context, config=TrainingDatasetConfig())
                if profile:
                    profile.disable()
            return time.perf_counter() - started, result.metadata

        whole, metadata = build()
        # One more document: a copy of an original one under a new id.
        original = sorted(d for d in documents if "~copy" not in d)[0]
        with duckdb.connect(str(database)) as con:
            documents = replicate(con, args.copies + 1, args.distinct, first=args.copies, only=original)
        instance.add_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME, documents)
        profile = cProfile.Profile() if args.profile else None
        added, after = build(profile)
    if profile:
        profile.dump_stats(args.profile)
    result = {"documents": len(documents) - 1, "rows": metadata["dagster/row_count"],
              "whole_build_s": round(whole, 2), "one_added_s": round(added, 2),
              "shards_written": after["shards_written"], "shards_kept": after["shards_kept_from_earlier_versions"],
              "documents_taken_in": after["documents_taken_in"],
              "cross_document_duplicates_removed": metadata["cross_document_duplicates_removed"]}
    print(json.dumps(result))
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "results" / f"training_dataset_{args.copies}.json").write_text(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
