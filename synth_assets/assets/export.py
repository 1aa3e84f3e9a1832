"""Export: training formats per document, and the merged dataset fine-tuners load."""


import base64
import hashlib
import json
from pathlib import Path

import pandas as pd

import dagster as dg

from synth_assets.assets.factory import OWNERS, document_asset
from synth_assets.assets.generate import dataset_usage, documents_usage
from synth_assets.assets.human import NO_HUMAN_DATA, configured_folder, human_examples, mix_human_rows
from synth_assets.batch import blocked_documents, for_each_document, no_text_documents
from synth_assets.candidates import candidate_to_publish
from synth_assets.core.corpus_merge import card_summary
from synth_assets.core.coverage import Coverage, coverage_by_document, coverage_markdown, coverage_stats
from synth_assets.core.dedup import (
    DEFAULT_NEAR_DUPLICATE_THRESHOLD,
    DEFAULT_NUM_PERM,
    DEFAULT_SEED,
    DUPLICATE_QUESTION,
    NEAR_DUPLICATE_QUESTION,
    question_key,
)
from synth_assets.core.decontamination import (
    CONTAMINATED_COLUMNS,
    EvalIndex,
    EvalSetError,
    contaminated_rows,
    contamination_summary,
    eval_sets_fingerprint,
    find_contaminated,
    load_eval_indexes,
    parse_eval_sets,
)
from synth_assets.core.charts import stacked_bars_png
from synth_assets.core.tasks import mix_bars, mix_markdown, mix_table, share_report
from synth_assets.core.exporting import (
    GROUNDING_BINS,
    TASK_CHART_FILE,
    glance_charts,
    PROVENANCE_COLUMNS,
    TRAINING_COLUMNS,
    build_format_rows,
    publish,
    published_version,
    write_bucket,
    write_version,
)
from synth_assets.core.formats import split_note, split_order, to_alpaca, to_conversation
from synth_assets.core.shards import HUMAN_BUCKET, SHARD_STORE, Shard, bucket_of, read_shards
from synth_assets.core.task_rules import dedup_text
from synth_assets.dataset_index import (
    CONTAMINATED,
    Generation,
    current_generation,
    documents_depending_on,
    drift,
    index_rows,
    indexed_documents,
    remove_documents,
    start_generation,
    take_in,
)
from synth_assets.core.preference import CANDIDATE_COLUMNS, PREFERENCE_FORMATS, add_counts, preference_frames
from synth_assets.core.review import apply_reviews, precision_recall_markdown, review_summary
from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME
from synth_assets.quality import validate_alpaca, validate_sharegpt
from synth_assets.resources.curation import CurationResource
from synth_assets.resources.export import EVAL_SETS_ENV, ExportSettings
from synth_assets.resources.generation import GenerationResource
from synth_assets.resources.review import ReviewSettings
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.storage import (
    ALPACA_EXAMPLES_TABLE,
    CONTAMINATED_ROWS_TABLE,
    CROSS_DOCUMENT_DUPLICATES_TABLE,
    DATASET_COVERAGE_TABLE,
    DATASET_INDEX_TABLE,
    DATASET_PREFERENCE_COUNTS_TABLE,
    DATASET_SHARDS_TABLE,
    DATASET_SOURCES_TABLE,
    DATASET_STATS_TABLE,
    DATASET_USAGE_TABLE,
    DOCUMENT_CHUNKS_TABLE,
    FILTERED_QA_PAIRS_TABLE,
    RAW_DOCUMENTS_TABLE,
    REJECTED_QA_PAIRS_TABLE,
    REVIEWED_QA_PAIRS_TABLE,
    SHAREGPT_EXAMPLES_TABLE,
    PREFERENCE_CANDIDATES_TABLE,
    in_transaction,
    load_kept_pairs_with_provenance,
    read_partitions,
    replace_partition_rows,
)

EXPORT_GROUP = "export"
class TrainingDatasetConfig(dg.Config):
    """`make run ARGS=--rebuild-dataset` sets rebuild_dataset: a new index generation, every
    document taken in again with word weights of the whole dataset."""
    rebuild_dataset: bool = False


# Documents taken in per batch (their questions in memory at once; see take_in_changed).
DOCUMENTS_PER_BATCH = 2000
# The near-duplicate check's settings: part of what a generation was built with.
DEDUP_SETTINGS = [DEFAULT_NEAR_DUPLICATE_THRESHOLD, DEFAULT_NUM_PERM, DEFAULT_SEED]


EXCLUDED_LOGGED = 50


def source_digest(con, document_id: str) -> str:
    """What a document's formatted rows are made from: its kept pairs and its file's hash.
    training_dataset refuses rows whose source changed since: new pairs that a blocking
    check stopped, or a changed file whose new version failed before reaching them."""
    return source_digests(con, [document_id])[document_id]


def source_digests(con, document_ids: list[str]) -> dict[str, str]:
    """source_digest of many documents, in one query: a hash of each document's kept pairs
    (ids, questions, answers, reasoning) made in SQL, so that the thousands of documents
    training_dataset looks at each build cost milliseconds."""
    rows = con.execute(f"""
        WITH wanted AS (SELECT unnest(?) AS document_id),
             pairs AS (SELECT document_id, md5(string_agg(concat_ws(chr(31), pair_id, question, answer,
                                                                    coalesce(reasoning, '')), chr(30) ORDER BY pair_id)) AS digest
                       FROM {FILTERED_QA_PAIRS_TABLE} WHERE document_id IN (SELECT document_id FROM wanted) GROUP BY 1)
        SELECT w.document_id, coalesce(p.digest, 'no pairs'), r.sha256
        FROM wanted w LEFT JOIN pairs p USING (document_id) LEFT JOIN {RAW_DOCUMENTS_TABLE} r USING (document_id)
        """, [document_ids]).fetchall()
    return {document_id: f"{digest[:16]}/{sha256[:16] if sha256 is not None else 'no file'}"
            for document_id, digest, sha256 in rows}


def _source_digests_kept(con, document_ids: list[str]) -> dict[str, str]:
    """source_digests, the pairs hashed again only for documents whose fingerprint (count
    and a sum of hashes of their pairs, read in one cheap pass) changed since the digest
    was kept in DATASET_SOURCES_TABLE; the kept digests updated, those of documents no
    longer among `document_ids` deleted."""
    rows = con.execute(f"""
        WITH wanted AS (SELECT unnest(?) AS document_id),
             now AS (SELECT document_id, count(*)::VARCHAR || ':' || sum(hash(pair_id, question, answer,
                                                                          coalesce(reasoning, '')))::VARCHAR AS fingerprint
                     FROM {FILTERED_QA_PAIRS_TABLE} WHERE document_id IN (SELECT document_id FROM wanted) GROUP BY 1)
        SELECT w.document_id, coalesce(n.fingerprint, 'no pairs') || '/' || coalesce(r.sha256, 'no file'), k.fingerprint, k.digest
        FROM wanted w LEFT JOIN now n USING (document_id) LEFT JOIN {RAW_DOCUMENTS_TABLE} r USING (document_id)
        LEFT JOIN {DATASET_SOURCES_TABLE} k USING (document_id)""", [document_ids]).fetchall()
    fingerprints = {document_id: fingerprint for document_id, fingerprint, _, _ in rows}
    digests = {document_id: digest for document_id, fingerprint, kept, digest in rows if fingerprint == kept}
    again = source_digests(con, [d for d in document_ids if d not in digests])
    kept = pd.DataFrame([(d, fingerprints[d], digest) for d, digest in again.items()],
                        columns=["document_id", "fingerprint", "digest"])

    def record() -> None:  # and the digests of documents gone from the dataset forgotten
        con.execute(f"DELETE FROM {DATASET_SOURCES_TABLE} WHERE document_id IN (SELECT unnest(?)) "
                    "OR document_id NOT IN (SELECT unnest(?))", [list(again), document_ids])
        con.register("kept_digests", kept)
        con.execute(f"INSERT INTO {DATASET_SOURCES_TABLE} SELECT * FROM kept_digests")
        con.unregister("kept_digests")
    gone = con.execute(f"SELECT count(*) FROM {DATASET_SOURCES_TABLE} WHERE document_id NOT IN (SELECT unnest(?))",
                       [document_ids]).fetchone()[0]
    if again or gone:
        in_transaction(con, record)
    return digests | again


def _format_partition(context, duckdb: PipelineDatabase, table: str, to_row, extra=()) -> dg.MaterializeResult:
    return for_each_document(context, duckdb, table, [table],
                             lambda key: _format_document(key, duckdb, table, to_row, extra))


def _format_document(document_id: str, duckdb: PipelineDatabase, table: str, to_row, extra) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        pairs = load_kept_pairs_with_provenance(con, document_id)
    columns = [*PROVENANCE_COLUMNS, *extra]
    rows = pd.DataFrame(
        [{**to_row(p), **{c: getattr(p, c) for c in columns}} for p in pairs.itertuples()],
        columns=None if len(pairs) else columns,
    )
    with duckdb.get_connection() as con:
        rows["source_digest"] = source_digest(con, document_id)
    with duckdb.get_connection() as con:
        replace_partition_rows(con, table, document_id, rows)
    preview = rows.head(3).drop(columns=[c for c in [*columns, "source_digest"] if c != "source_file"])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "preview": dg.MetadataValue.md(preview.to_markdown(index=False) if len(rows) else "no rows"),
        }
    )


# code_version 2 (both formats): the rows carry the pair's language; 4: source_digest made in SQL.
@document_asset(group_name=EXPORT_GROUP, kinds={"duckdb", "great_expectations"}, code_version="4",
                deps=["filtered_qa_pairs"])
def alpaca_examples(context: dg.AssetExecutionContext, duckdb: PipelineDatabase) -> dg.MaterializeResult:
    """Kept pairs as Alpaca rows ({instruction, input, output}) with their provenance beside them."""
    return _format_partition(context, duckdb, ALPACA_EXAMPLES_TABLE, lambda p: to_alpaca(p.question, p.answer),
                             extra=("reasoning", "turns"))


@document_asset(group_name=EXPORT_GROUP, kinds={"duckdb", "great_expectations"}, code_version="4",
                deps=["filtered_qa_pairs"])
def sharegpt_examples(context: dg.AssetExecutionContext, duckdb: PipelineDatabase) -> dg.MaterializeResult:
    """Kept pairs as ShareGPT conversations ({from: human, value}, {from: gpt, value})."""
    return _format_partition(
        context, duckdb, SHAREGPT_EXAMPLES_TABLE,
        lambda p: {"conversations": json.dumps(to_conversation(json.loads(p.turns) if isinstance(p.turns, str) else [(p.question, p.answer)],
                                                               chat=False), ensure_ascii=False)}
    )


def rebuilt_after_documents_change(catch_up_cron: str) -> dg.AutomationCondition:
    """training_dataset is rebuilt once the documents it merges have changed and none of
    them is still running, and on the nightly catch-up cron. Not `eager`: eager waits
    while any upstream partition is missing, and a document that failed (a bad file)
    stays missing for good, which would stop the dataset from ever following."""
    return (
        (dg.AutomationCondition.any_deps_updated() | dg.AutomationCondition.cron_tick_passed(catch_up_cron))
        .since_last_handled()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("rebuilt_after_documents_change")


# Its automation condition, which takes the catch-up cron, is set by build_pipeline_assets.
@dg.asset(
    # reviewed_qa_pairs: the experts' verdicts, applied here (a new verdict rebuilds it).
    # human_examples: rows people wrote, mixed into train (none when no folder is set).
    deps=[alpaca_examples, sharegpt_examples, "reviewed_qa_pairs", human_examples],
    group_name=EXPORT_GROUP,
    kinds={"huggingface", "duckdb", "great_expectations"},
    owners=OWNERS,
    code_version="3",
)
def training_dataset(
    context: dg.AssetExecutionContext, config: TrainingDatasetConfig, duckdb: PipelineDatabase, export: ExportSettings, curation: CurationResource,
    review: ReviewSettings, generation: GenerationResource,
) -> dg.MaterializeResult:
    """Every document's kept pairs merged into one training dataset: Alpaca, ShareGPT and
    chat-messages formats, split into train and validation by document (no document in
    both), written as HF DatasetDicts, JSONL and Parquet with a dataset card and
    LLaMA-Factory's dataset_info.json, in a folder of data/exports named by its version.

    It reads each document's formatted rows, which passed their checks and were made
    from the kept pairs that passed theirs; a document a blocking check stopped, or whose
    pairs changed since, is left out (SYNTH_ASSETS_EXPORT_BLOCKED_DOCUMENTS=keep_last_good
    keeps its last good rows) and listed here and in the dataset card. The version comes
    from the content, so the same inputs give the same version and a new export never
    overwrites an older one. This is a candidate: published_dataset publishes it once the
    checks below pass.

    Experts' verdicts (reviewed_qa_pairs) are applied: an edit replaces the generated
    question and answer, a rejected pair is left out. The review counts and each filter
    rule's precision and recall on the reviewed pairs are shown here and in the card.

    Human-labelled rows (human_examples) that repeat no synthetic question are mixed into
    the train split at SYNTH_ASSETS_HUMAN_RATIO, with generator `human`; the mix is shown
    here and in the card.

    Rows (synthetic or human) that copy or reword a question of the eval sets named by
    SYNTH_ASSETS_EVAL_SETS are left out (reason `contaminated`), kept in contaminated_rows
    and listed here and in the card (core/decontamination.py).
    """
    # The eval sets first: one that cannot be read stops the export before anything is written.
    eval_indexes = configured_eval_sets(duckdb, export)
    registered = set(context.instance.get_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME))
    blocked = blocked_documents(duckdb)
    # Documents with nothing to learn from give no rows; listed, not counted as failing.
    no_text = {key: reason for key, reason in no_text_documents(duckdb).items() if key in registered}
    options = export.options()
    fingerprint = _settings_fingerprint(export, curation, eval_indexes)
    store = Path(export.export_dir) / SHARD_STORE
    with duckdb.get_connection() as con:
        # One transaction, one snapshot: what each document's rows were made from, read
        # from both formats at once (a document re-formatted between two reads would
        # otherwise look made from different pairs, or worse, half new).
        read: dict = {}
        in_transaction(con, lambda: read.update(_formatted_digests(con)))
        made_from, verdicts = read["made_from"], read["verdicts"]
        documents = sorted(set(made_from) | set(blocked))
        sources = _source_digests_kept(con, documents)
        digests = {d: "|".join([*sorted(made_from.get(d, ())), verdicts.get(d, "")]) for d in made_from}
        index_gen = current_generation(con)
        indexed = indexed_documents(con)
        rebuild = _rebuild_reason(con, index_gen, fingerprint, config.rebuild_dataset, export.drift_limit)
        # Rows already taken in with the same digest passed their format checks then: only
        # the others are read and checked again.
        to_check = [d for d in made_from if rebuild or indexed.get(d) != digests[d]]
        checked_rows = _formatted_rows(con, to_check)
        excluded, kept_last_good = _excluded_documents(documents, registered, blocked, sources, *checked_rows,
                                                       export.blocked_documents, made_from=made_from)
        included = [d for d in documents if d not in excluded and d in made_from]
        if rebuild:
            changed, removed = included, sorted(indexed)
        else:
            changed = [d for d in included if indexed.get(d) != digests[d]]
            removed = sorted(set(changed) | (set(indexed) - set(included)))
            # A repeat of a question of a changed or removed document may be the first copy now.
            again = documents_depending_on(con, removed) & set(included)
            changed, removed = sorted(set(changed) | again), sorted(set(removed) | again)
        reviewed = con.execute(f"SELECT * FROM {REVIEWED_QA_PAIRS_TABLE} ORDER BY pair_id").df()
        pairs, _ = apply_reviews(_pairs_of(con, changed), reviewed)
        found: dict = {}

        def take_in_changed() -> None:  # in one transaction: the index and its tables move together
            nonlocal index_gen
            frozen = None
            if rebuild:
                keys = [question_key(dedup_text(r), r.get("language") if isinstance(r.get("language"), str) else None)
                        for r in pairs.to_dict("records")]
                index_gen, frozen = start_generation(con, fingerprint, rebuild, keys)
                con.execute(f"DELETE FROM {CROSS_DOCUMENT_DUPLICATES_TABLE}")
                con.execute(f"DELETE FROM {CONTAMINATED_ROWS_TABLE}")
            else:
                remove_documents(con, removed)
                for table in (CROSS_DOCUMENT_DUPLICATES_TABLE, CONTAMINATED_ROWS_TABLE):
                    con.execute(f"DELETE FROM {table} WHERE document_id IN (SELECT unnest(?))", [removed])

            found["contaminated"] = pd.DataFrame(columns=CONTAMINATED_COLUMNS)

            def contaminated(rows: pd.DataFrame) -> set:
                dirty = contaminated_in(rows, eval_indexes)
                found["contaminated"] = pd.concat([found["contaminated"], dirty], ignore_index=True)
                return set(dirty["pair_id"])

            # In batches of documents, in the build order: each batch is matched against the
            # index in SQL, so a whole build holds one batch's questions in memory, not all.
            order = split_order(set(pairs["document_id"]), export.seed)
            taken = pd.concat([take_in(con, index_gen, pairs[pairs["document_id"].isin(batch)], digests,
                                       export.validation_ratio, export.seed, contaminated, frozen=frozen,
                                       first_batch=(not indexed or bool(rebuild)) and i == 0, buckets=export.buckets)
                               for i, batch in enumerate(_batches(order, DOCUMENTS_PER_BATCH))]
                              or [pairs.iloc[:0].assign(split=None, status=None, duplicate_of=None)],
                              ignore_index=True)
            duplicates = taken[taken["status"].isin([DUPLICATE_QUESTION, NEAR_DUPLICATE_QUESTION])]
            duplicate_rows = duplicates.rename(columns={"status": "reason"})[
                ["pair_id", "document_id", "question", "reason", "duplicate_of"]]
            if len(duplicate_rows):
                con.register("duplicate_rows", duplicate_rows)
                con.execute(f"INSERT INTO {CROSS_DOCUMENT_DUPLICATES_TABLE} (pair_id, document_id, question, reason, "
                            "duplicate_of) SELECT pair_id, document_id, question, reason, duplicate_of FROM duplicate_rows")
                con.unregister("duplicate_rows")
            _insert_contaminated(con, found["contaminated"])
            found["taken"] = taken
        in_transaction(con, take_in_changed)
        index_gen = current_generation(con)
        # What the dataset holds, summed in SQL: rows per status, per document (with its
        # split), whether any has reasoning, the buckets with rows.
        counts = dict(con.execute(f"SELECT status, count(*) FROM {DATASET_INDEX_TABLE} GROUP BY 1").fetchall())
        kept_rows = int(counts.get("kept", 0))
        per_split = con.execute(f"SELECT document_id, any_value(split), count(*) FROM {DATASET_INDEX_TABLE} "
                                "WHERE status = 'kept' GROUP BY 1 ORDER BY 1").fetchall()
        with_reasoning, kept_buckets = con.execute(
            f"SELECT coalesce(bool_or(has_reasoning), false), list(DISTINCT bucket) FROM {DATASET_INDEX_TABLE} "
            "WHERE status = 'kept'").fetchone()
        # The card's counts, kept per document and counted again for those taken in or changed.
        _count_documents(con, included, set(changed), {d: f"{digests.get(d, 'no rows')}|{sources[d]}" for d in included})
        stats = _dataset_stats(con)
        # Coverage is over every registered document not left out: one that kept nothing
        # counts too (uncovered), which is what the figure is for.
        per_document = _coverage(con, sorted(registered - set(excluded)), set(changed), digests)
        stats["model_usage"] = _usage(con, context.instance, generation, included, set(changed), kept_rows)
        duplicates_sample = con.execute(
            f"SELECT question, reason, duplicate_of FROM {CROSS_DOCUMENT_DUPLICATES_TABLE} LIMIT 5").df()
        contaminated = con.execute(f"SELECT * FROM {CONTAMINATED_ROWS_TABLE}").df()
        stats["review"] = review_summary(reviewed, _applied_verdicts(con, reviewed, included),
                                         curation.filter_config().min_judge_score)
    # Named one by one up to a screenful; every one of them is in the metadata and the card.
    for document_id, reason in list(excluded.items())[:EXCLUDED_LOGGED]:
        context.log.warning(f"{document_id} left out of the training dataset: {reason}")
    if len(excluded) > EXCLUDED_LOGGED:
        context.log.warning(f"... and {len(excluded) - EXCLUDED_LOGGED} more documents left out "
                            "(excluded_documents in this asset's metadata, and the dataset card, list them all)")
    live = published_version(Path(export.export_dir))
    verdict_counts = stats["review"]  # not `review`: that is the ReviewSettings resource
    listed = {
        "pairs_reviewed": verdict_counts["reviewed"],
        "review_verdicts": dg.MetadataValue.json(
            {"accepted": verdict_counts["accepted"], "edited": verdict_counts["edited"],
             "rejected": verdict_counts["rejected"], "applied_to_this_dataset": verdict_counts["applied"]}),
        "precision_recall_per_rule": dg.MetadataValue.md(precision_recall_markdown(verdict_counts["precision_recall"])),
        "excluded_documents": dg.MetadataValue.json(excluded),
        "kept_last_good_rows": dg.MetadataValue.json(kept_last_good),
        "no_text_documents": dg.MetadataValue.json(no_text),
        "published_version": live or "none yet",
        "index_generation": index_gen.generation if index_gen else 0,
        "index_generation_began": index_gen.reason if index_gen else "no generation yet",
        "documents_taken_in": len(changed),
        "documents_taken_out": len(removed),
    }
    stats["coverage"] = coverage_stats(per_document)
    listed.update({
        "chunk_coverage": stats["coverage"]["chunk_coverage"] or 0.0,
        "heading_coverage": stats["coverage"]["heading_coverage"] or 0.0,
        "uncovered_chunks": stats["coverage"]["uncovered_chunks"],
        "coverage_per_document": dg.MetadataValue.md(coverage_markdown(stats["coverage"])),
    })
    if not kept_rows:
        # Nothing to learn from: a status, not a crash. No candidate; the published one stays.
        message = (f"no document has vetted rows to export ({len(excluded)} left out, {len(no_text)} with no text); "
                   f"the published dataset stays {live or 'unpublished'}")
        context.log.warning(message)
        return dg.MaterializeResult(metadata={"dagster/row_count": 0, "version": "none", "status": message,
                                              **listed})
    # The shards of every bucket a changed document is in (all of them in a new index_gen,
    # or when the formats change: a first row with reasoning adds the *_cot formats).
    formats = _formats(bool(with_reasoning), curation.preference_pairs)
    preference_counts: dict[int, dict] = {}  # bucket -> what its preference pairs came to
    with duckdb.get_connection() as con:
        previous = con.execute(f"SELECT format, split, bucket, digest, rows FROM {DATASET_SHARDS_TABLE}").fetchall()
        had = {s[0] for s in previous}
        buckets = set(kept_buckets or ()) | {s[2] for s in previous if s[2] != HUMAN_BUCKET}
        touched = buckets if rebuild or had != set(formats) else {bucket_of(d, export.buckets) for d in removed + changed}
        written = []
        for bucket in sorted(touched):
            in_bucket = index_rows(con, bucket=bucket)
            if in_bucket.empty:
                continue
            rows, _ = apply_reviews(_pairs_of(con, sorted(set(in_bucket["document_id"]))), reviewed)
            rows = rows.merge(in_bucket[["pair_id", "split"]], on="pair_id")
            candidates = (read_partitions(con, PREFERENCE_CANDIDATES_TABLE, sorted(set(in_bucket["document_id"])))
                          if curation.preference_pairs else None)
            written += _write_bucket(store, bucket, rows, options, formats, candidates, preference_counts)
    # Human rows, mixed into train in proportion to every synthetic train row, are their own shard.
    # Every synthetic question is read only when there are human rows to compare with them.
    with duckdb.get_connection() as con:
        synthetic = (index_rows(con) if configured_folder(review) else pd.DataFrame(columns=["pair_id", "question", "split"]))[
            ["pair_id", "question", "split"]].reindex(columns=list(dict.fromkeys([*pairs.columns, "split"])))
    human, stats["human_mix"] = mix_human_rows(context, duckdb, review, synthetic, export.seed)
    if eval_indexes and len(human):  # human rows may copy a benchmark too
        dirty = contaminated_in(human, eval_indexes)
        if len(dirty):
            human = human[~human["pair_id"].isin(dirty["pair_id"])].reset_index(drop=True)
            with duckdb.get_connection() as con:
                _insert_contaminated(con, dirty)
            contaminated = pd.concat([contaminated, dirty], ignore_index=True)
    human_shards = _write_bucket(store, HUMAN_BUCKET, human, options, formats) if len(human) else []
    with duckdb.get_connection() as con:
        def record_shards() -> None:
            con.execute(f"DELETE FROM {DATASET_SHARDS_TABLE} WHERE bucket IN (SELECT unnest(?)) OR bucket = ? "
                        "OR format NOT IN (SELECT unnest(?))", [sorted(touched), HUMAN_BUCKET, formats])
            for shard in written + human_shards:
                con.execute(f"INSERT INTO {DATASET_SHARDS_TABLE} VALUES (?, ?, ?, ?, ?, ?)",
                            [index_gen.generation, shard.format, shard.split, shard.bucket, shard.digest, shard.rows])
            # The preference pairs' counts per bucket, so the card sums every bucket, not the touched ones.
            con.execute(f"DELETE FROM {DATASET_PREFERENCE_COUNTS_TABLE} WHERE bucket IN (SELECT unnest(?)) OR ?",
                        [sorted(touched), not curation.preference_pairs])
            for bucket, tally in preference_counts.items():
                con.execute(f"INSERT INTO {DATASET_PREFERENCE_COUNTS_TABLE} VALUES (?, ?)", [bucket, json.dumps(tally)])
        in_transaction(con, record_shards)
        stats["preference"] = add_counts(*(json.loads(c) for (c,) in con.execute(
            f"SELECT counts FROM {DATASET_PREFERENCE_COUNTS_TABLE}").fetchall())) if curation.preference_pairs else None
        shards = [Shard(*row) for row in con.execute(
            f"SELECT format, split, bucket, digest, rows FROM {DATASET_SHARDS_TABLE} ORDER BY format, split, bucket"
        ).fetchall()]
    checked = int(counts.get("kept", 0)) + int(counts.get(CONTAMINATED, 0)) + len(human)
    stats["decontamination"] = contamination_summary(eval_indexes, contaminated, checked) if eval_indexes else None
    splits = {document_id: split for document_id, split, _ in per_split}
    note = split_note([d for d, _, n in per_split for _ in range(n)], splits, export.validation_ratio)
    mix = dataset_mix(stats.pop("mix_groups"), stats.pop("mix_documents"), stats.pop("mix_documents_with_task"),
                      generation.task_shares, stats.get("task_rejections", {}))
    glance = glance_charts(stats)
    result = write_version(
        Path(export.export_dir), shards, options,
        {**stats, "excluded_documents": excluded, "no_text_documents": no_text, "split_note": note,
         "task_mix": mix["markdown"], "index_generation": index_gen.generation,
         "glance": {name: chart["markdown"] for name, chart in glance.items()},
         "files": {TASK_CHART_FILE: mix["png"], **{name: chart["png"] for name, chart in glance.items()}}},
        {"generation": index_gen.generation, "generation_began": index_gen.reason,
         "written_shards": sorted(s.path() for s in written + human_shards),
         "card_stats": card_summary(stats)})  # for a merge of corpus shards (make merge)
    context.log.info(
        f"candidate export {result.version} {'written' if result.created else 'already existed, unchanged'}: "
        f"{result.path} ({len(changed)} documents taken in, {len(written + human_shards)} shards written, "
        f"{len(shards) - len(written + human_shards)} kept; published once its checks pass)")
    total_rows = sum(result.rows["alpaca"].values())
    validation_rows = result.rows["alpaca"]["validation"]
    preview = read_shards(result.path, [s for s in shards if s.format == "alpaca" and s.rows][:1]).head(5)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": total_rows,
            "version": result.version,
            "export_dir": str(result.path.resolve()),
            "new_version_written": result.created,
            "documents": len(splits),
            "train_documents": sum(1 for s in splits.values() if s == "train"),
            "validation_documents": sum(1 for s in splits.values() if s == "validation"),
            "validation_share_of_rows": round(validation_rows / total_rows, 3),
            "split_note": note or "near the asked ratio",
            "human_rows": len(human),
            "human_mix": dg.MetadataValue.json(stats["human_mix"] or {"status": NO_HUMAN_DATA}),
            "rows_per_format_and_split": dg.MetadataValue.json(result.rows),
            **listed,
            "cross_document_duplicates_removed": int(counts.get(DUPLICATE_QUESTION, 0))
            + int(counts.get(NEAR_DUPLICATE_QUESTION, 0)),
            "shards_written": len(written + human_shards),
            "shards_kept_from_earlier_versions": len(shards) - len(written + human_shards),
            "contaminated_rows_removed": len(contaminated),
            # What run.py compares to build the dataset again when the eval sets change.
            "eval_sets_fingerprint": eval_sets_fingerprint([i.spec for i in eval_indexes],
                                                           [i.sha256 for i in eval_indexes]),
            "decontamination": dg.MetadataValue.json(
                stats["decontamination"] or {"status": f"no eval set configured ({EVAL_SETS_ENV})"}),
            "contaminated_rows_sample": dg.MetadataValue.md(
                contaminated.head(5)[["question", "eval_set", "matched_text", "method", "score"]].to_markdown(
                    index=False) if len(contaminated) else "none"),
            "cross_document_duplicates_sample": dg.MetadataValue.md(
                duplicates_sample.to_markdown(index=False) if len(duplicates_sample) else "none"
            ),
            "pass_rate": round(stats["pass_rate"], 3),
            "model_usage": dg.MetadataValue.json(stats["model_usage"]),
            "tasks_within_shares": mix["within"],
            "task_mix": dg.MetadataValue.md(mix["markdown"]),
            "task_chart": dg.MetadataValue.md(
                f"![items per task and difficulty](data:image/png;base64,{base64.b64encode(mix['png']).decode()})"),
            "task_chart_file": dg.MetadataValue.path(str((result.path / TASK_CHART_FILE).resolve())),
            "card": dg.MetadataValue.path(str((result.path / "README.md").resolve())),
            **{f"chart_{name.removesuffix('.png')}": dg.MetadataValue.md(
                f"![{name}](data:image/png;base64,{base64.b64encode(chart['png']).decode()})\n\n{chart['markdown']}")
               for name, chart in glance.items()},
            "preview": dg.MetadataValue.md(
                preview.reindex(columns=["instruction", "output", "document_id"]).to_markdown(index=False)
            ),
        }
    )


@dg.asset(
    deps=[training_dataset],
    group_name=EXPORT_GROUP,
    kinds={"huggingface"},
    owners=OWNERS,
    code_version="1",
    automation_condition=dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed(),
)
def published_dataset(
    context: dg.AssetExecutionContext, export: ExportSettings
) -> dg.MaterializeResult:
    """The version of the training dataset fine-tuners get: LATEST in the export folder
    and, when configured, the Hugging Face Hub dataset. It moves only after the training
    dataset's blocking checks passed on the written candidate, so a failing check leaves
    the previous version published. It publishes its own run's candidate, once the check
    of this run passed on that version (never whichever candidate is latest: another run
    may have written one since), or, in a run without one, the version the latest passing
    check names (synth_assets/candidates.py)."""
    chosen = candidate_to_publish(context.instance, context.run_id)
    candidate = chosen.version or "none"
    export_dir = Path(export.export_dir)
    if candidate == "none":
        live = published_version(export_dir)
        message = f"nothing new to publish ({chosen.reason}); {live or 'no version'} stays published"
        context.log.warning(message)
        return dg.MaterializeResult(metadata={"live_version": live or "none", "status": message})
    previous = publish(export_dir, candidate)
    hub_commit = export.push_to_hub(str(export_dir / candidate), context.log)
    context.log.info(f"published {candidate} (was {previous or 'none'}): {chosen.reason}")
    return dg.MaterializeResult(
        metadata={
            "live_version": candidate,
            "previous_version": previous or "none",
            "export_dir": str((export_dir / candidate).resolve()),
            "status": "published" if previous != candidate else "unchanged (same content)",
            "pushed_to_hub": hub_commit or "no (SYNTH_ASSETS_HF_REPO not set)",
        }
    )


def configured_eval_sets(duckdb: PipelineDatabase, export: ExportSettings) -> list[EvalIndex]:
    """The indexes of the eval sets SYNTH_ASSETS_EVAL_SETS names (built once per file content,
    kept in the pipeline database); [] when none is set, without touching anything."""
    specs = parse_eval_sets(export.eval_sets)
    if not specs:
        return []
    try:
        with duckdb.get_connection() as con:
            return load_eval_indexes(con, specs)
    except EvalSetError as error:
        raise dg.Failure(f"{EVAL_SETS_ENV}: {error}; nothing new is published") from None


def contaminated_in(rows: pd.DataFrame, indexes: list[EvalIndex]) -> pd.DataFrame:
    """The rows (pairs' columns) matching an eval set, as contaminated_rows rows."""
    if not indexes or rows.empty:
        return pd.DataFrame(columns=CONTAMINATED_COLUMNS)
    records = rows.to_dict("records")
    return contaminated_rows(records, find_contaminated(records, indexes))


def _insert_contaminated(con, rows: pd.DataFrame) -> None:
    if len(rows):
        con.register("contaminated", rows)
        columns = ", ".join(CONTAMINATED_COLUMNS)
        con.execute(f"INSERT INTO {CONTAMINATED_ROWS_TABLE} ({columns}) SELECT {columns} FROM contaminated")
        con.unregister("contaminated")


def _excluded_documents(documents, registered, blocked, sources, alpaca, sharegpt,
                        policy: str, made_from: dict[str, set] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """(documents left out with the reason, documents kept with their last good rows).

    Left out: unregistered; formatted rows failing a format suite; alpaca and sharegpt rows
    made from different pairs; and, with the "leave_out" policy, a document a blocking
    check stopped or whose filtered pairs changed since its rows were formatted and checked
    (with "keep_last_good" those keep the rows they last passed with)."""
    excluded: dict[str, str] = {}
    kept_last_good: dict[str, str] = {}
    # Every expectation of these suites is about single rows or uniqueness, so when the
    # whole frame passes, each document's rows pass too: one validation per format,
    # and the per-document validations only to name the documents when it fails.
    suites = [(label, frame, validate) for label, frame, validate in
              (("alpaca", alpaca, validate_alpaca), ("sharegpt", sharegpt, validate_sharegpt))
              if not validate(frame).success]
    # What each document's rows were made from, in one pass (not one scan per document).
    # Given (`made_from`), the frames hold only the documents to check again: the others
    # passed these suites with the same rows when they were taken in.
    digests: dict[str, set] = made_from if made_from is not None else {}
    for frame in (alpaca, sharegpt) if made_from is None else ():
        for document_id, digest in zip(frame["document_id"], frame["source_digest"]):
            digests.setdefault(document_id, set()).add(digest)
    for document_id in documents:
        if document_id not in registered:
            excluded[document_id] = "no longer registered"
            continue
        for label, frame, validate in suites:
            result = validate(frame[frame["document_id"] == document_id])
            if not result.success:
                excluded[document_id] = f"{label} check failed: {', '.join(result.failed)}"
        if document_id in excluded:
            continue
        made_from = digests.get(document_id, set())
        if len(made_from) > 1:
            excluded[document_id] = "its alpaca and sharegpt rows were made from different pairs"
            continue
        stale = None
        if document_id in blocked:
            stale = f"blocked by checks: {blocked[document_id]}"
        elif made_from and sources[document_id].endswith("/no file"):
            stale = "its file failed at raw_documents (unreadable, too large or gone): its rows describe an older version"
        elif made_from and made_from != {sources[document_id]}:
            stale = "its file or its pairs changed since its rows were formatted and checked"
        if stale and policy == "keep_last_good" and made_from:
            kept_last_good[document_id] = stale + " (its last good rows are kept)"
        elif stale:
            excluded[document_id] = stale
    return excluded, kept_last_good


def dataset_mix(groups: list[tuple], documents: int, documents_with_task: dict[str, int], shares: dict[str, float],
                rejections: dict[str, dict[str, int]]) -> dict:
    """The realised mix of the dataset's rows against the configured shares: Markdown, the
    chart (PNG bytes) and whether every task is within SHARE_TOLERANCE. A task off its
    share is explained by its rejections and by the documents that gave none of it.
    From the rows counted per (task, question type, difficulty) group (`groups`: those
    with the count), the documents with rows and those with rows of each task."""
    why = {}
    for task in shares:
        rejected = rejections.get(task, {})
        top = ", ".join(f"{reason} {n}" for reason, n in sorted(rejected.items(), key=lambda i: -i[1])[:3])
        why[task] = (f"{documents - documents_with_task.get(task, 0)} of {documents} documents gave none (too "
                     f"short, or no linked sentences)" + (f"; rejected: {top}" if top else ""))
    within, share_rows = share_report([task for task, _, _, n in groups for _ in range(n)], shares, why)
    table = mix_table([{"task": task, "question_type": kind or None, "difficulty": difficulty}
                       for task, kind, difficulty, _ in groups], counts=[n for *_, n in groups])
    return {"within": within, "markdown": mix_markdown(table, shares, share_rows),
            "png": stacked_bars_png("Items per task, by difficulty", mix_bars(table), "task")}


def _count_documents(con, documents: list[str], taken_in: set[str], digests: dict[str, str]) -> None:
    """Each document's counts for the card (DATASET_STATS_TABLE): counted again for the
    documents taken in this build and those whose rows, pairs or file changed (`digests`:
    what each is counted from), the others kept from earlier builds; the rows of documents
    no longer in the dataset deleted."""
    counted = dict(con.execute(f"SELECT document_id, digest FROM {DATASET_STATS_TABLE} WHERE stat = 'document'"
                               ).fetchall())
    again = [d for d in documents if d in taken_in or counted.get(d) != digests[d]]
    con.register("grounding_bins", pd.DataFrame(GROUNDING_BINS, columns=["label", "low", "high"]))
    rows = con.execute(f"""
        WITH wanted AS (SELECT unnest(?) AS document_id),
             k AS (SELECT * FROM {FILTERED_QA_PAIRS_TABLE} WHERE document_id IN (SELECT document_id FROM wanted)),
             r AS (SELECT document_id, coalesce(task, 'qa') AS task, reject_reasons FROM {REJECTED_QA_PAIRS_TABLE}
                   WHERE document_id IN (SELECT document_id FROM wanted))
        SELECT document_id, 'document' AS stat, NULL AS task, NULL AS key, NULL::INTEGER AS difficulty, 1 AS n FROM wanted
        UNION ALL SELECT document_id, 'kept', NULL, NULL, NULL, count(*) FROM k GROUP BY ALL
        UNION ALL SELECT document_id, 'rejected', NULL, NULL, NULL, count(*) FROM r GROUP BY ALL
        UNION ALL SELECT document_id, 'rejection', task, reason, NULL, count(*)
                  FROM (SELECT document_id, task, unnest(reject_reasons) AS reason FROM r) GROUP BY ALL
        UNION ALL SELECT document_id, 'generator', NULL, generator, NULL, count(*) FROM k WHERE generator IS NOT NULL GROUP BY ALL
        UNION ALL SELECT document_id, 'model', NULL, model, NULL, count(*) FROM k WHERE model IS NOT NULL GROUP BY ALL
        UNION ALL SELECT document_id, 'prompt_version', NULL, prompt_version, NULL, count(*) FROM k
                  WHERE prompt_version IS NOT NULL GROUP BY ALL
        UNION ALL SELECT document_id, 'language', NULL, coalesce(language, 'undetermined'), NULL, count(*) FROM k GROUP BY ALL
        UNION ALL SELECT document_id, 'judge_score', NULL, judge_score::VARCHAR, NULL, count(*) FROM k
                  WHERE judge_score IS NOT NULL GROUP BY ALL
        UNION ALL SELECT k.document_id, 'grounding', NULL, b.label, NULL, count(*) FROM k JOIN grounding_bins b
                  ON k.grounding >= b.low AND (k.grounding < b.high OR (b.high = 1.0 AND k.grounding = 1.0)) GROUP BY ALL
        UNION ALL SELECT a.document_id, 'mix', coalesce(a.task, 'qa'), coalesce(a.question_type, ''), a.difficulty, count(*)
                  FROM {ALPACA_EXAMPLES_TABLE} a JOIN {DATASET_INDEX_TABLE} i USING (pair_id)
                  WHERE i.status = 'kept' AND a.document_id IN (SELECT document_id FROM wanted) GROUP BY ALL
        """, [again]).df()
    con.unregister("grounding_bins")
    rows.insert(1, "digest", rows["document_id"].map(digests))

    def record() -> None:
        con.execute(f"DELETE FROM {DATASET_STATS_TABLE} WHERE document_id IN (SELECT unnest(?)) "
                    "OR document_id NOT IN (SELECT unnest(?))", [again, documents])
        if len(rows):
            con.register("counted", rows)
            con.execute(f"INSERT INTO {DATASET_STATS_TABLE} SELECT * FROM counted")
            con.unregister("counted")
    in_transaction(con, record)


def _dataset_stats(con) -> dict:
    """The card's curation statistics (generators, models, prompt versions, pass rate,
    rejections per reason and task, judge scores and grounding per bin, languages) and the
    task mix: each document's counts (_count_documents) summed in SQL."""
    sums: dict[str, list[tuple]] = {}
    for stat, task, key, difficulty, n in con.execute(
            f"SELECT stat, task, key, difficulty, sum(n)::BIGINT AS n FROM {DATASET_STATS_TABLE} GROUP BY ALL "
            "ORDER BY stat, n DESC, key, task, difficulty").fetchall():
        sums.setdefault(stat, []).append((task, key, difficulty, n))
    total = lambda stat: sum(n for *_, n in sums.get(stat, []))  # noqa: E731
    reasons: dict[str, int] = {}
    per_task: dict[str, dict[str, int]] = {}
    for task, reason, _, n in sums.get("rejection", []):
        reasons[reason] = reasons.get(reason, 0) + n
        per_task.setdefault(task, {})[reason] = n
    with_task = dict(con.execute(f"SELECT task, count(DISTINCT document_id) FROM {DATASET_STATS_TABLE} "
                                 "WHERE stat = 'mix' GROUP BY GROUPING SETS ((task), ())").fetchall())
    kept, generated = total("kept"), total("kept") + total("rejected")
    return {
        "documents": total("document"),
        "generators": sorted(key for _, key, _, _ in sums.get("generator", [])),
        "models": sorted(key for _, key, _, _ in sums.get("model", [])),
        "prompt_versions": sorted(key for _, key, _, _ in sums.get("prompt_version", [])),
        "generated": generated,
        "kept": kept,
        "pass_rate": kept / generated if generated else 0.0,
        "rejections_by_reason": reasons,
        "task_rejections": per_task,
        # For the charts: the kept pairs per judge score and per grounding bin (none unless the judge is on).
        "judge_score_counts": {int(key): n for _, key, _, n in sums.get("judge_score", [])},
        "grounding_counts": {key: n for _, key, _, n in sums.get("grounding", [])},
        "languages": {key: n for _, key, _, n in sums.get("language", [])},
        # The task mix: (task, question type, difficulty, rows) and the documents with rows, of each task.
        "mix_groups": [(task, key, difficulty, n) for task, key, difficulty, n in sums.get("mix", [])],
        "mix_documents": with_task.pop(None, 0),
        "mix_documents_with_task": with_task,
    }


def _coverage(con, documents: list[str], taken_in: set[str], digests: dict[str, str]) -> dict[str, Coverage]:
    """Each document's coverage: measured again for the documents taken in this build and
    those whose rows or file changed, the others as kept from earlier builds."""
    sha = dict(con.execute(f"SELECT document_id, sha256 FROM {RAW_DOCUMENTS_TABLE}").fetchall())
    digest = {d: f"{digests.get(d, 'no rows')}|{sha.get(d)}" for d in documents}
    kept = {row[0]: row[1:] for row in con.execute(
        f"SELECT document_id, digest, chunks, covered_chunks, headings, covered_headings, uncovered_chunk_ids "
        f"FROM {DATASET_COVERAGE_TABLE}").fetchall()}
    again = [d for d in documents if d in taken_in or d not in kept or kept[d][0] != digest[d]]
    chunks = con.execute(
        f"SELECT document_id, chunk_id, chunk_index, heading_path, boilerplate FROM {DOCUMENT_CHUNKS_TABLE}"
        " WHERE document_id IN (SELECT unnest(?))", [again]).df()
    described = con.execute(
        f"SELECT a.document_id, a.chunk_id, a.source_chunk_ids, a.task, a.question_type, a.difficulty "
        f"FROM {ALPACA_EXAMPLES_TABLE} a JOIN {DATASET_INDEX_TABLE} i USING (pair_id) WHERE i.status = 'kept' "
        "AND a.document_id IN (SELECT unnest(?))", [again]).df()
    measured = coverage_by_document(chunks, described, again)

    def record() -> None:
        con.execute(f"DELETE FROM {DATASET_COVERAGE_TABLE} WHERE document_id IN (SELECT unnest(?)) "
                    "OR document_id NOT IN (SELECT unnest(?))", [again, documents])
        rows = pd.DataFrame([(d, digest[d], c.chunks, c.covered_chunks, c.headings, c.covered_headings,
                              c.uncovered_chunk_ids) for d, c in measured.items()],
                            columns=["document_id", "digest", "chunks", "covered_chunks", "headings",
                                     "covered_headings", "uncovered_chunk_ids"])
        if len(rows):
            con.register("measured", rows)
            con.execute(f"INSERT INTO {DATASET_COVERAGE_TABLE} SELECT * FROM measured")
            con.unregister("measured")
    in_transaction(con, record)
    return {d: measured[d] if d in measured else Coverage(*kept[d][1:5], list(kept[d][5] or []))
            for d in documents}


def _usage(con, instance: dg.DagsterInstance, generation: GenerationResource, documents: list[str],
           taken_in: set[str], kept_items: int) -> dict:
    """What generating the dataset's items asked of the model (the card's "Model usage"):
    each document's figures read from the event log when it is taken in, kept in a table."""
    if not generation.uses_a_model:
        return dataset_usage({}, kept_items, uses_a_model=False)
    kept = {d: json.loads(u) for d, u in con.execute(f"SELECT document_id, usage FROM {DATASET_USAGE_TABLE}").fetchall()}
    again = [d for d in documents if d in taken_in or d not in kept]
    read = documents_usage(instance, again)

    def record() -> None:
        con.execute(f"DELETE FROM {DATASET_USAGE_TABLE} WHERE document_id IN (SELECT unnest(?)) "
                    "OR document_id NOT IN (SELECT unnest(?))", [again, documents])
        for document_id, usage in read.items():
            con.execute(f"INSERT INTO {DATASET_USAGE_TABLE} VALUES (?, ?)", [document_id, json.dumps(usage)])
    in_transaction(con, record)
    per_document = {d: read[d] if d in read else kept[d] for d in documents if d in read or d in kept}
    return dataset_usage(per_document, kept_items, uses_a_model=True, prices=generation.prices())


def _batches(items: list, size: int) -> list[list]:
    return [items[start:start + size] for start in range(0, len(items), size)]


def _settings_fingerprint(export: ExportSettings, curation: CurationResource, eval_indexes: list[EvalIndex]) -> str:
    """What a generation was built with: a change of any of it begins a new one."""
    settings = [export.options().__dict__, repr(curation.filter_config()), DEDUP_SETTINGS, export.buckets,
                eval_sets_fingerprint([i.spec for i in eval_indexes], [i.sha256 for i in eval_indexes])]
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _rebuild_reason(con, generation: Generation | None, fingerprint: str, asked: bool, drift_limit: float) -> str | None:
    """Why every document is taken in again (a new generation), or None: only the changed ones."""
    if generation is None:
        return "first build"
    if generation.fingerprint != fingerprint:
        return "a curation, export or eval-set setting changed"
    if asked:
        return "asked (make run ARGS=--rebuild-dataset)"
    moved = drift(con)
    if moved > drift_limit:
        return f"the questions' words drifted {moved:.2f} from the frozen weights (limit {drift_limit})"
    return None


def _formatted_digests(con) -> dict:
    """Per document: the digests of the pairs its formatted rows (both formats) were made
    from, and a digest of the experts' verdicts on its pairs (a new verdict changes its rows)."""
    # The least and the greatest digest of each document's rows stand for all of them: one
    # digest when they are equal, "made from different pairs" when not (a list of the
    # distinct digests of every row cost 0.4 s at 10,000 documents).
    made_from = {document_id: {least, greatest} for document_id, least, greatest in con.execute(
        f"SELECT document_id, min(source_digest), max(source_digest) FROM (SELECT document_id, source_digest "
        f"FROM {ALPACA_EXAMPLES_TABLE} UNION ALL SELECT document_id, source_digest FROM {SHAREGPT_EXAMPLES_TABLE}) "
        "GROUP BY 1").fetchall()}
    verdicts = dict(con.execute(
        f"SELECT document_id, md5(string_agg(concat_ws(chr(31), pair_id, verdict, question, answer, "
        f"original_question, original_answer), chr(30) ORDER BY pair_id)) FROM {REVIEWED_QA_PAIRS_TABLE} GROUP BY 1"
    ).fetchall())
    return {"made_from": made_from, "verdicts": verdicts}


def _formatted_rows(con, document_ids: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The Alpaca and ShareGPT rows of these documents (to check before taking them in)."""
    return tuple(con.execute(f"SELECT * FROM {table} WHERE document_id IN (SELECT unnest(?)) ORDER BY pair_id",
                             [document_ids]).df() for table in (ALPACA_EXAMPLES_TABLE, SHAREGPT_EXAMPLES_TABLE))


def _pairs_of(con, document_ids: list[str]) -> pd.DataFrame:
    """These documents' vetted rows as pairs (question, answer, reasoning, turns, provenance).
    The rows read are the formatted rows that passed their checks, not the current filtered
    pairs: what was vetted is what is exported."""
    rows = con.execute(f"SELECT * FROM {ALPACA_EXAMPLES_TABLE} WHERE document_id IN (SELECT unnest(?)) "
                       "ORDER BY pair_id", [document_ids]).df()
    return rows.rename(columns={"instruction": "question", "output": "answer"})[
        ["question", "answer", "reasoning", "turns", *PROVENANCE_COLUMNS]].reset_index(drop=True)


def _applied_verdicts(con, reviewed: pd.DataFrame, documents: list[str]) -> dict[str, int]:
    """How many verdicts apply to this dataset's rows (the pair's text is what the expert saw)."""
    if reviewed.empty:
        return apply_reviews(reviewed.reindex(columns=["pair_id", "question", "answer"]), reviewed)[1]
    rows = con.execute(
        f"SELECT pair_id, instruction AS question, output AS answer FROM {ALPACA_EXAMPLES_TABLE} "
        "WHERE pair_id IN (SELECT unnest(?)) AND document_id IN (SELECT unnest(?))",
        [list(reviewed["pair_id"]), documents]).df()
    return apply_reviews(rows, reviewed)[1]


def _formats(with_reasoning: bool, preference: bool = False) -> list[str]:
    return [f"{name}{suffix}" for suffix in ("", "_cot")[: 1 + with_reasoning] for name in TRAINING_COLUMNS] + (
        list(PREFERENCE_FORMATS) if preference else [])


def _write_bucket(store: Path, bucket: int, rows: pd.DataFrame, options, formats: list[str],
                  candidates: pd.DataFrame | None = None, counts: dict | None = None) -> list[Shard]:
    """A bucket's rows in every format and split, as shards in the store."""
    frames = build_format_rows(rows, options, with_reasoning=any(f.endswith("_cot") for f in formats))
    if any(fmt in PREFERENCE_FORMATS for fmt in formats):
        found, tally = preference_frames(
            rows, candidates if candidates is not None else pd.DataFrame(columns=CANDIDATE_COLUMNS),
            include_provenance=options.include_provenance, system_prompt=options.system_prompt,
            provenance_columns=PROVENANCE_COLUMNS)
        frames.update(found)
        if counts is not None:
            counts[bucket] = tally
    return write_bucket(store, bucket, {fmt: frames[fmt] for fmt in formats})

