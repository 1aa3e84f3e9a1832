"""What every per-document asset shares: one partition per document, single-run
backfills, owners, and following its upstream."""

from collections.abc import Iterable

import dagster as dg

from synth_assets.batch import single_run
from synth_assets.partitions import documents_partitions

# Shown on every asset in the UI: who to ask about the dataset.
OWNERS = ["team:synthetic-data"]
# raw_documents, parsed_documents and document_chunks
INGEST_GROUP = "ingest"

# A per-document asset runs again when its upstream partition is updated by a run that
# did not also target it (someone re-materialised parsed_documents from the UI, say); a
# run of the whole process_documents job does not retrigger anything (Dagster ignores
# updates made by a run that already targeted the asset).
follows_upstream = dg.AutomationCondition.eager()


def document_asset(
    *,
    group_name: str,
    kinds: set[str],
    code_version: str,
    deps: Iterable = (),
    pool: str | None = None,
    automation_condition: dg.AutomationCondition | None = follows_upstream,
):
    """`@dg.asset` for a per-document asset. A run over many documents is one run (its step
    receives every document), so a model starts once for all of them."""
    return dg.asset(
        partitions_def=documents_partitions,
        backfill_policy=single_run,
        deps=list(deps),
        automation_condition=automation_condition,
        group_name=group_name,
        kinds=kinds,
        owners=OWNERS,
        code_version=code_version,
        pool=pool,
    )
