"""Human-labelled examples: the folder SYNTH_ASSETS_HUMAN_DATA_DIR names, read into a table
that training_dataset mixes in."""

from pathlib import Path

import pandas as pd

import dagster as dg

from synth_assets.assets.factory import OWNERS
from synth_assets.core.human_data import HUMAN, HumanData, HumanRow, duplicate_rows, pick_mix, read_human_folder
from synth_assets.resources.review import ReviewSettings
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.storage import HUMAN_EXAMPLES_TABLE, ensure_tables, in_transaction, table_columns

# Where the folder read is recorded in the metadata; training_dataset compares it with
# the configured folder, so it never mixes in rows of another folder, or none by mistake.
FOLDER_METADATA = "folder"
NO_HUMAN_DATA = "no human data configured (SYNTH_ASSETS_HUMAN_DATA_DIR is not set)"


def configured_folder(review: ReviewSettings) -> str | None:
    """The human data folder as an absolute path, or None when none is configured."""
    return str(Path(review.human_data_dir).expanduser().resolve()) if review.human_data_dir else None


def problems_table(data: HumanData) -> str:
    if not data.problems:
        return "none"
    lines = [f"| {p.source_file} | {p.line if p.line is not None else 'whole file'} | {p.reason} |"
             for p in data.problems]
    return "| file | line | reason |\n| --- | --- | --- |\n" + "\n".join(lines)


@dg.asset(group_name="export", kinds={"duckdb"}, owners=OWNERS, code_version="1")
def human_examples(context: dg.AssetExecutionContext, duckdb: PipelineDatabase,
                   review: ReviewSettings) -> dg.MaterializeResult:
    """Examples written by people (Alpaca, ShareGPT or messages files in
    SYNTH_ASSETS_HUMAN_DATA_DIR), checked row by row and with repeated questions dropped;
    training_dataset mixes them into its train split at SYNTH_ASSETS_HUMAN_RATIO. A row
    that is not one question and its answer is listed with its file, line and reason,
    and the rest are used. With no folder set there are none."""
    folder = configured_folder(review)
    if folder is not None and not Path(folder).is_dir():
        raise dg.Failure(f"{folder}: SYNTH_ASSETS_HUMAN_DATA_DIR names no folder")
    data = read_human_folder(Path(folder)) if folder else HumanData()
    rows = pd.DataFrame(
        [{"pair_id": r.pair_id, "document_id": r.document_id, "chunk_id": f"{r.source_file}:{r.line}",
          "source_file": r.source_file, "line": r.line, "form": r.form, "question": r.question,
          "answer": r.answer, "system": r.system} for r in data.rows],
        columns=table_columns(HUMAN_EXAMPLES_TABLE),
    )
    with duckdb.get_connection() as con:
        ensure_tables(con)

        def replace() -> None:
            con.execute(f"DELETE FROM {HUMAN_EXAMPLES_TABLE}")
            if len(rows):
                con.register("human_rows", rows)
                con.execute(f"INSERT INTO {HUMAN_EXAMPLES_TABLE} SELECT * FROM human_rows")
                con.unregister("human_rows")

        in_transaction(con, replace)
    for problem in data.problems:
        where = f"line {problem.line}" if problem.line is not None else "whole file"
        context.log.warning(f"human data {problem.source_file} ({where}) not used: {problem.reason}")
    return dg.MaterializeResult(metadata={
        FOLDER_METADATA: folder or "none",
        "status": NO_HUMAN_DATA if folder is None else f"{len(rows)} human rows ready to mix in",
        "dagster/row_count": len(rows),
        "files": dg.MetadataValue.json(data.files),
        "skipped_files": dg.MetadataValue.json(data.skipped_files),
        "rows_read": data.rows_read,
        "rows_used": len(rows),
        "malformed_rows": len([p for p in data.problems if p.line is not None]),
        "files_not_read": len([p for p in data.problems if p.line is None]),
        "problems": dg.MetadataValue.md(problems_table(data)),
        "duplicates_dropped": len(data.duplicates),
        "duplicates": dg.MetadataValue.md(
            "| file | line | reason | repeats |\n| --- | --- | --- | --- |\n" + "\n".join(
                f"| {row.source_file} | {row.line} | {reason} | {kept} |" for row, reason, kept in data.duplicates)
            if data.duplicates else "none"),
        "preview": dg.MetadataValue.md(
            rows.head(5)[["source_file", "line", "form", "question"]].to_markdown(index=False) if len(rows)
            else "no rows"),
    })


def mix_human_rows(context: dg.AssetExecutionContext, duckdb: PipelineDatabase, review: ReviewSettings,
                   pairs: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, dict | None]:
    """The human rows training_dataset adds to its train split (in its pairs' columns,
    generator `human`), and the mix for its card and metadata (None when no folder is
    configured). Rows repeating any synthetic question of the dataset (either split, so
    none leaks a validation question into train) are left out; of the rest, a seeded
    pick of SYNTH_ASSETS_HUMAN_RATIO human rows per synthetic train row."""
    folder = configured_folder(review)
    if folder is None:
        return pairs.iloc[0:0], None
    event = context.instance.get_latest_materialization_event(human_examples.key)
    read_from = event.asset_materialization.metadata.get(FOLDER_METADATA) if event else None
    if read_from is None or read_from.value != folder:
        raise dg.Failure(
            f"human_examples was {'last read from ' + read_from.value if read_from else 'never materialised'}, "
            f"not from {folder} (SYNTH_ASSETS_HUMAN_DATA_DIR): materialise human_examples with the dataset "
            "(the build_training_dataset job and make run do)")
    with duckdb.get_connection() as con:
        ensure_tables(con)
        stored = con.execute(f"SELECT * FROM {HUMAN_EXAMPLES_TABLE} ORDER BY source_file, line").df()
    rows = [HumanRow(r.source_file, int(r.line), r.form, r.question, r.answer, r.system if isinstance(r.system, str)
                     else None) for r in stored.itertuples()]
    repeats = duplicate_rows(rows, list(zip(pairs["pair_id"], pairs["question"])))
    available = [row for i, row in enumerate(rows) if i not in repeats]
    synthetic_train = int((pairs["split"] == "train").sum())
    mix = pick_mix(len(available), synthetic_train, review.human_ratio, seed)
    picked = [available[i] for i in mix.picked]
    human = pd.DataFrame(
        [{"question": r.question, "answer": r.answer, "reasoning": None, "system": r.system, "split": "train",
          "pair_id": r.pair_id, "document_id": r.document_id, "chunk_id": f"{r.source_file}:{r.line}",
          "source_file": r.source_file, "generator": HUMAN} for r in picked],
        columns=[*pairs.columns, "system"])
    summary = {
        "folder": folder, "synthetic_train_rows": synthetic_train, "human_rows_read": len(rows),
        "repeating_synthetic_questions": len(repeats), "human_rows_mixed": len(picked),
        "ratio_asked": mix.ratio_asked, "ratio_got": mix.ratio_got, "note": mix.note,
    }
    context.log.info(f"human rows: {len(picked)} mixed into train beside {synthetic_train} synthetic rows ({mix.note})")
    return human, summary
