"""`make merge`: one training dataset from every corpus shard's published version.

Each corpus shard (`make run SHARD=<sub-folder>`, docs/DEPLOYMENT.md "Corpus shards")
publishes its own dataset under data/shards/<shard>/exports. This code location merges
them: merged_dataset writes a version of every shard's files (a question already in an
earlier shard left out), its blocking check reads the version's manifest, file footers
and question keys, and published_merged_dataset moves LATEST in data/merged once the
check passed. Run with its own Dagster instance (`make merge` sets DAGSTER_HOME), or in
the UI: `DAGSTER_HOME=.dagster_shards/merged dagster dev -m synth_assets.merge`, whose
shards_published_sensor merges again whenever a shard publishes a new version.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

import dagster as dg

from synth_assets.core.corpus_merge import (
    card_summary,
    merged_problems,
    plan_merge,
    published_corpora,
    summed_card_stats,
)
from synth_assets.core.exporting import publish, published_version, write_version
from synth_assets.resources.export import ExportSettings
from synth_assets.settings import SHARD_DATA_DIR, SHARD_DEFAULTS, Settings, resource_from_env

MERGE_GROUP = "merge"
MERGED_DATASET_CHECK = "merged_dataset_check"
MERGE_JOB = "merge_shards"
SHARDS_DIR_ENV = "SYNTH_ASSETS_SHARDS_DIR"
MERGED_DIR_ENV = "SYNTH_ASSETS_MERGED_DIR"
SHARD_EXPORTS = SHARD_DEFAULTS["SYNTH_ASSETS_EXPORT_DIR"]


class MergeSettings(dg.ConfigurableResource):
    """Where the shards publish and where the merged dataset goes."""

    # Every <shards_dir>/<shard>/exports is a shard's export folder (make run SHARD=<shard>).
    shards_dir: str = SHARD_DATA_DIR
    merged_dir: str = "data/merged"

    def corpora(self) -> dict[str, Path]:
        root = Path(self.shards_dir)
        return {folder.name: folder / SHARD_EXPORTS for folder in sorted(root.iterdir())
                if (folder / SHARD_EXPORTS).is_dir()} if root.is_dir() else {}


def _merged_version(instance: dg.DagsterInstance) -> str | None:
    event = instance.get_latest_materialization_event(merged_dataset.key)
    version = event.asset_materialization.metadata.get("version") if event else None
    return version.value if version is not None and version.value != "none" else None


@dg.asset(group_name=MERGE_GROUP, kinds={"huggingface", "parquet"}, owners=["team:synth-assets"])
def merged_dataset(context: dg.AssetExecutionContext, merge: MergeSettings,
                   export: ExportSettings) -> dg.MaterializeResult:
    """Every corpus shard's published dataset in one version (data/merged/<version>): the
    shards in name order, a question an earlier shard already has left out (per format),
    each shard's split kept (a document is in one shard). Files with no repeat are
    hard-linked, not copied; a shard not yet published is listed and left out."""
    corpora = published_corpora(merge.corpora())
    if not any(c.version for c in corpora):
        raise dg.Failure(f"no corpus shard has published a dataset under {merge.shards_dir} "
                         f"({[c.name for c in corpora] or 'no shard folders'}): run make run SHARD=<name> first")
    merged_dir = Path(merge.merged_dir)
    plan = plan_merge(corpora, merged_dir)
    merged_from = {c.name: c.version for c in plan.corpora if c.version}
    note = (f"Merged from {len(merged_from)} corpus shards ({', '.join(f'{n} {v}' for n, v in merged_from.items())});"
            f" each shard split its own documents into train and validation, by document."
            + (f" Not yet published, left out: {', '.join(plan.unpublished)}." if plan.unpublished else ""))
    stats = summed_card_stats([c.card_stats for c in plan.corpora if c.version])
    result = write_version(merged_dir, plan.shards, export.options(), {**stats, "split_note": note},
                           {"generation": None, "merged_from": merged_from, "card_stats": card_summary(stats)})
    context.log.info(f"merged version {result.version} of {len(merged_from)} shards: {result.path}")
    return dg.MaterializeResult(metadata={
        "version": result.version,
        "export_dir": str(result.path.resolve()),
        "new_version_written": result.created,
        "dagster/row_count": sum(result.rows.get("alpaca", {}).values()),
        "rows_per_format_and_split": dg.MetadataValue.json(result.rows),
        "shards_merged": dg.MetadataValue.json(merged_from),
        "rows_per_shard": dg.MetadataValue.json({c.name: c.rows.get("alpaca", {}) for c in plan.corpora if c.version}),
        "repeats_across_shards_removed": dg.MetadataValue.json(plan.repeats),
        "shards_not_published": dg.MetadataValue.json(plan.unpublished),
        "files_with_repeats_left_out": plan.filtered,
        "files_linked_as_published": len(plan.shards) - plan.filtered,
    })


@dg.asset_check(asset=merged_dataset, name=MERGED_DATASET_CHECK, blocking=True)
def merged_dataset_check(context: dg.AssetCheckExecutionContext, merge: MergeSettings) -> dg.AssetCheckResult:
    """The merged version is whole: every file its manifest lists is there with its rows,
    no question appears twice in a format, and the formats of the same items hold the
    same number of rows. Blocking: a failure leaves the published merged version as it was."""
    version = _merged_version(context.instance)
    if version is None:
        return dg.AssetCheckResult(passed=False, metadata={"problems": "no merged version written"})
    problems = merged_problems(Path(merge.merged_dir), Path(merge.merged_dir) / version)
    return dg.AssetCheckResult(passed=not problems, metadata={
        "version": version, "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none")})


@dg.asset(deps=[merged_dataset], group_name=MERGE_GROUP, kinds={"huggingface"}, owners=["team:synth-assets"])
def published_merged_dataset(context: dg.AssetExecutionContext, merge: MergeSettings) -> dg.MaterializeResult:
    """The merged version fine-tuners get: LATEST in data/merged, moved only after the
    merged dataset's check passed."""
    version = _merged_version(context.instance)
    if version is None:
        raise dg.Failure("no merged version to publish")
    previous = publish(Path(merge.merged_dir), version)
    return dg.MaterializeResult(metadata={"live_version": version, "previous_version": previous or "none"})


merge_job = dg.define_asset_job(MERGE_JOB, selection=[merged_dataset, published_merged_dataset],
                                description="Merge the corpus shards' published datasets, check, publish.")


@dg.sensor(job=merge_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def shards_published_sensor(context: dg.SensorEvaluationContext, merge: MergeSettings) -> dg.SensorResult:
    """Merges again when a corpus shard publishes a new version (each shard's LATEST, read
    every minute): the merged dataset follows the shards without anyone running make merge."""
    published = {c.name: c.version for c in published_corpora(merge.corpora()) if c.version}
    seen = json.dumps(published, sort_keys=True)
    if not published or seen == context.cursor:
        return dg.SensorResult(skip_reason=f"no shard published a new version under {merge.shards_dir}", cursor=seen)
    key = hashlib.sha256(seen.encode()).hexdigest()[:16]
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=key, tags={"shards": seen[:200]})], cursor=seen)


def build_merge_definitions(environ: dict[str, str] | None = None) -> dg.Definitions:
    """The merge's code location, its settings read from the environment."""
    environ = dict(os.environ if environ is None else environ)
    merge = resource_from_env(MergeSettings, {"shards_dir": SHARDS_DIR_ENV, "merged_dir": MERGED_DIR_ENV}, environ)
    export = Settings.from_env({k: v for k, v in environ.items() if k != "SYNTH_ASSETS_CORPUS_SHARD"}).resources["export"]
    return dg.Definitions(assets=[merged_dataset, published_merged_dataset], asset_checks=[merged_dataset_check],
                          jobs=[merge_job], sensors=[shards_published_sensor],
                          resources={"merge": merge, "export": export})


def merge_all(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """Materialise the merged dataset, its check and its publication in one run."""
    return defs.resolve_job_def(MERGE_JOB).execute_in_process(instance=instance, raise_on_error=False)


def main() -> int:
    defs = build_merge_definitions()
    with dg.DagsterInstance.get() as instance:
        result = merge_all(defs, instance)
        merged_dir = Path(defs.resources["merge"].merged_dir)
        for event in result.get_asset_materialization_events():
            metadata = event.step_materialization_data.materialization.metadata
            if "version" in metadata:
                print(f"merged {metadata['version'].value}: {metadata['rows_per_format_and_split'].value}; "
                      f"repeats across shards removed: {metadata['repeats_across_shards_removed'].value}; "
                      f"not published: {metadata['shards_not_published'].value}")
        for evaluation in result.get_asset_check_evaluations():
            if not evaluation.passed:
                print(f"{MERGED_DATASET_CHECK} failed: {evaluation.metadata['problems'].value}", file=sys.stderr)
        if not result.success:
            print(f"the merge failed; {published_version(merged_dir) or 'nothing'} stays published", file=sys.stderr)
            return 1
        print(f"published {published_version(merged_dir)} in {merged_dir}")
        return 0


# The code location (dagster dev -m synth_assets.merge); `make merge` builds its own.
defs = build_merge_definitions()

if __name__ == "__main__":
    raise SystemExit(main())
