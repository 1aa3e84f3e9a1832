"""Export: training formats per document, and the merged dataset fine-tuners load."""


import base64
import json
from pathlib import Path

import pandas as pd

import dagster as dg

from synth_assets.assets.factory import OWNERS, document_asset
from synth_assets.assets.human import NO_HUMAN_DATA, human_examples, mix_human_rows
from synth_assets.batch import blocked_documents, for_each_document, no_text_documents
from synth_assets.candidates import candidate_to_publish
from synth_assets.core.coverage import coverage_by_document, coverage_markdown, coverage_stats
from synth_assets.core.dedup import cross_document_duplicates
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
    TASK_CHART_FILE,
    glance_charts,
    PROVENANCE_COLUMNS,
    build_format_rows,
    pairs_digest,
    pairs_digests,
    publish,
    published_version,
    write_export,
)
from synth_assets.core.formats import split_documents, split_note, to_alpaca, to_conversation
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
    DOCUMENT_CHUNKS_TABLE,
    FILTERED_QA_PAIRS_TABLE,
    RAW_DOCUMENTS_TABLE,
    REJECTED_QA_PAIRS_TABLE,
    REVIEWED_QA_PAIRS_TABLE,
    SHAREGPT_EXAMPLES_TABLE,
    load_kept_pairs_of_documents,
    in_transaction,
    load_kept_pairs_with_provenance,
    replace_partition_rows,
)

EXPORT_GROUP = "export"


def source_digest(con, document_id: str, pairs: pd.DataFrame | None = None) -> str:
    """What a document's formatted rows are made from: its kept pairs and its file's hash.
    training_dataset refuses rows whose source changed since: new pairs that a blocking
    check stopped, or a changed file whose new version failed before reaching them."""
    if pairs is None:
        pairs = load_kept_pairs_with_provenance(con, document_id)
    sha = con.execute(f"SELECT sha256 FROM {RAW_DOCUMENTS_TABLE} WHERE document_id = ?", [document_id]).fetchall()
    return _source_digest(pairs_digest(pairs), sha[0][0] if sha else None)


def source_digests(con, document_ids: list[str]) -> dict[str, str]:
    """source_digest of many documents, in two queries (not two per document)."""
    digests = pairs_digests(load_kept_pairs_of_documents(con, document_ids), document_ids)
    sha = dict(con.execute(f"SELECT document_id, sha256 FROM {RAW_DOCUMENTS_TABLE} "
                           "WHERE document_id IN (SELECT unnest(?))", [document_ids]).fetchall())
    return {document_id: _source_digest(digests[document_id], sha.get(document_id)) for document_id in document_ids}


def _source_digest(of_pairs: str, sha256: str | None) -> str:
    return f"{of_pairs}/{sha256[:16] if sha256 is not None else 'no file'}"


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
        rows["source_digest"] = source_digest(con, document_id, pairs)
    with duckdb.get_connection() as con:
        replace_partition_rows(con, table, document_id, rows)
    preview = rows.head(3).drop(columns=[c for c in [*columns, "source_digest"] if c != "source_file"])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "preview": dg.MetadataValue.md(preview.to_markdown(index=False) if len(rows) else "no rows"),
        }
    )


# code_version 2 (both formats): the rows carry the pair's language.
@document_asset(group_name=EXPORT_GROUP, kinds={"duckdb", "great_expectations"}, code_version="3",
                deps=["filtered_qa_pairs"])
def alpaca_examples(context: dg.AssetExecutionContext, duckdb: PipelineDatabase) -> dg.MaterializeResult:
    """Kept pairs as Alpaca rows ({instruction, input, output}) with their provenance beside them."""
    return _format_partition(context, duckdb, ALPACA_EXAMPLES_TABLE, lambda p: to_alpaca(p.question, p.answer),
                             extra=("reasoning", "turns"))


@document_asset(group_name=EXPORT_GROUP, kinds={"duckdb", "great_expectations"}, code_version="3",
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
    context: dg.AssetExecutionContext, duckdb: PipelineDatabase, export: ExportSettings, curation: CurationResource,
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
    with duckdb.get_connection() as con:
        # One transaction, one snapshot: a document re-formatted between two reads would
        # otherwise look made from different pairs (and be left out), or worse, half new.
        read: dict[str, pd.DataFrame] = {}
        in_transaction(con, lambda: read.update(
            alpaca=con.execute(f"SELECT * FROM {ALPACA_EXAMPLES_TABLE} ORDER BY pair_id").df(),
            sharegpt=con.execute(f"SELECT * FROM {SHAREGPT_EXAMPLES_TABLE} ORDER BY pair_id").df()))
        alpaca, sharegpt = read["alpaca"], read["sharegpt"]
        documents = sorted(set(alpaca["document_id"]) | set(sharegpt["document_id"]) | set(blocked))
        sources = source_digests(con, documents)
        excluded, kept_last_good = _excluded_documents(documents, registered, blocked, sources, alpaca, sharegpt,
                                                       export.blocked_documents)
        formatted = set(alpaca["document_id"])
        included = [d for d in documents if d not in excluded and d in formatted]
        # The rows read are the formatted rows that passed their checks, not the current
        # filtered pairs: what was vetted is what is exported.
        pairs = alpaca[alpaca["document_id"].isin(included)].rename(
            columns={"instruction": "question", "output": "answer"})[["question", "answer", "reasoning", "turns",
                                                                       *PROVENANCE_COLUMNS]].reset_index(drop=True)
        stats = _curation_stats(con, included)
        # Coverage is over every registered document not left out: one that kept nothing
        # counts too (uncovered), which is what the figure is for.
        chunks = con.execute(
            f"SELECT document_id, chunk_id, chunk_index, heading_path, boilerplate FROM {DOCUMENT_CHUNKS_TABLE}"
            " WHERE document_id IN (SELECT unnest(?))", [sorted(registered - set(excluded))]).df()
        # Every reviewed pair measures the rules; the verdicts on included pairs are applied.
        reviewed = con.execute(f"SELECT * FROM {REVIEWED_QA_PAIRS_TABLE} ORDER BY pair_id").df()
        pairs, applied = apply_reviews(pairs, reviewed)
        stats["review"] = review_summary(reviewed, applied, curation.filter_config().min_judge_score)
        # A question another document already asks (exactly or nearly) is left out of
        # the dataset, kept in its own table with the pair it repeats.
        duplicates = cross_document_duplicates(pairs.to_dict("records"))
        duplicate_rows = pd.DataFrame(
            [{"pair_id": pid, "reason": reason, "duplicate_of": kept} for pid, (reason, kept) in duplicates.items()],
            columns=["pair_id", "reason", "duplicate_of"],
        ).merge(pairs[["pair_id", "document_id", "question"]], on="pair_id")
        # Then rows copying or rewording a question of an eval set (none configured: none).
        contaminated = contaminated_in(pairs[~pairs["pair_id"].isin(duplicates)], eval_indexes)


        def rewrite_duplicates() -> None:  # in one transaction: never seen emptied
            con.execute(f"DELETE FROM {CROSS_DOCUMENT_DUPLICATES_TABLE}")
            if len(duplicate_rows):
                con.register("duplicate_rows", duplicate_rows)
                con.execute(
                    f"INSERT INTO {CROSS_DOCUMENT_DUPLICATES_TABLE} (pair_id, document_id, question, reason, "
                    "duplicate_of) SELECT pair_id, document_id, question, reason, duplicate_of FROM duplicate_rows"
                )
            con.execute(f"DELETE FROM {CONTAMINATED_ROWS_TABLE}")
            _insert_contaminated(con, contaminated)
        in_transaction(con, rewrite_duplicates)
    pairs = pairs[~pairs["pair_id"].isin(duplicates)].reset_index(drop=True)
    checked = len(pairs)
    pairs = pairs[~pairs["pair_id"].isin(contaminated["pair_id"])].reset_index(drop=True)
    for document_id, reason in excluded.items():
        context.log.warning(f"{document_id} left out of the training dataset: {reason}")
    live = published_version(Path(export.export_dir))
    verdicts = stats["review"]  # not `review`: that is the ReviewSettings resource
    listed = {
        "pairs_reviewed": verdicts["reviewed"],
        "review_verdicts": dg.MetadataValue.json(
            {"accepted": verdicts["accepted"], "edited": verdicts["edited"], "rejected": verdicts["rejected"],
             "applied_to_this_dataset": verdicts["applied"]}),
        "precision_recall_per_rule": dg.MetadataValue.md(precision_recall_markdown(verdicts["precision_recall"])),
        "excluded_documents": dg.MetadataValue.json(excluded),
        "kept_last_good_rows": dg.MetadataValue.json(kept_last_good),
        "no_text_documents": dg.MetadataValue.json(no_text),
        "published_version": live or "none yet",
    }
    # Over the rows this dataset holds (after review, dedup; human rows come from no chunk).
    stats["coverage"] = coverage_stats(coverage_by_document(chunks, pairs))
    listed.update({
        "chunk_coverage": stats["coverage"]["chunk_coverage"] or 0.0,
        "heading_coverage": stats["coverage"]["heading_coverage"] or 0.0,
        "uncovered_chunks": stats["coverage"]["uncovered_chunks"],
        "coverage_per_document": dg.MetadataValue.md(coverage_markdown(stats["coverage"])),
    })
    if pairs.empty:
        # Nothing to learn from: a status, not a crash. No candidate; the published one stays.
        message = (f"no document has vetted rows to export ({len(excluded)} left out, {len(no_text)} with no text); "
                   f"the published dataset stays {live or 'unpublished'}")
        context.log.warning(message)
        return dg.MaterializeResult(metadata={"dagster/row_count": 0, "version": "none", "status": message,
                                              **listed})

    splits = split_documents(list(pairs["document_id"]), export.validation_ratio, export.seed)
    pairs["split"] = pairs["document_id"].map(splits)
    note = split_note(list(pairs["document_id"]), splits, export.validation_ratio)
    human, stats["human_mix"] = mix_human_rows(context, duckdb, review, pairs, export.seed)
    if eval_indexes and len(human):  # human rows may copy a benchmark too
        dirty = contaminated_in(human, eval_indexes)
        if len(dirty):
            human = human[~human["pair_id"].isin(dirty["pair_id"])].reset_index(drop=True)
            with duckdb.get_connection() as con:
                _insert_contaminated(con, dirty)
            contaminated = pd.concat([contaminated, dirty], ignore_index=True)
        checked += len(human) + len(dirty)
    stats["decontamination"] = contamination_summary(eval_indexes, contaminated, checked) if eval_indexes else None
    pairs = pd.concat([pairs, human], ignore_index=True) if len(human) else pairs
    options = export.options()
    frames = build_format_rows(pairs, options)
    mix = dataset_mix(pairs, generation.task_shares, stats.get("task_rejections", {}))
    glance = glance_charts(stats)
    result = write_export(frames, Path(export.export_dir), options,
                          {**stats, "excluded_documents": excluded, "no_text_documents": no_text,
                           "split_note": note, "task_mix": mix["markdown"],
                           "glance": {name: chart["markdown"] for name, chart in glance.items()},
                           "files": {TASK_CHART_FILE: mix["png"], **{name: chart["png"] for name, chart in glance.items()}}})
    context.log.info(
        f"candidate export {result.version} {'written' if result.created else 'already existed, unchanged'}: "
        f"{result.path} (published once its checks pass)"
    )
    validation_rows = int((pairs["split"] == "validation").sum())
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(pairs),
            "version": result.version,
            "export_dir": str(result.path.resolve()),
            "new_version_written": result.created,
            "documents": len(splits),
            "train_documents": sum(1 for s in splits.values() if s == "train"),
            "validation_documents": sum(1 for s in splits.values() if s == "validation"),
            "validation_share_of_rows": round(validation_rows / len(pairs), 3),
            "split_note": note or "near the asked ratio",
            "human_rows": len(human),
            "human_mix": dg.MetadataValue.json(stats["human_mix"] or {"status": NO_HUMAN_DATA}),
            "rows_per_format_and_split": dg.MetadataValue.json(result.rows),
            **listed,
            "cross_document_duplicates_removed": len(duplicates),
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
                duplicate_rows.head(5)[["question", "reason", "duplicate_of"]].to_markdown(index=False)
                if len(duplicate_rows) else "none"
            ),
            "pass_rate": round(stats["pass_rate"], 3),
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
                frames["alpaca"].head(5)[["instruction", "output", "split"]].to_markdown(index=False)
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
                        policy: str) -> tuple[dict[str, str], dict[str, str]]:
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
    digests: dict[str, set] = {}
    for frame in (alpaca, sharegpt):
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


def dataset_mix(pairs: pd.DataFrame, shares: dict[str, float], rejections: dict[str, dict[str, int]]) -> dict:
    """The realised mix of the dataset's rows against the configured shares: Markdown, the
    chart (PNG bytes) and whether every task is within SHARE_TOLERANCE. A task off its
    share is explained by its rejections and by the documents that gave none of it."""
    rows = pairs.assign(task=pairs["task"].fillna("qa")).to_dict("records")
    tasks = [r["task"] for r in rows]
    documents = {r["document_id"] for r in rows}
    why = {}
    for task in shares:
        with_task = {r["document_id"] for r in rows if r["task"] == task}
        rejected = rejections.get(task, {})
        top = ", ".join(f"{reason} {n}" for reason, n in sorted(rejected.items(), key=lambda i: -i[1])[:3])
        why[task] = (f"{len(documents - with_task)} of {len(documents)} documents gave none (too short, or no "
                     f"linked sentences)" + (f"; rejected: {top}" if top else ""))
    within, share_rows = share_report(tasks, shares, why)
    table = mix_table(rows)
    return {"within": within, "markdown": mix_markdown(table, shares, share_rows),
            "png": stacked_bars_png("Items per task, by difficulty", mix_bars(table), "task")}


def _curation_stats(con, document_ids: list[str]) -> dict:
    """Generators, models, prompt versions and filter pass rates, for the dataset card."""
    kept = con.execute(
        f"SELECT generator, model, prompt_version, language, grounding, judge_score FROM {FILTERED_QA_PAIRS_TABLE}"
        " WHERE document_id IN (SELECT unnest(?))",
        [document_ids],
    ).df()
    rejected = con.execute(
        f"SELECT reject_reasons, coalesce(task, 'qa') AS task FROM {REJECTED_QA_PAIRS_TABLE}"
        " WHERE document_id IN (SELECT unnest(?))",
        [document_ids],
    ).df()
    reasons: dict[str, int] = {}
    per_task: dict[str, dict[str, int]] = {}
    for row, task in zip(rejected["reject_reasons"], rejected["task"]):
        for reason in row:
            reasons[reason] = reasons.get(reason, 0) + 1
            per_task.setdefault(task, {})[reason] = per_task.setdefault(task, {}).get(reason, 0) + 1
    generated = len(kept) + len(rejected)
    return {
        "documents": len(document_ids),
        "generators": sorted(kept["generator"].dropna().unique()),
        "models": sorted(kept["model"].dropna().unique()),
        "prompt_versions": sorted(kept["prompt_version"].dropna().unique()),
        "generated": generated,
        "kept": len(kept),
        "pass_rate": len(kept) / generated if generated else 0.0,
        "rejections_by_reason": reasons,
        "task_rejections": per_task,
        # For the charts: the kept pairs' grounding and judge scores (NULL unless the judge is on).
        "grounding": [float(g) for g in kept["grounding"].dropna()],
        "judge_scores": [int(s) for s in kept["judge_score"].dropna()],
        "languages": kept["language"].fillna("undetermined").value_counts().to_dict(),
    }
