"""Which documents need which assets, grouped into which runs: decided here, once.

`make run` (run.py), the documents sensor and the nightly catch-up (sensors.py,
schedules.py) only launch what this module decides:

- what each document needs (`Work`): its whole pipeline when its file is new or its
  content changed; only its missing or stale assets after a change of model, prompt
  version or filter threshold; or nothing, when it is up to date;
- how those documents are grouped into runs (`plan_runs`): neighbours in the
  partition order that need the same assets share one single-run backfill when they
  are `single_run_min` or more (synth_assets/batch.py says what happens inside one);
  every other document gets a run of its own;
- what becomes of a document whose file is gone (`removed_documents`, `drop_removed`),
  and which documents of a finished run run again alone (`documents_to_run_alone`).

Deciding is pure. Looking at what Dagster recorded (`documents_needing_work`) writes
nothing; remembering the documents found up to date, so that the next look is quick,
is a step of its own (`remember_up_to_date`).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import gc
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from synth_assets.checks import quality_checks
from synth_assets.core.documents import file_sha256
from synth_assets.core.incremental import FolderState, folder_state
from synth_assets.dagster_internals import (
    StaleStatus,
    failed_checks,
    failed_checks_by_partition,
    latest_storage_ids,
    read_instance_value,
    stale_status_resolver,
    write_instance_value,
)
from synth_assets.jobs import PROCESS_DOCUMENTS_JOB
from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.storage import RAW_DOCUMENTS_TABLE, delete_document

SINGLE_RUN_MIN_DOCUMENTS_ENV = "SYNTH_ASSETS_SINGLE_RUN_MIN_DOCUMENTS"
DEFAULT_SINGLE_RUN_MIN_DOCUMENTS = 10
# With a model backend, two neighbours already share a run: each run pays a model load
# (in process) or at least a lease and resources (a server), which costs more than the
# exact status a run per document gives.
MODEL_BACKEND_SINGLE_RUN_MIN_DOCUMENTS = 2


def default_single_run_min_documents(uses_a_model: bool) -> int:
    """The threshold when SYNTH_ASSETS_SINGLE_RUN_MIN_DOCUMENTS is not set: a run per
    document for the model-free backend below 10 documents (cheap, exact status), every
    neighbouring document needing work in one run with a model backend."""
    return MODEL_BACKEND_SINGLE_RUN_MIN_DOCUMENTS if uses_a_model else DEFAULT_SINGLE_RUN_MIN_DOCUMENTS

# The tags Dagster reads to run one job over a range of partitions in one run.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
TRIGGER_TAG = "synth_assets/trigger"

# Key, in the instance's key-value store (where sensors keep their cursors), of the
# documents last found up to date: see documents_needing_work.
UP_TO_DATE_DOCUMENTS_KEY = "synth_assets/up_to_date_documents"


def parse_single_run_min_documents(text: str) -> int:
    """The value of SYNTH_ASSETS_SINGLE_RUN_MIN_DOCUMENTS: a whole number, at least 2."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{SINGLE_RUN_MIN_DOCUMENTS_ENV}={text!r} is not a whole number") from None
    if value < 2:
        raise ValueError(f"{SINGLE_RUN_MIN_DOCUMENTS_ENV}={value}: a run of many documents needs at least 2")
    return value


# -- what a document needs ---------------------------------------------------------


class Need(enum.Enum):
    WHOLE = "whole"  # a new file, or its content changed: every asset of the job
    ASSETS = "assets"  # only some assets are missing or stale
    UP_TO_DATE = "up to date"


@dataclass(frozen=True)
class Work:
    """What one document needs: WHOLE, UP_TO_DATE, or Work.of_assets(the stale ones)."""

    need: Need
    assets: tuple[dg.AssetKey, ...] = ()

    @classmethod
    def of_assets(cls, keys: Iterable[dg.AssetKey]) -> Work:
        keys = tuple(keys)
        return cls(Need.ASSETS, keys) if keys else UP_TO_DATE

    @property
    def needed(self) -> bool:
        return self.need != Need.UP_TO_DATE

    @property
    def selection(self) -> tuple[dg.AssetKey, ...] | None:
        """What a run for it selects: None for the whole job."""
        return None if self.need == Need.WHOLE else self.assets


WHOLE = Work(Need.WHOLE)
UP_TO_DATE = Work(Need.UP_TO_DATE)


# -- grouping into runs (pure) -----------------------------------------------------


def range_tags(first: str, last: str) -> dict[str, str]:
    return {RANGE_START_TAG: first, RANGE_END_TAG: last}


@dataclass(frozen=True)
class PlannedRun:
    """One run: of one document, or (`single_run`) one single-run backfill over the
    partition range documents[0]..documents[-1], whose documents are all of it."""

    documents: tuple[str, ...]
    assets: tuple[dg.AssetKey, ...] | None = None  # None: every asset of the job
    single_run: bool = False

    @property
    def span(self) -> str:
        return f"{self.documents[0]}..{self.documents[-1]}" if self.single_run else self.documents[0]

    @property
    def partition_key(self) -> str | None:
        return None if self.single_run else self.documents[0]

    @property
    def asset_selection(self) -> list[dg.AssetKey] | None:
        return None if self.assets is None else list(self.assets)

    @property
    def tags(self) -> dict[str, str]:
        return range_tags(self.documents[0], self.documents[-1]) if self.single_run else {}

    def request(self, *, run_key: str, trigger: str) -> dg.RunRequest:
        """This run, for the daemon to launch (the sensor and the schedule)."""
        return dg.RunRequest(
            job_name=PROCESS_DOCUMENTS_JOB, partition_key=self.partition_key, asset_selection=self.asset_selection,
            run_key=run_key, tags={TRIGGER_TAG: trigger, **self.tags},
        )


def contiguous_blocks(keys: Iterable[str], order: Sequence[str]) -> list[list[str]]:
    """`keys` cut into runs of neighbours in the partition order (a partition range
    covers every partition between its ends, so only neighbours can share a run)."""
    position = {key: i for i, key in enumerate(order)}
    blocks: list[list[str]] = []
    for key in sorted(keys, key=position.__getitem__):
        if blocks and position[blocks[-1][-1]] == position[key] - 1:
            blocks[-1].append(key)
        else:
            blocks.append([key])
    return blocks


def plan_runs(work: Mapping[str, Work], order: Sequence[str], single_run_min: int) -> list[PlannedRun]:
    """The runs for the documents that need work, in partition order (`order`, which
    holds every document of `work`): neighbours that need the same assets share one
    single-run backfill when they are `single_run_min` (at least 2) or more; every
    other document has a run of its own."""
    by_selection: dict[tuple[dg.AssetKey, ...] | None, list[str]] = {}
    for key, needs in work.items():
        if needs.needed:
            by_selection.setdefault(needs.selection, []).append(key)
    runs = []
    for selection, keys in by_selection.items():
        for block in contiguous_blocks(keys, order):
            if len(block) >= max(single_run_min, 2):
                runs.append(PlannedRun(tuple(block), selection, single_run=True))
            else:
                runs += [PlannedRun((key,), selection) for key in block]
    position = {key: i for i, key in enumerate(order)}
    return sorted(runs, key=lambda run: position[run.documents[0]])


def documents_to_run_alone(run_tags: Mapping[str, str], failed: Mapping[str, str]) -> list[str]:
    """The documents of a finished run that run again, each on its own: those that
    failed inside a run over many documents. Dagster shows such a document as
    materialized in that run; its own failed run is what shows the failure, naming
    the file (synth_assets/batch.py). A run of one document has failed on its own."""
    return list(failed) if RANGE_START_TAG in run_tags else []


# Runs that are waiting or going: the catch-up leaves their documents to them.
IN_PROGRESS_STATUSES = [
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING,
]
PARTITION_TAG = "dagster/partition"


def documents_in_progress(instance: dg.DagsterInstance, order: Sequence[str]) -> set[str]:
    """The documents a queued or started run targets: its partition, or every partition of
    its range (a run over many documents), whichever job launched it (the sensors, the
    catch-up, a backfill or a button in the UI). `order` is the partition order."""
    position = {key: i for i, key in enumerate(order)}
    busy: set[str] = set()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS_STATUSES)):
        tags = run.tags
        if tags.get(PARTITION_TAG) in position:
            busy.add(tags[PARTITION_TAG])
        first, last = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
        if first in position and last in position:
            busy.update(order[position[first]:position[last] + 1])
    return busy


# -- the folder against the database -----------------------------------------------


def stored_state(duckdb: PipelineDatabase) -> FolderState:
    """The folder state the database already reflects (content hashes of parsed files):
    the documents sensor's starting point when it has no cursor yet, so documents that
    `make run` already processed are not processed again. With each file's size and
    modification time as fingerprinted, so a file that has not moved since is not read
    again to be hashed (core/incremental.py)."""
    with duckdb.get_connection() as con:
        rows = con.execute(f"SELECT document_id, sha256, size_bytes, modified_at FROM {RAW_DOCUMENTS_TABLE}").fetchall()
    return {key: {"sha256": sha256, "size": size, "mtime_ns": None, "mtime": mtime}
            for key, sha256, size, mtime in rows}


def changed_documents(files: Mapping[str, Path], stored: FolderState,
                      sha256: Callable[[Path], str] = file_sha256) -> list[str]:
    """Documents whose file the database has not parsed, or parsed with other content.
    Only files whose size or modification time moved since they were fingerprinted are
    read (`sha256`)."""
    current = folder_state(files, stored, sha256)
    return [key for key in files
            if key not in stored or key not in current or stored[key]["sha256"] != current[key]["sha256"]]


def removed_documents(registered: Iterable[str], present: Iterable[str]) -> list[str]:
    """Registered documents whose file is no longer in the folder."""
    return sorted(set(registered) - set(present))


def drop_removed(duckdb: PipelineDatabase, removed: list[str], on_removed: str) -> list[str]:
    """With on_removed="drop", delete every row of these documents (their files are
    gone) and return them, for the caller to delete their partitions (`make run`
    directly, the sensor by a request that its tick records); with "keep", nothing."""
    if on_removed != "drop" or not removed:
        return []
    with duckdb.get_connection() as con:
        for key in removed:
            delete_document(con, key)
    return list(removed)


# -- missing and stale assets ------------------------------------------------------


def per_document_assets(asset_graph) -> list[dg.AssetKey]:
    return [
        key for key in asset_graph.toposorted_asset_keys
        if asset_graph.get(key).is_materializable and asset_graph.get(key).partitions_def is not None
    ]


def is_fresh(instance: dg.DagsterInstance, asset_graph, key: dg.AssetKey, partition_key: str | None = None) -> bool:
    return stale_status_resolver(instance, asset_graph).get_status(key, partition_key) == StaleStatus.FRESH


@functools.cache
def _partitioned_blocking_checks() -> list[dg.AssetCheckKey]:
    return [spec.key for checks in quality_checks for spec in checks.check_specs
            if spec.blocking and spec.partitions_def is not None]


@functools.cache
def gated_assets() -> frozenset[dg.AssetKey]:
    """Assets with a blocking check."""
    return frozenset(spec.asset_key for checks in quality_checks for spec in checks.check_specs if spec.blocking)


def failed_gates(instance: dg.DagsterInstance, partition_key: str) -> dict[dg.AssetKey, list[str]]:
    """Assets of this document whose latest blocking check evaluation failed, with the
    names of those checks."""
    failed: dict[dg.AssetKey, list[str]] = {}
    for key in failed_checks(instance, _partitioned_blocking_checks(), partition_key):
        failed.setdefault(key.asset_key, []).append(key.name)
    return failed


def failed_gates_of(instance: dg.DagsterInstance, partition_keys: list[str]) -> dict[str, dict[dg.AssetKey, list[str]]]:
    """failed_gates of many documents (those with none left out), read at once."""
    failed: dict[str, dict[dg.AssetKey, list[str]]] = {}
    for partition_key, keys in failed_checks_by_partition(instance, _partitioned_blocking_checks(),
                                                          partition_keys).items():
        for key in keys:
            failed.setdefault(partition_key, {}).setdefault(key.asset_key, []).append(key.name)
    return failed


def assets_needing_work(
    instance: dg.DagsterInstance, asset_graph, partition_key: str, resolver=None
) -> list[dg.AssetKey]:
    """The per-document assets of one document that are missing or stale (their code
    version, such as the model, prompt version or a filter threshold, or an upstream's
    data changed since they were materialised), and what is below them, in graph order.

    Blocking checks gate their downstream only within one run, so: below an asset
    whose blocking check failed last time and that has not changed since, nothing is
    needed (the document stays blocked until it changes); and when an asset below a
    gated asset is needed, the gated asset runs again too, so its check decides again.
    """
    resolver = resolver or stale_status_resolver(instance, asset_graph)
    keys = per_document_assets(asset_graph)
    stale = {key for key in keys if resolver.get_status(key, partition_key) != StaleStatus.FRESH}
    blocked_at = {key for key in failed_gates(instance, partition_key) if key not in stale}
    needed: set[dg.AssetKey] = set()
    for key in keys:  # graph order: what is below a needed asset will change too
        parents = asset_graph.get(key).parent_keys
        if parents & blocked_at and not parents & needed:
            blocked_at.add(key)  # below a gate that failed and has not changed: wait
            continue
        if key in stale or parents & needed:
            needed.add(key)
            blocked_at.discard(key)  # it runs again, so its check decides again
    gated = gated_assets()
    for key in list(needed):
        needed |= asset_graph.get(key).parent_keys & gated
    return [key for key in keys if key in needed]


@dataclass(frozen=True)
class WorkFound:
    """What a look at some documents found: each one's work, and, for those wholly up
    to date, what their assets last recorded (what remember_up_to_date keeps)."""

    work: dict[str, Work]
    up_to_date: dict[str, str]  # document -> its assets' latest storage ids
    definitions: str  # the per-document assets' code versions and edges, hashed


def _remembered(instance: dg.DagsterInstance) -> dict:
    return json.loads(read_instance_value(instance, UP_TO_DATE_DOCUMENTS_KEY) or "{}")


def documents_needing_work(
    instance: dg.DagsterInstance, asset_graph, partition_keys: Iterable[str], whole: Iterable[str] = ()
) -> WorkFound:
    """What each of these documents needs: WHOLE for those in `whole` (new or changed
    files), else assets_needing_work. Writes nothing.

    Dagster's stale status costs a few event-log queries per asset and document (about
    35 ms per document on a 2-core machine, so minutes for thousands of documents at
    every look). So the documents found up to date are remembered (remember_up_to_date)
    with the code versions of the assets and the storage ids of each asset's latest
    materialization and observation for that document: these are all a document's
    stale status depends on (its assets only depend on its own partitions). While they
    are the same, the document is still up to date and Dagster is not asked again; any
    new materialization, wipe or code change makes it asked. Only documents that are
    wholly fresh are remembered, not blocked ones (their gate's check may run again).
    """
    resolver = stale_status_resolver(instance, asset_graph)
    keys = per_document_assets(asset_graph)
    definitions = _definitions(asset_graph)
    partition_keys = list(partition_keys)
    whole = set(whole)
    with gc_paused():  # millions of rows read, none of them in a cycle
        records = _latest_records(instance, asset_graph)
        latest_of = {key: records(key) for key in partition_keys if key not in whole}
        remembered = _remembered(instance)
    was_up_to_date = remembered.get("documents", {}) if remembered.get("definitions") == definitions else {}
    work: dict[str, Work] = {}
    up_to_date: dict[str, str] = {}
    for partition_key in partition_keys:
        if partition_key in whole:
            work[partition_key] = WHOLE
            continue
        latest = latest_of[partition_key]
        if was_up_to_date.get(partition_key) == latest:
            work[partition_key], up_to_date[partition_key] = UP_TO_DATE, latest
            continue
        work[partition_key] = Work.of_assets(assets_needing_work(instance, asset_graph, partition_key, resolver))
        if all(resolver.get_status(key, partition_key) == StaleStatus.FRESH for key in keys):  # cached
            up_to_date[partition_key] = latest
    return WorkFound(work, up_to_date, definitions)


@contextlib.contextmanager
def gc_paused():
    """Python's cycle collector paused while a look reads a row per document and asset
    (1.8 million at 100,000 documents): every few hundred new objects it walks the ones
    already read, so the look grew faster than the corpus (documents_needing_work: 4.6 s
    at 100,000 documents, 2.3 s paused). What is read holds no cycles; the collector
    runs again at the end."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _definitions(asset_graph) -> str:
    """The per-document assets' code versions and edges, hashed."""
    return hashlib.sha256(json.dumps([
        [key.to_user_string(), asset_graph.get(key).code_version,
         sorted(parent.to_user_string() for parent in asset_graph.get(key).parent_keys)]
        for key in per_document_assets(asset_graph)
    ]).encode()).hexdigest()


def _latest_records(instance: dg.DagsterInstance, asset_graph) -> Callable[[str], str]:
    """Document -> the storage ids of its assets' latest materialization and observation."""
    latest = [latest_storage_ids(instance, key, event_type) for key in per_document_assets(asset_graph)
              for event_type in (dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_OBSERVATION)]
    return lambda partition_key: ",".join(str(ids.get(partition_key, "")) for ids in latest)


def up_to_date_after_run(
    instance: dg.DagsterInstance, asset_graph, ran: Iterable[str], completed: Iterable[str]
) -> WorkFound:
    """What runs over the documents `ran` leave, for remember_up_to_date: those in
    `completed` (every asset they needed materialised in order, none failed or blocked)
    are up to date now, so Dagster's stale status is not asked for each (about 0.1 s a
    document, the largest cost of a cold run outside its steps). The others, failed or
    blocked, are looked at as documents_needing_work does: one blocked inside a run over
    many documents has every asset materialised (its later ones as "skipped"), so it is
    up to date until it changes, and stays blocked."""
    ran = list(ran)
    completed = set(completed) & set(ran)
    others = [key for key in ran if key not in completed]
    # Usually none: then no resolver and no second read of the storage ids.
    looked = documents_needing_work(instance, asset_graph, others) if others else WorkFound({}, {}, "")
    with gc_paused():
        records = _latest_records(instance, asset_graph)
        completed_records = {key: records(key) for key in ran if key in completed}
    return WorkFound({**{key: WHOLE for key in completed}, **looked.work},
                     {**completed_records, **looked.up_to_date}, _definitions(asset_graph))


def remember_up_to_date(instance: dg.DagsterInstance, found: WorkFound) -> None:
    """Remember, in the instance, the documents `found` up to date, and forget the
    others it looked at, so the next look asks Dagster only where something changed."""
    with gc_paused():
        remembered = _remembered(instance)
        before = remembered.get("documents", {}) if remembered.get("definitions") == found.definitions else {}
        documents = dict(before)
        for key in found.work:
            documents.pop(key, None)
        documents.update(found.up_to_date)
        registered = set(instance.get_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME))
        documents = {key: value for key, value in documents.items() if key in registered}
    # Unchanged after a look that found nothing new (every `make run` and catch-up of an
    # up-to-date corpus): not written again, 8 MB at 100,000 documents.
    if documents == before and remembered.get("definitions") == found.definitions:
        return
    write_instance_value(instance, UP_TO_DATE_DOCUMENTS_KEY, json.dumps({
        "definitions": found.definitions,
        "documents": documents,
    }))


def copy_remembered(source: dg.DagsterInstance, target: dg.DagsterInstance, new_storage_ids: Mapping[int, int]) -> int:
    """Copy the remembered up-to-date documents into an instance whose events were copied
    from `source` (synth_assets/migrate.py), their storage ids renumbered by
    `new_storage_ids` (source id -> target id); a document with an id not copied is left
    out, so it is looked at again. Returns how many documents are remembered there."""
    remembered = _remembered(source)
    documents = {}
    for key, records in remembered.get("documents", {}).items():
        ids = [int(part) if part else None for part in records.split(",")]
        if all(old is None or old in new_storage_ids for old in ids):
            documents[key] = ",".join("" if old is None else str(new_storage_ids[old]) for old in ids)
    if remembered:
        write_instance_value(target, UP_TO_DATE_DOCUMENTS_KEY,
                             json.dumps({"definitions": remembered["definitions"], "documents": documents}))
    return len(documents)


CORPUS_SHARD_KEY = "synth_assets/corpus_shard"
UNSHARDED = "(whole corpus)"


def claim_instance(instance: dg.DagsterInstance, shard: str | None) -> None:
    """Stop unless this Dagster instance is this corpus shard's (or, with no shard, the
    unsharded corpus's). Every shard keeps its documents as partitions of the same name,
    so a shard pointed at another's instance (a DAGSTER_HOME left unchanged) would take
    the other's documents for removed files and drop them: the first look records whose
    instance it is, and every later look checks it."""
    owner = shard or UNSHARDED
    recorded = read_instance_value(instance, CORPUS_SHARD_KEY)
    if recorded is None:
        prefix = f"{shard}__" if shard else None
        strangers = [key for key in instance.get_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME)
                     if prefix is None or not key.startswith(prefix)] if shard else []
        if strangers:
            raise dg.Failure(f"this Dagster instance ({instance.root_directory}) holds documents of another shard "
                             f"or of the whole corpus (e.g. {strangers[0]}): corpus shard {shard!r} needs its own "
                             "DAGSTER_HOME (make run SHARD=<name> sets it)")
        write_instance_value(instance, CORPUS_SHARD_KEY, owner)
    elif recorded != owner:
        raise dg.Failure(f"this Dagster instance ({instance.root_directory}) belongs to corpus shard {recorded!r}, "
                         f"not {owner!r}: give each shard its own DAGSTER_HOME (make run SHARD=<name> sets it)")
