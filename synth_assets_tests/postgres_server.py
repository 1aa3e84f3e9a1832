"""A throwaway PostgreSQL server for the team-deployment tests.

Debian's `postgresql` binaries (installed by `make test` as root, like chromium) start a
cluster of our own: initdb in a temporary folder, on a free port on 127.0.0.1, trust
authentication, removed after. PostgreSQL refuses to run as root, so as root the
cluster belongs to an unprivileged system user made for it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SERVER_USER = "synth_pg"  # owner of the clusters when the tests run as root


def postgres_bin_dir() -> Path | None:
    """The folder of Debian's PostgreSQL server binaries (the newest version), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def skip_reason() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None when they can."""
    if postgres_bin_dir() is None:
        return ("PostgreSQL's server binaries are not installed (Debian package `postgresql`; "
                "`make test` installs it when run as root)")
    if os.geteuid() == 0 and shutil.which("useradd") is None and not _user_exists():
        return f"running as root without `useradd` to create the unprivileged user {SERVER_USER}"
    return None


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    user: str

    def dsn(self, dbname: str) -> str:
        """A libpq connection string (the form DuckLake's `postgres:` catalog takes)."""
        return f"dbname={dbname} host={self.host} port={self.port} user={self.user}"

    def create_database(self, name: str) -> str:
        import psycopg2

        con = psycopg2.connect(self.dsn("postgres"))
        con.autocommit = True
        with con.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        con.close()
        return name


def _user_exists() -> bool:
    try:
        pwd.getpwnam(SERVER_USER)
        return True
    except KeyError:
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_server():
    """Start a PostgreSQL cluster in a temporary folder; yield its Server; stop and remove it."""
    bin_dir = postgres_bin_dir()
    as_root = os.geteuid() == 0
    if as_root and not _user_exists():
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        SERVER_USER], check=True, capture_output=True)
    run_as = ["runuser", "-u", SERVER_USER, "--"] if as_root else []
    user = SERVER_USER if as_root else pwd.getpwuid(os.geteuid()).pw_name
    folder = Path(tempfile.mkdtemp(prefix="synth_pg_"))
    if as_root:
        shutil.chown(folder, SERVER_USER)
    data, log = folder / "data", folder / "server.log"
    port = _free_port()
    try:
        try:
            subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", user, "--auth=trust",
                            "--encoding=UTF8", "--no-sync"], check=True, capture_output=True)
            subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "start",
                            "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                                  "-c max_connections=200"],
                           check=True, capture_output=True)
        except subprocess.CalledProcessError as error:
            logged = log.read_text() if log.exists() else ""
            raise RuntimeError(f"PostgreSQL in {folder} did not start: {error.stderr.decode()} {logged}") from error
        try:
            yield Server(host="127.0.0.1", port=port, user=user)
        finally:
            subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
