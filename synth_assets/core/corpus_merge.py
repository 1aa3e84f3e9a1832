"""One dataset from the published versions of several corpus shards.

A corpus too large for one set of partitions is split into shards (sub-folders of the
documents folder), each with its own Dagster instance, tables and published dataset
(docs/DEPLOYMENT.md, "Corpus shards"). Each shard deduplicates and splits its own
documents; the merge takes every shard's published version in name order and keeps
each question once across shards (the first shard's copy), per format. A shard file
with no repeat is linked as it is (no copy, no read past its questions); a file with
repeats is written again without them. The questions of a file are read once and kept
by the file's hash, so a merge reads the files that are new since the last one.

Documents never move between shards' splits: a document belongs to one shard (its key
starts with the shard's sub-folder), and each shard's split is by document.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from synth_assets.core.exporting import published_version
from synth_assets.core.shards import SHARD_STORE, Shard, link_version, read_manifest, shards_of, write_shard

KEYS_DIR = "question_keys"
# The columns that hold a row's first question, in the formats' own shapes.
QUESTION_COLUMNS = ("instruction", "prompt", "conversations", "messages")


def row_question(row: dict) -> str | None:
    """The first thing the user asks in a row of any export format."""
    for column in QUESTION_COLUMNS:
        value = row.get(column)
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            for turn in value:
                if turn.get("from") == "human" or turn.get("role") == "user":
                    return turn.get("value") or turn.get("content")
    return None


def question_key(text: str | None) -> str:
    """Two questions are the same one when they differ only in case and spacing."""
    return re.sub(r"\s+", " ", (text or "").casefold()).strip()


@dataclass
class CorpusShard:
    name: str
    export_dir: Path
    version: str | None = None
    rows: dict = field(default_factory=dict)
    card_stats: dict = field(default_factory=dict)


@dataclass
class MergePlan:
    shards: list[Shard]
    corpora: list[CorpusShard]
    # format -> rows left out because an earlier shard has the same question
    repeats: dict[str, int]
    unpublished: list[str]
    filtered: int  # files written again without their repeats


# What a version's manifest carries of its card's statistics (training_dataset writes
# them), so a merged card sums the shards' instead of reading their rows.
CARD_STATS = ("documents", "generators", "models", "prompt_versions", "generated", "kept",
              "rejections_by_reason", "languages")


def card_summary(stats: dict) -> dict:
    return {key: stats[key] for key in CARD_STATS if key in stats}


def summed_card_stats(summaries: list[dict]) -> dict:
    """The shards' card statistics as one: counts added, names united."""
    total: dict = {"documents": 0, "generated": 0, "kept": 0, "rejections_by_reason": {}, "languages": {}}
    names: dict[str, set] = {"generators": set(), "models": set(), "prompt_versions": set()}
    for summary in summaries:
        for key in ("documents", "generated", "kept"):
            total[key] += int(summary.get(key, 0))
        for key in ("rejections_by_reason", "languages"):
            for name, n in (summary.get(key) or {}).items():
                total[key][name] = total[key].get(name, 0) + int(n)
        for key in names:
            names[key].update(summary.get(key) or [])
    total.update({key: sorted(found) for key, found in names.items()})
    total["pass_rate"] = total["kept"] / total["generated"] if total["generated"] else 0.0
    return total


def published_corpora(named: dict[str, Path]) -> list[CorpusShard]:
    """Each shard's published version (None when it has published nothing yet)."""
    return [CorpusShard(name, Path(path), published_version(Path(path))) for name, path in sorted(named.items())]


def _keys(store: Path, fmt: str, shard: Shard, folder: Path) -> list[str]:
    """The question keys of a shard file's rows, in order: read once, kept by its hash."""
    cached = store / KEYS_DIR / fmt / f"{shard.digest}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    columns = [c for c in QUESTION_COLUMNS if c in pq.read_schema(folder / shard.path()).names]
    rows = pq.read_table(folder / shard.path(), columns=columns).to_pylist()
    keys = [question_key(row_question(row)) for row in rows]
    cached.parent.mkdir(parents=True, exist_ok=True)
    staging = cached.with_suffix(f".{os.getpid()}.tmp")
    staging.write_text(json.dumps(keys))
    os.replace(staging, cached)
    return keys


def plan_merge(corpora: list[CorpusShard], merged_dir: Path) -> MergePlan:
    """The merged version's shards, all in `<merged_dir>/shards/`: each corpus shard's
    published files, with the rows whose question an earlier shard (in name order) or an
    earlier file already has left out."""
    store = merged_dir / SHARD_STORE
    merged: list[Shard] = []
    seen: dict[str, set[str]] = {}
    repeats: dict[str, int] = {}
    filtered = 0
    unpublished = [c.name for c in corpora if c.version is None]
    for corpus in corpora:
        if corpus.version is None:
            continue
        folder = corpus.export_dir / corpus.version
        listed = read_manifest(folder)
        if listed is None:
            raise FileNotFoundError(f"corpus shard {corpus.name}: {folder} has no manifest.json "
                                    "(published by an older synth_assets? run make run SHARD=<name> again)")
        corpus.rows = listed["rows"]
        corpus.card_stats = listed.get("card_stats") or {}
        for shard in sorted(shards_of(listed), key=lambda s: (s.format, s.split, s.bucket, s.digest)):
            known = seen.setdefault(shard.format, set())
            keys = _keys(merged_dir, shard.format, shard, folder)
            keep = []
            for key in keys:
                keep.append(key not in known)
                known.add(key)
            if all(keep):
                link_version(folder, store, [shard])  # the version folder's file, into the merge's store
                merged.append(shard)
                continue
            repeats[shard.format] = repeats.get(shard.format, 0) + keep.count(False)
            written = _without_repeats(merged_dir, folder, shard, keys, keep)
            if written is not None:
                merged.append(written)
                filtered += 1
    return MergePlan(merged, corpora, repeats, unpublished, filtered)


def _without_repeats(merged_dir: Path, folder: Path, shard: Shard, keys: list[str], keep: list[bool]) -> Shard | None:
    """The shard file without the rows `keep` leaves out, written once: the next merge with
    the same file and the same repeats finds it by their hashes, reading nothing."""
    store = merged_dir / SHARD_STORE
    memo = merged_dir / KEYS_DIR / shard.format / f"{shard.digest}-{hashlib.sha256(bytes(keep)).hexdigest()[:16]}.shard"
    if memo.is_file():
        known = json.loads(memo.read_text())
        written = Shard(**known) if known else None
        if written is None or all((store / file).is_file() for file in written.files()):
            return written
    rows = pd.DataFrame(pq.read_table(folder / shard.path()).to_pylist(), dtype=object)
    kept = rows[keep].reset_index(drop=True)
    written = write_shard(store, shard.format, shard.split, shard.bucket, kept) if len(kept) else None
    if written is not None:
        cached = merged_dir / KEYS_DIR / shard.format / f"{written.digest}.json"
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps([k for k, kept_row in zip(keys, keep) if kept_row]))
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps(asdict(written) if written else None))
    return written


def merged_problems(merged_dir: Path, folder: Path) -> list[str]:
    """What is wrong with a merged version folder, read from its manifest, its files'
    Parquet footers and the kept question keys (not the rows): a listed file missing or
    holding other than its rows, a question twice in a format, the formats of the same
    items holding different numbers of rows."""
    listed = read_manifest(folder)
    if listed is None:
        return [f"{folder}: no manifest.json"]
    problems = []
    totals: dict[str, int] = {}
    keys: dict[str, list[str]] = {}
    for shard in shards_of(listed):
        for kind in ("parquet", "jsonl"):
            if not (folder / shard.path(kind)).is_file():
                problems.append(f"{shard.path(kind)}: listed in the manifest, missing")
        parquet = folder / shard.path()
        if parquet.is_file():
            found = pq.read_metadata(parquet).num_rows
            if found != shard.rows:
                problems.append(f"{shard.path()}: {found} rows, the manifest says {shard.rows}")
            keys.setdefault(shard.format, []).extend(_keys(merged_dir, shard.format, shard, folder))
        totals[shard.format] = totals.get(shard.format, 0) + shard.rows
    for fmt, found in sorted(keys.items()):
        repeated = len(found) - len(set(found))
        if repeated:
            problems.append(f"{fmt}: {repeated} questions appear twice")
    same_items = {fmt: n for fmt, n in totals.items() if not fmt.startswith("preference")}
    if len(set(same_items.values())) > 1:
        problems.append(f"the formats hold different numbers of rows: {same_items}")
    return problems
