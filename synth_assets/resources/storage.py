"""The DuckDB database every asset reads and writes."""

from __future__ import annotations

import importlib.util
import os
import random
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import PrivateAttr

from synth_assets.storage import DEFAULT_LOCK_TIMEOUT_S, connect_waiting_for_lock, ensure_tables

DEFAULT_DUCKDB_PATH = "data/synth_assets.duckdb"


class PipelineDatabase(DuckDBResource):
    """dagster-duckdb's resource, plus: the folder is created, the tables exist, and a
    connection waits for another run's.

    Connections are short and always closed, even when the work inside fails: DuckDB
    lets only one process write a file, so runs take turns. The library's own connect
    backoff gives up after ~100 s with delays that double to 51 s and no jitter, and
    skips closing the connection when the body raises; our connect waits up to
    `lock_timeout_s` with short jittered retries and always closes.

    Opening a connection costs tens of milliseconds (more than most of our per-document
    reads and writes), so a step over many documents runs inside `shared_connection()`,
    where `get_connection()` hands out one connection, renewed once it is older than
    `shared_connection_s` so that other processes still get their turn.

    The team deployment (docs/DEPLOYMENT.md) sets `ducklake_catalog`: the tables are then
    a DuckLake whose catalog is in PostgreSQL and whose data files are in
    `ducklake_data_path`, which many processes on many machines write at once; each
    partition write is one DuckLake transaction (snapshot isolation), and `database`
    is not used.
    """

    database: str = DEFAULT_DUCKDB_PATH
    # The team deployment's DuckLake catalog: `postgres:<libpq connection string>` (e.g.
    # `postgres:dbname=synth_lake host=db.internal user=synth`; the password comes from
    # PGPASSWORD or ~/.pgpass, never from here), or the path of a local catalog file
    # (one machine, one process at a time). Empty: the embedded DuckDB file `database`.
    ducklake_catalog: str = ""
    # Where DuckLake writes its Parquet data files: a folder every worker sees at the
    # same path (a shared mount) or an object-store URL (`s3://bucket/prefix/`, which
    # needs the duckdb-extension-httpfs package and an S3 secret). Required with a catalog.
    ducklake_data_path: str = ""
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    shared_connection_s: float = 1.0
    _shared: list = PrivateAttr(default_factory=list)  # [connection, opened at] inside shared_connection()

    def _connect(self):
        if self.ducklake_catalog:
            return _connect_ducklake(self.ducklake_catalog, self.ducklake_data_path)
        if self.database != ":memory:":
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        con = connect_waiting_for_lock(
            self.database,
            lock_timeout_s=self.lock_timeout_s,
            config={"custom_user_agent": "dagster", **self.connection_config},
        )
        try:
            ensure_tables(con)
        except BaseException:
            con.close()
            raise
        return con

    @contextmanager
    def get_connection(self):
        if self._shared:
            if self._shared[0] is None or time.monotonic() - self._shared[1] > self.shared_connection_s:
                self._close_shared()
                self._shared[:] = [self._connect(), time.monotonic()]
            try:
                yield self._shared[0]
            except BaseException:  # it may be left inside a transaction: the next use opens anew
                self._close_shared()
                raise
            return
        con = self._connect()
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def shared_connection(self):
        """Inside this block, get_connection() reuses one connection (see the class)."""
        if self._shared:  # already inside one
            yield
            return
        self._shared[:] = [None, 0.0]
        try:
            yield
        finally:
            self._close_shared()
            self._shared.clear()

    def _close_shared(self) -> None:
        if self._shared and self._shared[0] is not None:
            self._shared[0].close()
            self._shared[0] = None


# One in-memory DuckDB per process and lake, with the extensions loaded and the lake
# attached (about 0.4 s); each connection handed out is a cursor on it (a few ms), with
# its own transactions.
_LAKES: dict[tuple[int, str, str], duckdb.DuckDBPyConnection] = {}
_LAKES_LOCK = threading.Lock()
LAKE_ALIAS = "lake"


def _connect_ducklake(catalog: str, data_path: str) -> duckdb.DuckDBPyConnection:
    if not data_path:
        raise ValueError(f"ducklake_catalog is set ({catalog!r}) but ducklake_data_path is empty: "
                         "set SYNTH_ASSETS_DUCKLAKE_DATA_PATH to the folder (or s3:// URL) for the data files")
    key = (os.getpid(), catalog, data_path)  # a forked child opens its own
    with _LAKES_LOCK:
        if key not in _LAKES:
            _LAKES[key] = _retrying_lake_races(lambda: _attach_ducklake(catalog, data_path))
        base = _LAKES[key]
    con = base.cursor()
    try:
        con.execute(f"USE {LAKE_ALIAS}")
        _retrying_lake_races(lambda: ensure_tables(con))
    except BaseException:
        con.close()
        raise
    return con


# What a lost race to set up a new lake looks like: DuckLake's commit conflict (two
# workers creating the same table) and PostgreSQL's duplicate key (two workers creating
# the catalog's own tables on the first ATTACH).
_LAKE_RACE_ERRORS = ("transaction conflict", "duplicate key value")


def _retrying_lake_races(setup, attempts: int = 20):
    # Workers starting together on a new lake all set it up; one wins each step and the
    # others fail. What the winner made is then there, so trying again (staggered) ends.
    for attempt in range(attempts):
        try:
            return setup()
        except duckdb.Error as error:
            if not any(race in str(error).lower() for race in _LAKE_RACE_ERRORS) or attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0.05, 0.3))


def _attach_ducklake(catalog: str, data_path: str) -> duckdb.DuckDBPyConnection:
    # Extensions come only from their PyPI packages: never downloaded at run time.
    con = duckdb.connect(":memory:", config={
        "custom_user_agent": "dagster",
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    })
    try:
        con.execute(f"LOAD '{extension_file('ducklake')}'")
        if catalog.startswith("postgres:"):
            con.execute(f"LOAD '{extension_file('postgres', 'postgres_scanner')}'")
        if "://" in data_path:
            con.execute(f"LOAD '{extension_file('httpfs')}'")
        else:
            Path(data_path).mkdir(parents=True, exist_ok=True)
        if not catalog.startswith("postgres:"):
            Path(catalog).parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"ATTACH {sql_literal('ducklake:' + catalog)} AS {LAKE_ALIAS} (DATA_PATH {sql_literal(data_path)})")
    except BaseException:
        con.close()
        raise
    return con


def extension_file(package: str, name: str | None = None) -> str:
    """The DuckDB extension file inside the PyPI package `duckdb-extension-<package>`.

    DuckDB finds an extension's entry point from its file name, and the postgres package
    ships `postgres.duckdb_extension` for the extension named `postgres_scanner`: such a
    file is loaded through a link of the right name in the temporary folder.
    """
    spec = importlib.util.find_spec(f"duckdb_extension_{package}")
    if spec is None or spec.origin is None:
        raise RuntimeError(f"DuckLake needs the PyPI package duckdb-extension-{package}=={duckdb.__version__} "
                           f"(pip install duckdb-extension-{package}=={duckdb.__version__})")
    path = Path(spec.origin).parent / "extensions" / f"v{duckdb.__version__}" / f"{package}.duckdb_extension"
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: duckdb-extension-{package} must have the version of duckdb "
                           f"({duckdb.__version__})")
    if name is None or name == package:
        return str(path)
    folder = Path(tempfile.gettempdir()) / f"synth_assets_duckdb_extensions_{os.getuid()}" / f"v{duckdb.__version__}"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / f"{name}.duckdb_extension"
    if not (link.is_symlink() and link.resolve() == path.resolve()):
        staged = folder / f".{name}.{os.getpid()}.{threading.get_ident()}"
        staged.unlink(missing_ok=True)
        staged.symlink_to(path)
        os.replace(staged, link)  # atomic, so concurrent processes never see half a link
    return str(link)


def sql_literal(text: str) -> str:
    """A SQL string literal (ATTACH takes no parameters)."""
    return "'" + text.replace("'", "''") + "'"
