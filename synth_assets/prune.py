"""`python -m synth_assets.prune --keep N` (`make prune KEEP=N`): delete old dataset versions.

Every build that changes a row writes a version folder into the export folder; they are
kept until pruned. This keeps the N newest, the published one (LATEST) and the current
dataset's shards (the next build starts from them), and deletes the other versions and
every stored shard only they listed (core/pruning.py). `--dry-run` says what would go.
It refuses while a run is in progress on the project's Dagster instance, naming it: a
build under way may be linking the files it would delete.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import dagster as dg

from synth_assets import definitions
from synth_assets.core.exporting import published_version
from synth_assets.core.pruning import prune_versions
from synth_assets.core.shards import Shard
from synth_assets.run import UNFINISHED
from synth_assets.storage import DATASET_SHARDS_TABLE


def current_shards(duckdb) -> set[str]:
    """The shard files of the dataset as last built (a candidate, if its check failed)."""
    with duckdb.get_connection() as con:
        rows = con.execute(f"SELECT format, split, bucket, digest, rows FROM {DATASET_SHARDS_TABLE}").fetchall()
    return {path for row in rows for path in (Shard(*row).path(), Shard(*row).path("jsonl"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=int, required=True, metavar="N",
                        help="versions to keep, newest first (at least 1), besides the published one")
    parser.add_argument("--dry-run", action="store_true", help="say what would be deleted; delete nothing")
    args = parser.parse_args(argv)
    if args.keep < 1:
        parser.error(f"--keep must be at least 1, not {args.keep}")
    resources = definitions.settings.resources
    export_dir = Path(resources["export"].export_dir)
    with dg.DagsterInstance.get() as instance:
        running = instance.get_runs(dg.RunsFilter(statuses=UNFINISHED), limit=1)
        if running:
            print(f"synth_assets: run {running[0].run_id} ({running[0].job_name}) is in progress; "
                  "prune when nothing runs", file=sys.stderr)
            return 2
    published = published_version(export_dir)
    pruned = prune_versions(export_dir, args.keep, {published} if published else set(),
                            current_shards(resources["duckdb"]), dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{export_dir}: {verb} {len(pruned.versions_deleted)} version(s) and {pruned.files_deleted} stored shard "
          f"file(s) ({pruned.bytes_freed / 1e6:.1f} MB); kept {', '.join(pruned.versions_kept) or 'none'}"
          + (f" (published: {published})" if published else ""))
    for version in pruned.versions_deleted:
        print(f"  {verb} {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
