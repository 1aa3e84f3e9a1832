"""A `vllm serve` process the pipeline starts and stops itself.

For users who have vLLM in its own environment (its own torch and CUDA): set the
executable (`SYNTH_ASSETS_VLLM_EXECUTABLE`, e.g. /opt/vllm-env/bin/vllm) and the openai
backend talks to the server this starts on 127.0.0.1. The server's log lines are
passed to a callback (the Dagster log) as they come.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def vllm_serve_command(
    executable: str, model: str, port: int, engine_args: dict[str, object] | None = None
) -> list[str]:
    """`vllm serve MODEL --host 127.0.0.1 --port PORT --key value ...` (None values left out)."""
    command = [*shlex.split(executable), "serve", model, "--host", "127.0.0.1", "--port", str(port)]
    for key, value in (engine_args or {}).items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        command += [flag] if value is True else [flag, str(value)]
    return command


class ManagedVLLMServer:
    """Start a server process, wait until /health answers, stream its log, stop it."""

    def __init__(
        self,
        command: Sequence[str],
        port: int,
        *,
        log_line: Callable[[str], None] = print,
        startup_timeout_s: float = 900.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.command = list(command)
        self.port = port
        self.log_line = log_line
        self.startup_timeout_s = startup_timeout_s
        self.env = env
        self.process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, on_spawn: Callable[[int], None] | None = None) -> "ManagedVLLMServer":
        """Start the process and wait until it is healthy; `on_spawn(pid)` is called in
        between (to record the process before the long wait for the model to load)."""
        try:
            self.process = subprocess.Popen(
                self.command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, **(self.env or {})},
                start_new_session=True,  # its workers are stopped with it
            )
        except FileNotFoundError:
            raise RuntimeError(
                f"cannot start the vLLM server: {self.command[0]!r} not found "
                "(set SYNTH_ASSETS_VLLM_EXECUTABLE to the vllm of an environment that has it)"
            ) from None
        self._reader = threading.Thread(target=self._stream_log, daemon=True)
        self._reader.start()
        if on_spawn is not None:
            on_spawn(self.process.pid)
        self._wait_until_healthy()
        return self

    def _stream_log(self) -> None:
        assert self.process and self.process.stdout
        for line in self.process.stdout:
            self.log_line(f"[vllm serve] {line.rstrip()}")

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        health = f"http://127.0.0.1:{self.port}/health"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the vLLM server exited with code {self.process.returncode} before it was "
                    "ready; its log is above"
                )
            try:
                if httpx.get(health, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the vLLM server did not answer {health} within {self.startup_timeout_s:.0f} s")

    def stop(self, grace_s: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        if self._reader:
            self._reader.join(timeout=5)

    def __enter__(self) -> "ManagedVLLMServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
