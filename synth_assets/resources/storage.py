"""The DuckDB database every asset reads and writes."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from dagster_duckdb import DuckDBResource

from synth_assets.storage import ensure_tables

DUCKDB_PATH_ENV = "SYNTH_ASSETS_DUCKDB_PATH"
DEFAULT_DUCKDB_PATH = "data/synth_assets.duckdb"


class PipelineDatabase(DuckDBResource):
    """dagster-duckdb's resource, plus: the folder is created and the tables exist.

    Connections are opened per read or write and closed at once: DuckDB lets only one
    process write a file, and the resource's connect backoff then waits for the holder
    instead of failing the run.
    """

    @classmethod
    def from_env(cls) -> "PipelineDatabase":
        return cls(database=os.environ.get(DUCKDB_PATH_ENV, DEFAULT_DUCKDB_PATH))

    @contextmanager
    def get_connection(self):
        if self.database != ":memory:":
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with super().get_connection() as con:
            ensure_tables(con)
            yield con
