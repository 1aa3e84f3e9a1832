"""What rebuilding training_dataset costs as the corpus grows (issue 18).

    .venv/bin/python benchmarks/bench_training_dataset.py --copies 9 --distinct [--profile out.prof]

"One document added" runs that document's steps and then training_dataset over every
document: the rebuild is the part of it that grows with the corpus. This takes the
DuckDB of a finished run (`--source`, default data/synth_assets.duckdb, which `make run`
writes for the example documents), copies every document's rows `--copies` times under
new document, chunk and pair ids (`--distinct`: each copy's questions get a word of
their own, so that many of them stop being cross-document duplicates of the original's;
the count removed is printed), and times the
training_dataset function alone on it (Dagster's direct invocation, an ephemeral
instance with every document registered), with cProfile when asked.
"""

from __future__ import annotations

import argparse
import cProfile
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

from synth_assets.assets.export import source_digests, training_dataset  # noqa: E402
from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME  # noqa: E402
from synth_assets.resources.curation import CurationResource  # noqa: E402
from synth_assets.resources.export import ExportSettings  # noqa: E402
from synth_assets.resources.review import ReviewSettings  # noqa: E402
from synth_assets.resources.storage import PipelineDatabase  # noqa: E402

RENAMED = ("document_id", "pair_id", "chunk_id", "duplicate_of", "relative_path")


def replicate(con: duckdb.DuckDBPyConnection, copies: int, distinct: bool) -> list[str]:
    """Every document's rows `copies` times in all; returns the documents."""
    tables = [row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
    for table in tables:
        columns = [row[0] for row in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]).fetchall()]
        if "document_id" not in columns:
            continue
        for k in range(1, copies):
            select = []
            for column in columns:
                if column in RENAMED:
                    select.append(f"{column} || '~copy{k}' AS {column}")  # NULL stays NULL
                elif distinct and column in ("question", "instruction"):
                    select.append(f"{column} || ' zq{k}x' || substr(md5(coalesce(pair_id, '')), 1, 6) AS {column}")
                else:
                    select.append(column)
            con.execute(f"INSERT INTO {table} SELECT {', '.join(select)} FROM {table} "
                        "WHERE document_id NOT LIKE '%~copy%'")
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
    parser.add_argument("--profile", help="write cProfile statistics of the rebuild to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        database = Path(tmp) / "pipeline.duckdb"
        shutil.copy(args.source, database)
        with duckdb.connect(str(database)) as con:
            documents = replicate(con, args.copies, args.distinct)
        available = {"duckdb": PipelineDatabase(database=str(database)),
                     "export": ExportSettings(export_dir=str(Path(tmp) / "exports")),
                     "curation": CurationResource(), "review": ReviewSettings()}
        resources = {k: v for k, v in available.items() if k in training_dataset.required_resource_keys}
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME, documents)
        profile = cProfile.Profile() if args.profile else None
        started = time.perf_counter()
        with dg.build_asset_context(resources=resources, instance=instance) as context:
            if profile:
                profile.enable()
            result = training_dataset(context=context)
            if profile:
                profile.disable()
        seconds = time.perf_counter() - started
    if profile:
        profile.dump_stats(args.profile)
    metadata = result.metadata
    print(f"{len(documents)} documents: training_dataset {seconds:.1f} s, {metadata['dagster/row_count']} rows, "
          f"{metadata['cross_document_duplicates_removed']} cross-document duplicates removed")


if __name__ == "__main__":
    main()
