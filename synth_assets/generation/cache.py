"""Content-addressed cache of model replies in DuckDB.

The key is a hash of the model, the sampling parameters and the exact chat messages,
so a repeated run, or a run resumed after a crash, finds every reply it already paid
for, and any change of prompt, model or parameters misses. Only replies that parsed
are stored (model_backend.py decides that), so a bad reply is asked again next time.

DuckDB lets one process at a time open a file for writing, and Dagster may run several
generation steps in parallel processes sharing this file. So connections are short (one
per lookup or batch of writes) and a connect that meets another process's lock is
retried with backoff instead of failing the step.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from synth_assets.storage import connect_waiting_for_lock

CACHE_TABLE = "generation_cache"
_CREATE = f"""
CREATE TABLE IF NOT EXISTS {CACHE_TABLE} (
    cache_key VARCHAR PRIMARY KEY,
    model VARCHAR,
    prompt_version VARCHAR,
    reply VARCHAR,
    prompt_tokens INT,
    completion_tokens INT,
    created_at TIMESTAMP
)
"""
_INSERT = f"INSERT OR REPLACE INTO {CACHE_TABLE} VALUES "
_ROW = "(?, ?, ?, ?, ?, ?, now())"


@dataclass(frozen=True)
class CachedReply:
    cache_key: str
    model: str | None
    prompt_version: str | None
    reply: str
    prompt_tokens: int | None
    completion_tokens: int | None


@dataclass(frozen=True)
class CacheEntry:
    """One reply to store; `GenerationCache.put_many` writes a batch in one commit."""

    cache_key: str
    model: str | None
    prompt_version: str | None
    reply: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def cache_key(model: str | None, params: dict[str, Any], messages: Any) -> str:
    """sha256 of the canonical JSON of model, parameters and messages."""
    canonical = json.dumps(
        {"model": model, "params": params, "messages": messages},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class GenerationCache:
    """Replies by cache key in the DuckDB file at `path` (":memory:" keeps one
    connection open for the life of the object, for tests)."""

    def __init__(self, path: str | Path, *, lock_timeout_s: float = 120.0) -> None:
        self.path = str(path)
        self.lock_timeout_s = lock_timeout_s
        self._memory: duckdb.DuckDBPyConnection | None = None
        self._memory_lock = threading.Lock()
        if self.path == ":memory:":
            self._memory = duckdb.connect(":memory:")
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute(_CREATE)

    def __repr__(self) -> str:
        return f"GenerationCache({self.path!r})"

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._memory is not None:
            with self._memory_lock:  # one shared connection: one user at a time
                yield self._memory
            return
        # One connection at a time in this process: two threads (generation and the
        # judge running beside it) attaching the file at once make DuckDB fail with
        # "Unique file handle conflict". Another process may be writing the file: wait
        # for its short connection.
        with self._memory_lock:
            con = connect_waiting_for_lock(self.path, lock_timeout_s=self.lock_timeout_s)
            try:
                yield con
            finally:
                con.close()

    def get_many(self, keys: Sequence[str]) -> dict[str, CachedReply]:
        """The cached replies among `keys`, by key (missing keys are left out)."""
        unique = list(dict.fromkeys(keys))
        if not unique:
            return {}
        found: dict[str, CachedReply] = {}
        with self._connect() as con:
            for start in range(0, len(unique), 1000):
                rows = con.execute(
                    f"SELECT cache_key, model, prompt_version, reply, prompt_tokens, "
                    f"completion_tokens FROM {CACHE_TABLE} "
                    f"WHERE cache_key IN (SELECT unnest(?::VARCHAR[]))",
                    [unique[start : start + 1000]],
                ).fetchall()
                for row in rows:
                    found[row[0]] = CachedReply(*row)
        return found

    def put(
        self,
        key: str,
        *,
        model: str | None,
        prompt_version: str | None,
        reply: str,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
    ) -> None:
        """Store one reply, committed before returning."""
        self.put_many(
            [CacheEntry(key, model, prompt_version, reply, prompt_tokens, completion_tokens)]
        )

    def put_many(self, entries: Iterable[CacheEntry]) -> None:
        """Store replies in one transaction, committed before returning."""
        # One row per key (the last wins): a key written twice in one transaction is
        # a constraint error in DuckDB.
        rows = list({
            e.cache_key: (e.cache_key, e.model, e.prompt_version, e.reply,
                          e.prompt_tokens, e.completion_tokens)
            for e in entries
        }.values())
        if not rows:
            return
        with self._connect() as con:
            con.execute("BEGIN")
            try:
                # One multi-row INSERT per slice: several times faster than executemany.
                for start in range(0, len(rows), 500):
                    part = rows[start : start + 500]
                    values = ", ".join([_ROW] * len(part))
                    con.execute(_INSERT + values, [value for row in part for value in row])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def count(self) -> int:
        # Not __len__: an empty cache would be falsy and `if cache:` would skip it.
        with self._connect() as con:
            return con.execute(f"SELECT count(*) FROM {CACHE_TABLE}").fetchone()[0]
