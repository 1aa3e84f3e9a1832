"""A dataset version made of shards, so an added document rewrites one file, not all.

Documents fall into SHARD_BUCKETS buckets by a stable hash of their key; each format's
rows of a bucket and split are one Parquet file and one JSON Lines file, named by a hash
of their rows and kept once in `<export_dir>/shards/`. A version folder holds hard links
to its shards (plus its card, charts and `manifest.json`), so it is complete on its own
(copy it, push it to the Hub, load it with `datasets`) and an old version stays loadable
as it was after new ones are written:

    <version>/manifest.json                         every shard: format, split, bucket, rows
    <version>/<format>/<split>/<bucket>-<hash>.parquet
    <version>/<format>/jsonl/<split>/<bucket>-<hash>.jsonl
    <version>/README.md, dataset_info.json, *.png

A bucket's shard changes only when one of its documents' rows changes: a new version
writes those and links the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SHARD_BUCKETS = 32
SHARD_STORE = "shards"
MANIFEST_FILE = "manifest.json"
# Human-labelled rows come from no document: their own bucket.
HUMAN_BUCKET = -1

_TURN = pa.struct([("from", pa.string()), ("value", pa.string())])
_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string()), ("reasoning_content", pa.string())])
_SPAN = pa.struct([("chunk_id", pa.string()), ("start", pa.int64()), ("end", pa.int64()), ("score", pa.float64())])
# One type per column, whatever rows a shard holds: `datasets` loads a version's shards as
# one table, and a shard whose column happened to be all null (or whose messages had no
# reasoning) would otherwise carry a different type. Columns not named here are text.
COLUMN_TYPES = {
    "conversations": pa.list_(_TURN), "messages": pa.list_(_MESSAGE),
    "page_start": pa.int64(), "page_end": pa.int64(), "difficulty": pa.int64(),
    "source_chunk_ids": pa.list_(pa.string()), "evidence": pa.list_(_SPAN),
}


def _column_type(column: str, values) -> pa.DataType:
    if column in COLUMN_TYPES:
        return COLUMN_TYPES[column]
    first = next((v for v in values if isinstance(v, list) and v), None)
    if first is not None:  # a message list (preference pairs' chosen/rejected) or a list of names
        return pa.list_(_MESSAGE) if isinstance(first[0], dict) else pa.list_(pa.string())
    return pa.string()


def bucket_of(document_id: str, buckets: int = SHARD_BUCKETS) -> int:
    """The document's bucket: stable across runs, machines and Python versions."""
    return int.from_bytes(hashlib.sha256(document_id.encode()).digest()[:8], "big") % buckets


@dataclass(frozen=True)
class Shard:
    format: str
    split: str
    bucket: int
    digest: str
    rows: int

    @property
    def name(self) -> str:
        return f"{'human' if self.bucket == HUMAN_BUCKET else f'{self.bucket:03d}'}-{self.digest}"

    def path(self, kind: str = "parquet") -> str:
        """Where the shard is inside a version folder."""
        if kind == "parquet":
            return f"{self.format}/{self.split}/{self.name}.parquet"
        return f"{self.format}/jsonl/{self.split}/{self.name}.jsonl"

    def files(self) -> tuple[str, str]:
        """Both of its files (Parquet, JSON Lines), inside a version folder or the store."""
        return self.path(), self.path("jsonl")


def _schema(frame: pd.DataFrame) -> pa.Schema:
    return pa.schema([(column, _column_type(column, frame[column])) for column in frame.columns])


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    # Text columns may hold numbers (a page label) or NaN: text or null, as the schema says.
    frame = frame.copy()
    for column in frame.columns:
        if _column_type(column, frame[column]) == pa.string():
            frame[column] = [None if v is None or (isinstance(v, float) and v != v) else str(v) for v in frame[column]]
    return frame


def shard_digest(frame: pd.DataFrame) -> str:
    """A hash of the shard's rows (columns and values, in order)."""
    return hashlib.sha256(frame.to_json(orient="split", force_ascii=False, index=False).encode()).hexdigest()[:16]


def write_shard(store: Path, fmt: str, split: str, bucket: int, frame: pd.DataFrame) -> Shard:
    """Write a shard's rows into the store (once: the same rows are the same files)."""
    frame = _typed(frame.reset_index(drop=True))
    shard = Shard(fmt, split, bucket, shard_digest(frame), len(frame))
    for kind in ("parquet", "jsonl"):
        target = store / shard.path(kind)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)  # one per writer
        os.close(handle)
        staging = Path(name)
        if kind == "parquet":
            pq.write_table(pa.Table.from_pandas(frame, schema=_schema(frame), preserve_index=False), staging)
        else:
            frame.to_json(staging, orient="records", lines=True, force_ascii=False)
        os.chmod(staging, 0o644)  # mkstemp makes it private; fine-tuners on other accounts read it
        os.replace(staging, target)  # whole or absent, should two runs write it at once
    return shard


def link_version(store: Path, folder: Path, shards: list[Shard]) -> None:
    """Put every shard in the version folder: hard links (no copy, and the version keeps
    its files whatever happens to the store); a copy where the file system has none."""
    for shard in shards:
        for file in shard.files():
            source, target = store / file, folder / file
            if target.exists():  # content-addressed: already there is the same file
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except FileExistsError:  # another writer linked it meanwhile
                pass
            except OSError:  # another file system, or one without hard links
                shutil.copyfile(source, target)


def manifest(version: str, shards: list[Shard], extra: dict) -> dict:
    """What a version holds: every shard (format, split, bucket, rows, file) and the row
    counts per format and split."""
    rows: dict[str, dict[str, int]] = {}
    for shard in shards:
        rows.setdefault(shard.format, {"train": 0, "validation": 0})
        rows[shard.format][shard.split] += shard.rows
    return {"version": version, **extra, "rows": rows,
            "shards": [{**asdict(s), "path": s.path(), "jsonl": s.path("jsonl")} for s in shards]}


def read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def shards_of(manifest_data: dict) -> list[Shard]:
    return [Shard(s["format"], s["split"], s["bucket"], s["digest"], s["rows"]) for s in manifest_data["shards"]]


def read_shards(folder: Path, shards: list[Shard]) -> pd.DataFrame:
    """The rows of these shards of a version (Parquet), in one frame."""
    # Lists as Python lists (to_pandas would give numpy arrays): rows as a reader sees them.
    frames = [pd.DataFrame(pq.read_table(folder / shard.path()).to_pylist(), dtype=object) for shard in shards]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_split(folder: Path, fmt: str, split: str) -> pd.DataFrame:
    """One format's rows of one split of a version folder, as a frame (in shard order)."""
    listed = read_manifest(folder)
    if listed is None:
        raise FileNotFoundError(f"{folder}: no {MANIFEST_FILE} (not a dataset version)")
    return read_shards(folder, [s for s in shards_of(listed) if s.format == fmt and s.split == split])
