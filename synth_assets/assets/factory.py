"""What every per-document asset shares: one partition per document, single-run
backfills, owners, and no automation condition of its own."""

from collections.abc import Iterable

import dagster as dg

from synth_assets.batch import single_run
from synth_assets.partitions import documents_partitions

# Shown on every asset in the UI: who to ask about the dataset.
OWNERS = ["team:synthetic-data"]
# raw_documents, parsed_documents and document_chunks
INGEST_GROUP = "ingest"

# One launcher per partition (issue 28, item 1): per-document work is launched by the
# documents sensor (new and changed files), the batch-failures sensor (a document that
# failed inside a run over many, alone), the verdicts sensor (reviewed_qa_pairs) and the
# nightly catch-up (missing or stale assets, skipping documents a queued or started run
# targets): synth_assets/planning.py decides for all of them. So no per-document asset
# carries an automation condition: with `eager()` the automation sensor launched the
# same partitions again (its newly-missing latch relaunched every asset a run skipped or
# failed, bypassing the blocking checks that had stopped it). The automation sensor
# launches only training_dataset and published_dataset (assets/export.py).


def document_asset(
    *,
    group_name: str,
    kinds: set[str],
    code_version: str,
    deps: Iterable = (),
    pool: str | None = None,
    automation_condition: dg.AutomationCondition | None = None,
):
    """`@dg.asset` for a per-document asset. A run over many documents is one run (its step
    receives every document), so a model starts once for all of them. It has no
    automation condition: the sensors and the catch-up launch it (see above)."""
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
