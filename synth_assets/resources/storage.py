"""The DuckDB database every asset reads and writes."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from dagster_duckdb import DuckDBResource

from synth_assets.storage import DEFAULT_LOCK_TIMEOUT_S, connect_waiting_for_lock, ensure_tables

DEFAULT_DUCKDB_PATH = "data/synth_assets.duckdb"


class PipelineDatabase(DuckDBResource):
    """dagster-duckdb's resource, plus: the folder is created, the tables exist, and a
    connection waits for another run's.

    Connections are opened per read or write and closed at once, even when the work
    inside fails: DuckDB lets only one process write a file, so runs take turns. The
    library's own connect backoff gives up after ~100 s with delays that double to
    51 s and no jitter, and skips closing the connection when the body raises; our
    connect waits up to `lock_timeout_s` with short jittered retries and always closes.
    """

    database: str = DEFAULT_DUCKDB_PATH
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S

    @contextmanager
    def get_connection(self):
        if self.database != ":memory:":
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        con = connect_waiting_for_lock(
            self.database,
            lock_timeout_s=self.lock_timeout_s,
            config={"custom_user_agent": "dagster", **self.connection_config},
        )
        try:
            ensure_tables(con)
            yield con
        finally:
            con.close()
