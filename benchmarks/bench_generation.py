"""How well the openai backend keeps one (simulated) GPU busy.

The simulated server (benchmarks/sim_server.py, in its own process) runs at most S
sequences at once, each ttft + output_tokens * tpot seconds. With perfect batching the
wall time is the total sequence time / S; efficiency = that ideal / the measured wall
time. Three runs over the chunks of the example corpus (repeated to give many waves):

1. concurrent: the backend's default max_concurrency against S slots;
2. sequential: max_concurrency=1 on a subset, extrapolated to the full set (a full
   sequential run would take minutes and says nothing more);
3. faults: 10% HTTP 500 and 10% malformed replies; every chunk must end generated or
   recorded as failed.

    .venv/bin/python benchmarks/bench_generation.py

Prints a Markdown table and writes benchmarks/results/generation.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from benchmarks.sim_server import start_server_process  # noqa: E402
from synth_assets.generation.base import GenerationOutcome, GenerationRequest  # noqa: E402
from synth_assets.generation.openai_backend import OpenAIBackend  # noqa: E402

DOCUMENTS = ROOT / "examples" / "documents"
RESULTS = ROOT / "benchmarks" / "results" / "generation.json"
FORMATS = (".md", ".html", ".docx")


def corpus_chunks() -> tuple[list[GenerationRequest], str]:
    """Chunks of the example documents: the pipeline's chunker if it works here, else
    docling markdown split into ~2500-character paragraph groups."""
    files = sorted(p for p in DOCUMENTS.iterdir()
                   if p.suffix.lower() in FORMATS and not p.name.startswith("LICENSE"))
    try:
        from synth_assets.core.chunking import (
            DEFAULT_BUFFER_TOKENS, DEFAULT_GENERATION_TOKENS, DEFAULT_MAX_SEQ_LEN,
            chunk_document, chunk_size_for, load_tokenizer,
        )
        from synth_assets.core.parsing import parse_document

        tokenizer, _ = load_tokenizer(None)
        size = chunk_size_for(DEFAULT_MAX_SEQ_LEN, DEFAULT_GENERATION_TOKENS, DEFAULT_BUFFER_TOKENS)
        requests = []
        for path in files:
            for chunk in chunk_document(parse_document(path).document, tokenizer=tokenizer, max_tokens=size):
                if not chunk.boilerplate:
                    requests.append(GenerationRequest(path.stem, f"{path.stem}#{chunk.chunk_index}",
                                                      chunk.text, tuple(chunk.headings), path.stem))
        return requests, f"synth_assets.core.chunking ({size} tokens, prose chunks)"
    except Exception as error:  # the chunker is being rewritten elsewhere: fall back
        print(f"(pipeline chunker unavailable: {type(error).__name__}: {error}; splitting paragraphs)")
    from docling.document_converter import DocumentConverter

    converter = DocumentConverter()
    requests = []
    for path in files:
        markdown = converter.convert(path).document.export_to_markdown()
        chunk, index = "", 0
        for paragraph in re.split(r"\n\s*\n", markdown):
            if chunk and len(chunk) + len(paragraph) > 2500:
                requests.append(GenerationRequest(path.stem, f"{path.stem}#{index}", chunk, (), path.stem))
                chunk, index = "", index + 1
            chunk = f"{chunk}\n\n{paragraph}".strip()
        if chunk:
            requests.append(GenerationRequest(path.stem, f"{path.stem}#{index}", chunk, (), path.stem))
    return requests, "docling markdown, ~2500-character paragraph groups"


def replicate(requests: list[GenerationRequest], copies: int) -> list[GenerationRequest]:
    """The corpus `copies` times; the title differs per copy so every prompt is distinct."""
    return [
        GenerationRequest(r.document_id, f"{r.chunk_id}~{copy}", r.text, r.headings,
                          f"{r.title} (copy {copy})")
        for copy in range(copies)
        for r in requests
    ]


def run(requests: list[GenerationRequest], slots: int, max_concurrency: int,
        server_options: dict, backend_options: dict | None = None) -> tuple[GenerationOutcome, dict, float]:
    """One generate() against a fresh server process; returns outcome, server stats, wall s."""
    base_url, server_stats, stop = start_server_process(slots=slots, **server_options)
    try:
        backend = OpenAIBackend(base_url=base_url, model="sim-model", pairs_per_chunk=5,
                                max_tokens=512, max_concurrency=max_concurrency,
                                **(backend_options or {}))
        started = time.perf_counter()
        outcome = backend.generate(requests)
        wall = time.perf_counter() - started
        return outcome, server_stats(), wall
    finally:
        stop()


def summarise(name: str, requests: list[GenerationRequest], outcome: GenerationOutcome,
              server: dict, wall: float, slots: int) -> dict:
    ideal = server["total_sequence_s"] / slots
    generated = {p.chunk_id for p in outcome.pairs}
    failed = {f.chunk_id for f in outcome.failures}
    lost = {r.chunk_id for r in requests} - generated - failed
    return {
        "run": name,
        "chunks": len(requests),
        "generated_chunks": len(generated),
        "failed_chunks": len(failed),
        "lost_chunks": len(lost),
        "pairs": len(outcome.pairs),
        "wall_s": round(wall, 3),
        "ideal_wall_s": round(ideal, 3),
        "efficiency": round(ideal / wall, 3),
        "chunks_per_s": round(len(requests) / wall, 2),
        "server_peak_active": server["peak_active"],
        "server_peak_in_flight": server["peak_in_flight"],
        "client_peak_in_flight": outcome.stats["peak_in_flight"],
        "http_requests": outcome.stats["requests"],
        "retries": outcome.stats["retries"],
        "server_outcomes": server["outcomes"],
        "completion_tokens_per_s": outcome.stats["completion_tokens_per_second"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slots", type=int, default=32)
    parser.add_argument("--ttft", type=float, default=0.05)
    parser.add_argument("--tpot", type=float, default=0.002)
    parser.add_argument("--output-tokens", type=int, default=100)
    parser.add_argument("--copies", type=int, default=0,
                        help="repeat the corpus this many times (0: enough for ~20 waves of S)")
    parser.add_argument("--sequential-chunks", type=int, default=40)
    parser.add_argument("--max-concurrency", type=int, default=64, help="the backend's default")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    base, chunker = corpus_chunks()
    copies = args.copies or max(1, -(-20 * args.slots // len(base)))
    # A whole number of waves of S: otherwise the last, partial wave alone keeps the
    # ideal (total / S) out of reach.
    requests = replicate(base, copies)
    requests = requests[: len(requests) // args.slots * args.slots or len(requests)]
    timing = {"ttft": args.ttft, "tpot": args.tpot, "output_tokens": args.output_tokens}
    print(f"{len(base)} chunks from {DOCUMENTS.relative_to(ROOT)} ({chunker}) x {copies} copies, "
          f"{len(requests)} requests (whole waves); S={args.slots}, sequence = {args.ttft} + "
          f"{args.output_tokens} x {args.tpot} s")

    rows = []
    outcome, server, wall = run(requests, args.slots, args.max_concurrency, timing)
    concurrent = summarise("concurrent", requests, outcome, server, wall, args.slots)
    rows.append(concurrent)

    subset = requests[: args.sequential_chunks]
    outcome, server, wall = run(subset, args.slots, 1, timing)
    sequential = summarise(f"sequential ({len(subset)} chunks)", subset, outcome, server, wall, args.slots)
    sequential["extrapolated_wall_s"] = round(wall * len(requests) / len(subset), 2)
    rows.append(sequential)
    speedup = concurrent["chunks_per_s"] / sequential["chunks_per_s"]

    faults = {"fail_500": 0.1, "malformed": 0.1}
    outcome, server, wall = run(requests, args.slots, args.max_concurrency, {**timing, **faults})
    faulty = summarise("10% HTTP 500 + 10% malformed", requests, outcome, server, wall, args.slots)
    ok_sequences = server["outcomes"].get("ok", 0)
    faulty["useful_efficiency"] = round(
        ok_sequences * (args.ttft + args.output_tokens * args.tpot) / args.slots / wall, 3)
    faulty["failures"] = [f.__dict__ for f in outcome.failures]
    rows.append(faulty)
    assert faulty["lost_chunks"] == 0, "a chunk ended neither generated nor failed"
    assert concurrent["lost_chunks"] == 0 and concurrent["failed_chunks"] == 0

    print()
    print("| run | chunks | wall s | ideal s | efficiency | peak active (server) | "
          "peak in flight (client) | HTTP requests | generated | failed | lost |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['run']} | {row['chunks']} | {row['wall_s']} | {row['ideal_wall_s']} | "
              f"{row['efficiency']} | {row['server_peak_active']} | {row['client_peak_in_flight']} | "
              f"{row['http_requests']} | {row['generated_chunks']} | {row['failed_chunks']} | "
              f"{row['lost_chunks']} |")
    print()
    print(f"throughput vs one request at a time: {speedup:.1f}x "
          f"({concurrent['chunks_per_s']} vs {sequential['chunks_per_s']} chunks/s; sequential full "
          f"run extrapolated from {len(subset)} chunks: {sequential['extrapolated_wall_s']} s)")
    print(f"fault run: useful-work efficiency {faulty['useful_efficiency']} "
          f"(server outcomes {faulty['server_outcomes']}), retries {faulty['retries']}")
    targets = {"efficiency>=0.9": concurrent["efficiency"] >= 0.9, "speedup>=20x": speedup >= 20}
    print(f"targets: {targets}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "setup": {"slots": args.slots, **timing, "client_max_concurrency": args.max_concurrency,
                  "corpus_chunks": len(base), "copies": copies, "chunker": chunker,
                  "sequential_subset": len(subset), "python": platform.python_version(),
                  "cpus": os.cpu_count()},
        "runs": rows,
        "speedup_vs_sequential": round(speedup, 2),
        "targets_met": targets,
    }, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
