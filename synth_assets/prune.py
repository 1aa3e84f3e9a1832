"""`python -m synth_assets.prune --keep N` (`make prune KEEP=N`): delete old dataset versions.

Every build that changes a row writes a version folder into the export folder; they are
kept until pruned. This keeps the N newest, the published one (LATEST) and the current
dataset's shards (the next build starts from them), and deletes the other versions and
every stored shard only they listed (core/pruning.py). `--dry-run` says what would go.
It refuses while a run that builds, checks or publishes the dataset is in progress on the
project's Dagster instance, naming it: such a build may be linking the files it would
delete. Runs over documents alone (process_documents) do not stop it.

`--merged` (`make prune KEEP=N MERGED=1`) prunes the merged dataset of corpus shards
(SYNTH_ASSETS_MERGED_DIR, on make merge's instance) the same way; a merge links its files
again from the shards' published versions, so no shard beyond the kept versions' is kept.
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
from synth_assets.jobs import PROCESS_DOCUMENTS_JOB
from synth_assets.merge import build_merge_definitions
from synth_assets.run import UNFINISHED
from synth_assets.storage import DATASET_SHARDS_TABLE


def current_shards(duckdb) -> set[str]:
    """The shard files of the dataset as last built (a candidate, if its check failed)."""
    with duckdb.get_connection() as con:
        rows = con.execute(f"SELECT format, split, bucket, digest, rows FROM {DATASET_SHARDS_TABLE}").fetchall()
    return {file for row in rows for file in Shard(*row).files()}


# The assets that write or read the export folder's versions.
DATASET_ASSETS = {dg.AssetKey("training_dataset"), dg.AssetKey("published_dataset")}


def touches_the_dataset(run: dg.DagsterRun) -> bool:
    """Whether a run may write, check or publish a dataset version (a run whose selection
    is not recorded may, unless it is the per-document job)."""
    checked = {check.asset_key for check in run.asset_check_selection or ()}
    if run.asset_selection is not None or run.asset_check_selection is not None:
        return bool((set(run.asset_selection or ()) | checked) & DATASET_ASSETS)
    return run.job_name != PROCESS_DOCUMENTS_JOB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=int, required=True, metavar="N",
                        help="versions to keep, newest first (at least 1), besides the published one")
    parser.add_argument("--dry-run", action="store_true", help="say what would be deleted; delete nothing")
    parser.add_argument("--merged", action="store_true",
                        help="the merged dataset of corpus shards (SYNTH_ASSETS_MERGED_DIR), on make merge's instance")
    args = parser.parse_args(argv)
    if args.keep < 1:
        parser.error(f"--keep must be at least 1, not {args.keep}")
    resources = definitions.settings.resources
    if args.merged:  # the merge's instance runs nothing else: any run of it is a merge
        export_dir, touches = Path(build_merge_definitions().resources["merge"].merged_dir), lambda run: True
    else:
        export_dir, touches = Path(resources["export"].export_dir), touches_the_dataset
    with dg.DagsterInstance.get() as instance:
        running = [run for run in instance.get_runs(dg.RunsFilter(statuses=UNFINISHED)) if touches(run)]
        if running:
            print(f"synth_assets: run {running[0].run_id} ({running[0].job_name}) builds the dataset and is in "
                  "progress; prune when it has finished", file=sys.stderr)
            return 2
    published = published_version(export_dir)
    pruned = prune_versions(export_dir, args.keep, {published} if published else set(),
                            set() if args.merged else current_shards(resources["duckdb"]), dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{export_dir}: {verb} {len(pruned.versions_deleted)} version(s) and {pruned.files_deleted} stored shard "
          f"file(s) ({pruned.bytes_freed / 1e6:.1f} MB); kept {', '.join(pruned.versions_kept) or 'none'}"
          + (f" (published: {published})" if published else ""))
    for version in pruned.versions_deleted:
        print(f"  {verb} {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
