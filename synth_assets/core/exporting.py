"""Writing a training dataset that fine-tuning tools load as it is.

One export is a folder `<export_dir>/<version>/` whose version is derived from its
content (same rows and settings, same version), so a new export never overwrites an
older one and a repeated run writes nothing new. Its rows are shards (core/shards.py:
one Parquet and one JSON Lines file per format, split and bucket of documents, hard
links to `<export_dir>/shards/`), so a version that changes one document writes one
bucket's files and links the rest. Inside:

    <format>/<split>/*.parquet       the rows: datasets.load_dataset(<version folder>, "<format>")
    <format>/jsonl/<split>/*.jsonl   the same rows as JSON Lines
    manifest.json                    every shard with its rows, the index generation
    README.md                        dataset card with the YAML front matter the Hub reads
    dataset_info.json                LLaMA-Factory's dataset registry for these files

Writing a version does not publish it: `publish` moves `LATEST` (the version fine-tuners
and the Hub get) once the dataset's checks have passed on the written folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from synth_assets.core.coverage import coverage_section
from synth_assets.core.formats import to_alpaca, to_conversation
from synth_assets.core.preference import llama_factory_ranking_entry, preference_section
from synth_assets.core.review import precision_recall_markdown
from synth_assets.core.usage import usage_section
from synth_assets.core.shards import MANIFEST_FILE, SHARD_STORE, Shard, bucket_of, link_version, manifest, write_shard

PROVENANCE_COLUMNS = [
    "pair_id", "document_id", "chunk_id", "source_file", "heading_path",
    "page_start", "page_end", "generator", "model", "prompt_version",
    # The pair's language (ISO 639-1, empty when undetermined; core/language.py), so a
    # fine-tuner can select or balance languages.
    "language",
    # What kind of item the row is (core/tasks.py), its question type and difficulty (1-5),
    # and every chunk it draws on (a list; multi_hop has two or three).
    "task", "question_type", "difficulty", "source_chunk_ids",
    # The passages the row rests on: [{chunk_id, start, end, score}], character offsets into
    # the stored chunk text (score: 100 verbatim, lower for a fuzzy match; core/evidence.py).
    "evidence",
]
TRAINING_COLUMNS = {
    "alpaca": ["instruction", "input", "output"],
    "sharegpt": ["conversations"],
    "messages": ["messages"],
}
SPLITS = ("train", "validation")
LATEST_FILE = "LATEST"


@dataclass
class ExportOptions:
    validation_ratio: float = 0.1
    seed: int = 42
    include_provenance: bool = True
    system_prompt: str | None = None
    license: str = "other"
    dataset_name: str = "synth_assets"


@dataclass
class ExportResult:
    version: str
    path: Path
    created: bool  # False when this exact export already existed
    rows: dict[str, dict[str, int]] = field(default_factory=dict)  # format -> split -> rows


def build_format_rows(pairs: pd.DataFrame, options: ExportOptions,
                      with_reasoning: bool | None = None) -> dict[str, pd.DataFrame]:
    """Kept pairs (question, answer, reasoning?, split, provenance) as one frame per format.

    Formats with a chain-of-thought variant (`<format>_cot`) are added when any pair
    carries reasoning (or `with_reasoning`: any row of the whole dataset, when these are
    one shard's); the plain variants never contain it.
    """
    has_reasoning = with_reasoning if with_reasoning is not None else (
        "reasoning" in pairs and pairs["reasoning"].fillna("").str.strip().ne("").any())
    variants = [(False, "")] + ([(True, "_cot")] if has_reasoning else [])
    keep = ["split"] + (PROVENANCE_COLUMNS if options.include_provenance else [])
    provenance = pairs.reindex(columns=keep).reset_index(drop=True)
    if "source_chunk_ids" in provenance:  # stored as JSON text, exported as a list
        provenance["source_chunk_ids"] = [json.loads(ids) if isinstance(ids, str) else [chunk] for ids, chunk in
                                          zip(provenance["source_chunk_ids"], pairs["chunk_id"])]
    if "evidence" in provenance:
        provenance["evidence"] = [json.loads(spans) if isinstance(spans, str) else []
                                  for spans in provenance["evidence"]]
    if "difficulty" in provenance:
        provenance["difficulty"] = provenance["difficulty"].astype("Int64")
    frames: dict[str, pd.DataFrame] = {}
    for use_reasoning, suffix in variants:
        records = {"alpaca": [], "sharegpt": [], "messages": []}
        # Only the columns read here: a record of every provenance column costs seconds
        # over tens of thousands of rows.
        absent = [None] * len(pairs)
        reasonings = pairs["reasoning"] if "reasoning" in pairs else absent
        systems = pairs["system"] if "system" in pairs else absent
        all_turns = pairs["turns"] if "turns" in pairs else absent
        for q, a, reasoning, own_system, turns in zip(pairs["question"], pairs["answer"], reasonings, systems,
                                                      all_turns):
            # A human-labelled row may bring its own system turn; the others get the configured one.
            system = own_system if isinstance(own_system, str) else options.system_prompt
            reasoning = reasoning if isinstance(reasoning, str) else None
            # A conversation keeps every turn in sharegpt and messages; alpaca holds its first turn.
            conversation = json.loads(turns) if isinstance(turns, str) and turns else [(q, a)]
            think = reasoning if use_reasoning else None
            records["alpaca"].append(to_alpaca(q, a, reasoning=think))
            records["sharegpt"].append({"conversations": to_conversation(conversation, system, think, chat=False)})
            # The plain chat rows carry reasoning in reasoning_content; the _cot ones in <think>.
            records["messages"].append({"messages": to_conversation(
                conversation, system, reasoning, chat=True, reasoning_field=not use_reasoning)})
        for name, rows in records.items():
            training = pd.DataFrame(rows, columns=TRAINING_COLUMNS[name])
            frames[name + suffix] = pd.concat([training, provenance], axis=1)
    return frames


def size_category(n_rows: int) -> str:
    """The Hub's size_categories value for `n_rows`."""
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M")):
        if n_rows < limit:
            return label
    return "n>1M"


def languages_table(languages: dict[str, int]) -> tuple[list[str], str]:
    """The card's languages: the ISO 639-1 codes for the front matter (those the Hub
    knows; "en" when none was recorded), and a Markdown table of kept pairs per language
    (as curation detected them)."""
    codes = sorted(code for code in languages if code != "undetermined") or ["en"]
    rows = "\n".join(f"| {code} | {n} |" for code, n in sorted(languages.items(), key=lambda item: -item[1]))
    return codes, "| language | kept pairs |\n| --- | --- |\n" + (rows or "| none recorded | 0 |")


def dataset_card(version: str, rows: dict[str, dict[str, int]], options: ExportOptions, stats: dict) -> str:
    """README.md with the YAML front matter the Hub reads (configs, license, size)."""
    total = sum(rows["alpaca"].values())
    configs = []
    for i, name in enumerate(sorted(rows, key=lambda n: (n != "messages", n))):
        configs.append(f"- config_name: {name}")
        if i == 0:
            configs.append("  default: true")
        configs.append("  data_files:")
        # A split with no rows is not listed: `datasets` cannot load a split of no rows.
        for split in (split for split in SPLITS if rows[name][split]):
            configs.append(f"  - split: {split}\n    path: {name}/{split}/*.parquet")
    language_codes, language_lines = languages_table(stats.get("languages") or {})
    reasons = stats.get("rejections_by_reason", {})
    reason_lines = "\n".join(f"| {reason} | {count} |" for reason, count in sorted(reasons.items())) or "| none | 0 |"
    excluded = stats.get("excluded_documents") or {}
    # A document with no text to learn from is listed as such, not as failing.
    no_text = stats.get("no_text_documents") or {}
    excluded_lines = "\n".join(
        [f"- `{document}`: {reason}" for document, reason in sorted(excluded.items())]
        + [f"- `{document}`: no text: {reason}" for document, reason in sorted(no_text.items())]) or "none"
    counts = "\n".join(
        f"| {name} | {split_rows['train']} | {split_rows['validation']} |" for name, split_rows in sorted(rows.items())
    )
    return f"""---
license: {options.license}
language:
{chr(10).join(f"- {code}" for code in language_codes)}
size_categories:
- {size_category(total)}
task_categories:
- question-answering
- text-generation
tags:
- synthetic
- instruction-tuning
configs:
{chr(10).join(configs)}
---

# {options.dataset_name} (version {version})

Grounded question-answer pairs written from {stats.get('documents', 0)} source documents
by synth_assets. Generators: {', '.join(stats.get('generators', [])) or 'none'}; models:
{', '.join(stats.get('models', [])) or 'none'}; prompt versions:
{', '.join(stats.get('prompt_versions', [])) or 'none'}.

The train/validation split is made by document (seed {options.seed}, validation ratio
{options.validation_ratio}, taken as a share of rows): no document is in both splits.
{stats.get("split_note", "")}
{_generation_line(stats)}
## Documents left out

{excluded_lines}

## Languages

{language_lines}

## Rows

| format | train | validation |
| --- | --- | --- |
{counts}

Formats: `alpaca` ({{instruction, input, output}}), `sharegpt`
({{conversations: [{{from, value}}]}}) and `messages` ({{messages: [{{role, content}}]}},
TRL's conversational format). `*_cot` variants, when present, put the reasoning in
`<think>` tags before the answer. Provenance columns ({', '.join(PROVENANCE_COLUMNS) if options.include_provenance else 'removed from this export'})
trace every row to its chunk, heading or page, and file.

{tasks_section(stats)}{glance_section(stats.get("glance"))}{coverage_section(stats.get("coverage"))}## Filters

{stats.get('generated', 0)} pairs generated, {stats.get('kept', 0)} kept
(pass rate {stats.get('pass_rate', 0):.1%}); rejected pairs by reason (a pair can have several):

| reason | pairs |
| --- | --- |
{reason_lines}
{usage_section(stats.get("model_usage"))}{preference_section(stats.get("preference"), options.dataset_name)}{review_section(stats.get("review"))}{human_mix_section(stats.get("human_mix"))}{decontamination_section(stats.get("decontamination"))}"""


def _generation_line(stats: dict) -> str:
    if "index_generation" not in stats:
        return ""
    return (f"Cross-document repeats were decided against dedup index generation {stats['index_generation']} "
            "(its word weights frozen when it began; `manifest.json` lists the shards).\n")


TASK_CHART_FILE = "tasks.png"
# The dataset at a glance: chart file -> its title in the card.
GLANCE_CHARTS = {"judge_scores.png": "Judge scores of the kept items", "grounding.png": "Grounding of the kept items",
                 "rejections.png": "Kept items and rejections per reason", "coverage.png": "Chunk coverage per document"}


# The grounding chart's bins, [low, high) and the last one [0.9, 1.0]: (label, low, high).
GROUNDING_EDGES = [round(0.1 * b, 1) for b in range(0, 11)]
GROUNDING_BINS = [(f"{low:.1f}-{high:.1f}", low, high) for low, high in zip(GROUNDING_EDGES, GROUNDING_EDGES[1:])]


def glance_charts(stats: dict) -> dict[str, dict]:
    """The card's charts beside their Markdown tables, from training_dataset's stats: judge
    scores and grounding of the kept items (items per score and per GROUNDING_BINS bin,
    counted in SQL), kept and rejected per reason, and coverage per document (least
    covered 25). A chart with nothing to show is left out (no judge scores when the judge
    is off)."""
    from synth_assets.core.charts import barh_png, histogram_png

    charts: dict[str, dict] = {}
    scores = stats.get("judge_score_counts") or {}
    if scores:
        counts = {score: scores.get(score, 0) for score in range(1, 11)}
        charts["judge_scores.png"] = {
            "png": histogram_png(GLANCE_CHARTS["judge_scores.png"], list(scores), [b + 0.5 for b in range(0, 11)],
                                 "judge score (1-10)", weights=list(scores.values())),
            "markdown": "| judge score | items |\n| --- | --- |\n" + "\n".join(f"| {s} | {n} |" for s, n in counts.items())}
    grounding = stats.get("grounding_counts") or {}
    if grounding:
        counts = {label: grounding.get(label, 0) for label, _, _ in GROUNDING_BINS}
        charts["grounding.png"] = {
            "png": histogram_png(GLANCE_CHARTS["grounding.png"], [(low + high) / 2 for _, low, high in GROUNDING_BINS],
                                 GROUNDING_EDGES, "grounding (share of the answer's content words in its chunk)",
                                 weights=list(counts.values())),
            "markdown": "| grounding | items |\n| --- | --- |\n" + "\n".join(f"| {b} | {n} |" for b, n in counts.items())}
    outcome = {"kept": stats.get("kept", 0), **(stats.get("rejections_by_reason") or {})}
    if any(outcome.values()):
        charts["rejections.png"] = {
            "png": barh_png(GLANCE_CHARTS["rejections.png"], outcome, "items (a rejected item can have several reasons)"),
            "markdown": "| outcome | items |\n| --- | --- |\n" + "\n".join(
                f"| {k} | {v} |" for k, v in sorted(outcome.items(), key=lambda item: -item[1]))}
    documents = (stats.get("coverage") or {}).get("documents") or {}
    shares = {d: c["chunk_coverage"] for d, c in documents.items() if c.get("chunk_coverage") is not None}
    if shares:
        least = dict(sorted(shares.items(), key=lambda item: item[1])[:25])
        charts["coverage.png"] = {
            "png": barh_png(GLANCE_CHARTS["coverage.png"], least, "share of the document's chunks with a kept item"),
            "markdown": "| document | chunk coverage |\n| --- | --- |\n" + "\n".join(
                f"| `{d}` | {share:.0%} |" for d, share in least.items())}
    return charts


def glance_section(glance: dict | None) -> str:
    """The card's charts (PNG files beside it; the Hub renders them) with their tables."""
    if not glance:
        return ""
    parts = [f"### {GLANCE_CHARTS[name]}\n\n![{GLANCE_CHARTS[name]}]({name})\n\n{table}\n"
             for name, table in glance.items()]
    return "## The dataset at a glance\n\n" + "\n".join(parts) + "\n"


def tasks_section(stats: dict) -> str:
    """The card's account of the dataset's shape: shares per task, the task x question
    type x difficulty table and its chart (written beside the card as TASK_CHART_FILE)."""
    if not stats.get("task_mix"):
        return ""
    return f"""## Tasks

Each row is one item of a task: `qa` (one question, one answer), `reasoning` (steps in
`reasoning`, final answer), `multi_hop` (needs two or three chunks, `source_chunk_ids`),
`conversation` (three to six turns), `unanswerable` (the documents do not say; the answer
says so and what they do say). Conversations keep every turn in `sharegpt` and `messages`;
`alpaca` holds each conversation's first turn only. Reasoning is in the assistant
message's `reasoning_content` in `messages`, and in `<think>` tags in the `*_cot` variants.

![Items per task and difficulty]({TASK_CHART_FILE})

{stats["task_mix"]}

"""


def decontamination_section(found: dict | None) -> str:
    """The card's account of the eval sets rows were checked against (nothing when none is
    configured): each set, the rows removed per set and method, and a few of them."""
    if not found:
        return ""
    sets = "\n".join(f"| `{s['eval_set']}` | {s['eval_rows']} | {s['sha256']} | {s['rows_removed']} |"
                     for s in found["eval_sets"])
    sample = "\n".join(f"| {_md_cell(r['question'])} | `{r['eval_set']}` | {_md_cell(r['matched_text'])} "
                       f"| {r['method']} | {r['score']} |" for r in found["sample"]) or "| none | | | | |"
    methods = ", ".join(f"{n} by {method}" for method, n in found["by_method"].items())
    return f"""
## Decontamination

{found['checked']} rows were compared with the evaluation sets below: a row sharing a
13-word run with an eval text (`ngram13`), or whose question asks an eval question in
other words (`minhash`: content-word similarity of at least {found['threshold']}), was removed.
{found['removed']} rows removed ({methods}).

| eval set | eval rows | sha256 | rows removed |
| --- | --- | --- | --- |
{sets}

| removed question | eval set | matched text | method | score |
| --- | --- | --- | --- | --- |
{sample}
"""


def _md_cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")[:120]


def human_mix_section(mix: dict | None) -> str:
    """The card's account of the human-labelled rows mixed in (nothing when none are configured)."""
    if not mix:
        return ""
    asked = "every valid row" if mix["ratio_asked"] is None else f"{mix['ratio_asked']} human rows per synthetic row"
    return f"""
## Human-labelled rows

| synthetic train rows | human rows | ratio asked | ratio got |
| --- | --- | --- | --- |
| {mix['synthetic_train_rows']} | {mix['human_rows_mixed']} | {asked} | {mix['ratio_got']} |

{mix['human_rows_read']} valid rows written by people were read; {mix['repeating_synthetic_questions']}
repeat a synthetic question and are left out; {mix['note']}. They are in the train split
only: the validation split measures the model on documents it did not see, and human rows
come from none. Their provenance is generator `human`, with the file in `source_file`
and `file:line` in `chunk_id`.
"""


def review_section(review: dict | None) -> str:
    """The card's account of the experts' review: how many pairs they reviewed, what
    they decided, and how far each filter rule agrees with them."""
    if not review:
        return ""
    applied = review["applied"]
    return f"""
## Expert review

{review['reviewed']} sampled pairs reviewed by domain experts: {review['accepted']} accepted,
{review['edited']} edited, {review['rejected']} rejected. In this dataset, {applied.get('edit', 0)}
edits replace the generated text and {applied.get('reject', 0)} rejected pairs are left out.

Precision and recall of each filter rule and of the judge on the reviewed pairs (the
expert rejecting a pair is "bad"; a rule "fires" on a pair it rejected). The sample puts
uncertain pairs first, so these describe the hard cases more than the rest:

{precision_recall_markdown(review['precision_recall'])}
"""


def llama_factory_dataset_info(formats: list[str], name: str) -> dict:
    """LLaMA-Factory's dataset_info.json entries for the Alpaca and ShareGPT rows (a
    folder of Parquet shards: LLaMA-Factory loads every file of a folder)."""
    info = {}
    for fmt in formats:
        base = fmt.removesuffix("_cot")
        key = f"{name}_{fmt}"
        if base == "alpaca":
            info[key] = {"file_name": f"{fmt}/train", "formatting": "alpaca",
                         "columns": {"prompt": "instruction", "query": "input", "response": "output"}}
        elif base == "sharegpt":
            info[key] = {"file_name": f"{fmt}/train", "formatting": "sharegpt",
                         "columns": {"messages": "conversations"},
                         "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human",
                                  "assistant_tag": "gpt", "system_tag": "system"}}
    return info


def write_bucket(store: Path, bucket: int, frames: dict[str, pd.DataFrame]) -> list[Shard]:
    """One bucket's rows of each format (frames with `split`) as shards in the store, a
    shard per format and split that has rows."""
    shards = []
    for fmt, frame in frames.items():
        for split in SPLITS:
            part = frame[frame["split"] == split].drop(columns=["split"])
            if len(part):
                shards.append(write_shard(store, fmt, split, bucket, part))
    return shards


def write_export(frames: dict[str, pd.DataFrame], export_dir: Path, options: ExportOptions, stats: dict
                 ) -> ExportResult:
    """Write these format frames (with `split`, and `document_id` unless provenance is
    left out: then all in bucket 0) as one version, in one go: each document's rows in
    its bucket's shards."""
    shards = []
    for fmt, frame in frames.items():
        of_row = pd.Series([bucket_of(d) for d in frame["document_id"]] if "document_id" in frame else 0,
                           index=frame.index)
        for bucket in sorted(set(of_row)):
            shards += write_bucket(export_dir / SHARD_STORE, int(bucket), {fmt: frame[of_row == bucket]})
    return write_version(export_dir, shards, options, stats, {"written_shards": sorted(s.path() for s in shards)})


def write_version(export_dir: Path, shards: list[Shard], options: ExportOptions, stats: dict,
                  manifest_extra: dict) -> ExportResult:
    """Write the version folder of these shards (already in the store) unless it exists:
    links to the shards, manifest, card, charts and LLaMA-Factory's registry. The version
    is a hash of the shards and the options."""
    digest = hashlib.sha256(json.dumps([options.__dict__, manifest_extra.get("generation"),
                                        sorted((s.format, s.split, s.bucket, s.digest) for s in shards)],
                                       sort_keys=True, default=str).encode())
    version = digest.hexdigest()[:12]
    target = export_dir / version
    listed = manifest(version, shards, manifest_extra)
    rows = listed["rows"]
    export_dir.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return ExportResult(version, target, created=False, rows=rows)
    # Written into a staging folder and renamed: a crash never leaves half an export.
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=export_dir))
    try:
        link_version(export_dir / SHARD_STORE, staging, shards)
        (staging / MANIFEST_FILE).write_text(json.dumps(listed, indent=1) + "\n")
        (staging / "README.md").write_text(dataset_card(version, rows, options, stats))
        for name, data in (stats.get("files") or {}).items():  # the card's charts
            (staging / name).write_bytes(data)
        info = llama_factory_dataset_info(sorted(rows), options.dataset_name)
        if "preference" in rows:
            info.update(llama_factory_ranking_entry(options.dataset_name, "preference/train",
                                                    with_system=bool(options.system_prompt)))
        (staging / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n")
        os.chmod(staging, 0o755)  # mkdtemp makes it private; fine-tuners on other accounts read it
        try:
            staging.rename(target)
        except OSError:
            # Another run wrote this version since we looked. The version is derived from
            # the content, and a version folder only appears whole (renamed into place), so
            # what is there is this export: success, with ours discarded.
            if not target.is_dir():
                raise
            shutil.rmtree(staging, ignore_errors=True)
            return ExportResult(version, target, created=False, rows=rows)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(version, target, created=True, rows=rows)


def publish(export_dir: Path, version: str) -> str | None:
    """Make `version` the published one (LATEST); return the version it replaces."""
    if not (export_dir / version).is_dir():
        raise FileNotFoundError(f"{export_dir / version}: no such export to publish")
    previous = published_version(export_dir)
    # Written beside LATEST and renamed over it (atomic in one folder): a reader finds the
    # old version or the new one, never an empty or half-written file, and two runs
    # publishing at once leave one of their versions.
    handle, temporary = tempfile.mkstemp(prefix=f".{LATEST_FILE}-", dir=export_dir)
    try:
        with os.fdopen(handle, "w") as file:
            file.write(version + "\n")
            file.flush()
            os.fsync(file.fileno())  # on disk before it is named LATEST, should the machine stop
        os.chmod(temporary, 0o644)  # mkstemp makes it private; fine-tuners on other accounts read it
        os.replace(temporary, export_dir / LATEST_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return previous


def published_version(export_dir: Path) -> str | None:
    """The version LATEST names, or None before anything was published."""
    latest = export_dir / LATEST_FILE
    return latest.read_text().strip() or None if latest.exists() else None
