"""Generation on a fleet: the openai backend over three simulated GPU servers.

Each server (benchmarks/sim_server.py, in a thread of this process so that its request
log outlives it) runs at most 16 sequences at once, each ttft + output_tokens x tpot =
0.1 + 100 x 0.004 = 0.5 s. Three runs of 600 chunks, each on fresh servers:

1. one server (the baseline);
2. three servers, the backend's base_urls; target: chunks/s >= 2.7x the baseline;
3. three servers, one stopped (listener closed, open connections cut) once a third of
   the chunks have arrived; targets: every chunk answered exactly once, counted in the
   servers' own logs (usable replies per chunk text, summed over the three), and a wall
   time within 1.5x of run 2.

    .venv/bin/python benchmarks/bench_fleet.py

Prints a Markdown table and writes benchmarks/results/fleet.json; exits 1 when a
target is missed.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.sim_server import start_server_in_thread  # noqa: E402
from synth_assets.generation.base import GenerationRequest  # noqa: E402
from synth_assets.generation.openai_backend import OpenAIBackend  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "fleet.json"
SERVER = {"slots": 16, "ttft": 0.1, "tpot": 0.004, "output_tokens": 100}


def chunks(n: int) -> list[GenerationRequest]:
    """n chunks with distinct texts (the servers' logs count replies per text)."""
    return [GenerationRequest(
        document_id=f"doc{i // 20}", chunk_id=f"doc{i // 20}#{i % 20}", title="Ducks", headings=("Ducks",),
        text=(f"Chunk {i} is about ducks. Ducks are birds that swim well in lakes and rivers number {i}. "
              f"They eat plants, seeds and insects found near the water."),
    ) for i in range(n)]


def run(n_servers: int, requests: list[GenerationRequest], max_concurrency: int,
        kill_after: int | None = None) -> dict:
    servers = [start_server_in_thread(**SERVER) for _ in range(n_servers)]
    urls = [url for url, _, _ in servers]
    arrived = 0
    killed_at: list[float] = []
    started = time.perf_counter()

    def on_pairs(chunk_id, pairs) -> None:
        nonlocal arrived
        arrived += 1
        if arrived == kill_after:  # the last server dies; stopped from another thread, as a crash would be
            killed_at.append(time.perf_counter() - started)
            threading.Thread(target=servers[-1][2]).start()

    backend = OpenAIBackend(base_urls=urls, model="sim-model", pairs_per_chunk=3,
                            max_concurrency=max_concurrency, timeout_s=30.0, max_attempts=4)
    outcome = backend.generate(requests, on_pairs=on_pairs)
    seconds = time.perf_counter() - started
    logs = [stats.snapshot() for _, stats, _ in servers]
    for _, _, stop in servers:
        stop()
    answered: Counter[str] = Counter()
    for log in logs:
        answered.update(log["answered"])
    generated = {pair.chunk_id for pair in outcome.pairs}
    return {
        "servers": n_servers,
        "chunks": len(requests),
        "seconds": round(seconds, 2),
        "chunks_per_second": round(len(requests) / seconds, 1),
        "generated": len(generated),
        "failures": len(outcome.failures),
        "requests_per_server": [log["requests"] for log in logs],
        "answered_per_server": [sum(log["answered"].values()) for log in logs],
        "chunks_answered_once": sum(1 for count in answered.values() if count == 1),
        "chunks_answered_more_than_once": sum(1 for count in answered.values() if count > 1),
        "killed_after_s": round(killed_at[0], 2) if killed_at else None,
        "retries": outcome.stats["retries"],
        "servers_taken_out": outcome.stats["servers_taken_out"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=600)
    parser.add_argument("--max-concurrency", type=int, default=32, help="per server (twice its slots)")
    args = parser.parse_args()
    requests = chunks(args.chunks)
    one = run(1, requests, args.max_concurrency)
    three = run(3, requests, args.max_concurrency)
    killed = run(3, requests, args.max_concurrency, kill_after=args.chunks // 3)
    speedup = three["chunks_per_second"] / one["chunks_per_second"]
    slowdown = killed["seconds"] / three["seconds"]
    complete = all(r["generated"] == r["chunks"] == r["chunks_answered_once"] and not r["failures"]
                   and not r["chunks_answered_more_than_once"] for r in (one, three, killed))
    checks = {"speedup >= 2.7": speedup >= 2.7, "kill: wall time <= 1.5x": slowdown <= 1.5,
              "every chunk generated and answered exactly once (servers' logs)": complete}

    print("| run | wall s | chunks/s | requests per server | answered per server | answered once | more than once | retries |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in (("1 server", one), ("3 servers", three),
                    (f"3 servers, one killed at {killed['killed_after_s']} s", killed)):
        print(f"| {name} | {r['seconds']} | {r['chunks_per_second']} | {r['requests_per_server']} | "
              f"{r['answered_per_server']} | {r['chunks_answered_once']}/{r['chunks']} | "
              f"{r['chunks_answered_more_than_once']} | {r['retries']} |")
    print(f"\nspeedup 3 vs 1: {speedup:.2f}x; killed vs not: {slowdown:.2f}x")
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}: {name}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(), "server": SERVER,
        "max_concurrency_per_server": args.max_concurrency, "runs": [one, three, killed],
        "speedup": round(speedup, 2), "killed_slowdown": round(slowdown, 2), "checks": checks,
    }, indent=2) + "\n")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
