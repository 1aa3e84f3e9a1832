"""A `vllm serve` that outlives runs: one model load per session, shared by every run.

`make serve` (or the first run with the `vllm_serve` backend) starts an *owner*: a small
Python process (`python -m synth_assets.generation.service`) that starts `vllm serve`,
writes what it started into the instance directory and stops it when nobody has used
it for `idle_s` seconds, on `make serve-stop` (SIGTERM to the owner) or when the server
dies. Runs never own the server; they take a *lease* (a file named by their pid) while
they use it, so the owner knows it is busy, and a run killed with its lease still
there is noticed (its pid is gone) and does not keep the server up for ever.

Files, in `<instance dir>/generation_service/` (the instance dir is $DAGSTER_HOME):
- `service.json`: owner pid, server pid, port, model, options, fingerprint, start times,
  and `stopping` once the owner has begun to stop the server;
- `lock`: an flock held while the record is read or changed, so two runs starting at
  once start one server, not two;
- `leases/<pid>`: the runs using the server;
- `service.log`: the server's output.

A record whose owner died (SIGKILL, a crash) is stale: the next start stops the server
that owner left behind (it holds the GPU and nobody would stop it) and removes the
record. Pids are checked with their start time, so a reused pid is not taken for the
owner.

Never two servers at once: a server holds its GPU memory until every process of its
group has exited (vLLM's engine processes can outlive the API server process), so the
record stays, marked `stopping`, until then, and a run that comes in meanwhile waits
for it to go before it starts a new one.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from synth_assets.generation.vllm_server import ManagedVLLMServer, free_port, vllm_serve_command

SERVICE_DIR = "generation_service"


class ServiceError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServiceSpec:
    """What to serve: the same executable, model and options are the same service."""

    executable: str
    model: str
    options: dict = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        text = json.dumps([self.executable, self.model, self.options], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Record:
    owner_pid: int
    owner_started: str
    port: int
    model: str
    options: dict
    fingerprint: str
    server_pid: int | None = None
    server_started: str | None = None
    stopping: bool = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def process_start(pid: int) -> str | None:
    """The start time of a live process (field 22 of /proc/<pid>/stat), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: count fields after its closing ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else fields[19]


def alive(pid: int | None, started: str | None) -> bool:
    return pid is not None and started is not None and process_start(pid) == started


def group_alive(pgid: int) -> bool:
    """Whether a process of the process group is still alive (zombies aside)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # exited while we looked
            continue
        state, _, group = text[text.rindex(")") + 2 :].split()[:3]
        if state != "Z" and int(group) == pgid:
            return True
    return False


def wait_group_gone(pgid: int, grace_s: float) -> None:
    """Returns when no process of the group is left: after `grace_s` what remains is
    killed. The kernel gives a process's GPU memory back only when it has exited."""
    deadline = time.monotonic() + grace_s
    killed = False
    while group_alive(pgid):
        if not killed and time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            killed = True
        time.sleep(0.1)


class ServiceDir:
    """The service's files in one instance directory."""

    def __init__(self, instance_dir: str | Path) -> None:
        self.root = Path(instance_dir) / SERVICE_DIR
        self.record_path = self.root / "service.json"
        self.leases = self.root / "leases"
        self.log_path = self.root / "service.log"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.leases.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read(self) -> Record | None:
        try:
            return Record(**json.loads(self.record_path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as error:
            raise ServiceError(f"{self.record_path}: not a generation service record ({error}); "
                               "remove it or run `make serve-stop`") from None

    def write(self, record: Record) -> None:
        temporary = self.record_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(record), indent=2))
        temporary.replace(self.record_path)  # readers never see half a record

    def clear(self, record: Record) -> None:
        """Remove the record if it is still this one."""
        current = self.read()
        if current is not None and (current.owner_pid, current.owner_started) == (
                record.owner_pid, record.owner_started):
            self.record_path.unlink()

    def live_leases(self) -> int:
        """Runs using the server; leases of runs that died are removed."""
        count = 0
        for lease in self.leases.glob("*"):
            pid, _, started = lease.name.partition("-")
            if not (pid.isdigit() and started.isdigit()):  # not a lease: someone's file, left alone
                continue
            if alive(int(pid), started):
                count += 1
            else:
                lease.unlink(missing_ok=True)
        return count


def healthy(record: Record, timeout_s: float = 2.0) -> bool:
    """The server answers /health and serves the record's model."""
    try:
        root = f"http://127.0.0.1:{record.port}"
        if httpx.get(f"{root}/health", timeout=timeout_s).status_code != 200:
            return False
        models = httpx.get(f"{root}/v1/models", timeout=timeout_s).json()
        return any(entry.get("id") == record.model for entry in models.get("data", []))
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def stop_stale(directory: ServiceDir, record: Record) -> str:
    """Stop what a dead owner left running and remove its record; says what was done."""
    done = f"removed the record of a service whose owner (pid {record.owner_pid}) died"
    if alive(record.server_pid, record.server_started):
        wait_group_gone(record.server_pid, grace_s=0)  # SIGKILL at once: nobody is using it
        done += f", and stopped its server (pid {record.server_pid})"
    directory.clear(record)
    return done


@dataclass
class Lease:
    """A run's use of the service: released at the end of the step (or by its death)."""

    path: Path
    record: Record

    @property
    def base_url(self) -> str:
        return self.record.base_url

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


def acquire(instance_dir: str | Path, spec: ServiceSpec, *, idle_s: float, startup_timeout_s: float = 900.0,
            log=print) -> Lease:
    """A lease on a healthy service for `spec`: the one running, or one started now."""
    directory = ServiceDir(instance_dir)
    deadline = time.monotonic() + startup_timeout_s
    started_here = False
    waiting_for = "become healthy"
    while True:
        with directory.locked():
            record = directory.read()
            if record is not None and not alive(record.owner_pid, record.owner_started):
                if started_here:  # the owner this call started gave up: do not loop
                    directory.clear(record)
                    raise ServiceError(f"the generation service exited while starting; see {directory.log_path}")
                log(f"generation service: {stop_stale(directory, record)}")
                record = None
            if record is None and started_here:  # `make serve-stop` while it loaded: not restarted behind it
                raise ServiceError("the generation service was stopped while it was starting")
            if record is not None and record.stopping:
                if waiting_for != "stop":
                    waiting_for = "stop"
                    log(f"generation service: waiting for the service that is stopping (owner pid "
                        f"{record.owner_pid}) to free its GPU")
            elif record is None:
                record = start_owner(directory, spec, idle_s)
                started_here, waiting_for = True, "become healthy"
                log(f"generation service: started {spec.model} on port {record.port} (owner pid "
                    f"{record.owner_pid}, log {directory.log_path}); it stops after {idle_s:.0f} s idle")
            elif record.fingerprint != spec.fingerprint:
                raise ServiceError(
                    f"a generation service for another model or options is running ({record.model} "
                    f"{record.options}, owner pid {record.owner_pid}); stop it with `make serve-stop`")
            elif healthy(record):
                # The lease is taken under the lock: the owner cannot stop the server for
                # idleness between this check and the run's first request.
                pid = os.getpid()
                lease = directory.leases / f"{pid}-{process_start(pid)}"
                lease.touch()
                if not started_here:
                    log(f"generation service: using {record.model} on port {record.port} "
                        f"(owner pid {record.owner_pid})")
                return Lease(lease, record)
        if time.monotonic() > deadline:
            raise ServiceError(f"the generation service did not {waiting_for} within {startup_timeout_s:.0f} s; "
                               f"see {directory.log_path}")
        time.sleep(0.5)


def start_owner(directory: ServiceDir, spec: ServiceSpec, idle_s: float) -> Record:
    """Start the owner process, detached from this process (it outlives the run), and
    record it. Called with the lock held."""
    port = free_port()
    command = [sys.executable, "-m", "synth_assets.generation.service", "--instance-dir",
               str(directory.root.parent), "--port", str(port), "--idle-s", str(idle_s),
               "--spec", json.dumps(asdict(spec))]
    with open(directory.log_path, "a") as log_file:
        owner = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    record = Record(owner.pid, process_start(owner.pid) or "", port, spec.model, spec.options, spec.fingerprint)
    directory.write(record)
    return record


def stop(instance_dir: str | Path, grace_s: float = 45.0) -> str:
    """Stop the service (`make serve-stop`): SIGTERM to its owner, which stops the server."""
    directory = ServiceDir(instance_dir)
    with directory.locked():
        record = directory.read()
        if record is None:
            return "no generation service is running"
        if not alive(record.owner_pid, record.owner_started):
            return stop_stale(directory, record)
        os.kill(record.owner_pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while alive(record.owner_pid, record.owner_started) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(record.owner_pid, record.owner_started):
        raise ServiceError(f"the generation service's owner (pid {record.owner_pid}) did not stop in {grace_s} s")
    return f"stopped the generation service ({record.model} on port {record.port})"


class _Stopped(Exception):
    """SIGTERM while the model loads: the wait for it is cut short."""


def own(directory: ServiceDir, spec: ServiceSpec, port: int, idle_s: float, poll_s: float = 0.5) -> None:
    """The owner's life: start the server, record it, stop it when idle, on SIGTERM or
    when it dies, wait until its whole process group has exited, then remove the record."""
    stopping = []
    loading = []  # not empty while the load may be cut short

    def on_sigterm(*_) -> None:
        stopping.append("SIGTERM")
        if loading:  # a load takes minutes: `make serve-stop` must not wait for it
            raise _Stopped

    signal.signal(signal.SIGTERM, on_sigterm)
    options = dict(spec.options)
    server = ManagedVLLMServer(vllm_serve_command(spec.executable, spec.model, port, options), port,
                               log_line=lambda line: print(line, flush=True))
    pid = os.getpid()
    started = process_start(pid)
    record = None

    def recorded(server_pid: int) -> None:
        # Before the model loads: an owner killed while it waits leaves a server that
        # the next start must find.
        nonlocal record
        with directory.locked():
            record = directory.read()
            if record is None or record.owner_pid != pid:
                raise ServiceError("the service record is not this owner's")
            record.server_pid, record.server_started = server_pid, process_start(server_pid)
            directory.write(record)
        if stopping:  # SIGTERM before the server was recorded
            raise _Stopped
        loading.append(True)  # from here on, server.stop() in the end reaches the server

    def mark_stopping() -> None:
        # Under the lock, so no run takes a lease on a server about to go.
        with directory.locked():
            current = directory.read()
            if current is not None and (current.owner_pid, current.owner_started) == (pid, started):
                current.stopping = True
                directory.write(current)

    try:
        try:
            server.start(on_spawn=recorded)
        except _Stopped:
            print("generation service: SIGTERM while the model was loading, stopping", flush=True)
            return
        finally:
            loading.clear()
        last_used = time.monotonic()
        while not stopping:
            time.sleep(poll_s)
            if server.process.poll() is not None:
                print(f"generation service: the server exited with code {server.process.returncode}", flush=True)
                break
            with directory.locked():
                if directory.live_leases():
                    last_used = time.monotonic()
                elif time.monotonic() - last_used > idle_s:
                    print(f"generation service: idle for {idle_s:.0f} s, stopping", flush=True)
                    record.stopping = True
                    directory.write(record)
                    break
    finally:
        mark_stopping()
        if server.process is not None:
            if server.process.poll() is not None:  # it exited on its own: the rest of its group was not told
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.process.pid, signal.SIGTERM)
            server.stop()
            wait_group_gone(server.process.pid, grace_s=10)
        with directory.locked():
            current = directory.read()
            if current is not None and (current.owner_pid, current.owner_started) == (pid, started):
                directory.record_path.unlink()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The owner of a generation service (started by acquire).")
    parser.add_argument("--instance-dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--idle-s", type=float, required=True)
    parser.add_argument("--spec", required=True, help="ServiceSpec as JSON")
    args = parser.parse_args(argv)
    own(ServiceDir(args.instance_dir), ServiceSpec(**json.loads(args.spec)), args.port, args.idle_s)


if __name__ == "__main__":
    main()
