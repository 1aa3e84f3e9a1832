"""How busy the pipeline keeps one (simulated) GPU server, end to end.

The process_documents job runs as one single-run backfill with the `openai`
backend against the simulated server (benchmarks/sim_server.py, in its own process:
S slots, ttft + output_tokens * tpot seconds a sequence, 5% HTTP 500): parsing and
chunking once, then generated_qa_pairs and filtered_qa_pairs (with their checks) on
a copy per judge setting, with an empty generation cache. The server
records when the first chat request came and when the last answer left; between the
two lie generation, the steps in between (writing pairs, checks, the cheap filters)
and, with the judge on, judging. Efficiency = total sequence time / S / that span.

Corpora: the 11 example documents as they are, and 200 Markdown documents made from
them (the examples' text converted once, each copy under its own title line and with
its paragraphs marked, so that no two copies share a chunk).

    .venv/bin/python benchmarks/bench_pipeline_gpu.py            # every scenario
    .venv/bin/python benchmarks/bench_pipeline_gpu.py --documents 11 --judge on

Prints a Markdown table and writes benchmarks/results/pipeline_gpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import dagster as dg  # noqa: E402

from benchmarks.sim_server import start_server_process  # noqa: E402
from synth_assets.core.parsing import parse_document  # noqa: E402
from synth_assets.definitions import build_definitions  # noqa: E402
from synth_assets.jobs import PROCESS_DOCUMENTS_JOB  # noqa: E402
from synth_assets.partitions import DOCUMENTS_PARTITIONS_NAME  # noqa: E402
from synth_assets.planning import range_tags  # noqa: E402
from synth_assets.resources.curation import CurationResource  # noqa: E402
from synth_assets.resources.documents import DocumentsFolder  # noqa: E402
from synth_assets.resources.export import ExportSettings  # noqa: E402
from synth_assets.resources.generation import GenerationResource  # noqa: E402
from synth_assets.resources.storage import PipelineDatabase  # noqa: E402

EXAMPLES = ROOT / "examples" / "documents"
RESULTS = ROOT / "benchmarks" / "results" / "pipeline_gpu.json"


def example_files() -> list[Path]:
    return sorted(p for p in EXAMPLES.iterdir() if not p.name.startswith(("LICENSE", ".")))


def make_corpus(folder: Path, documents: int) -> None:
    """The example documents as they are (11), or `documents` Markdown files cycling
    through their text, each under its own title (so the first chunk differs)."""
    folder.mkdir(parents=True)
    files = example_files()
    if documents == len(files):
        for path in files:
            (folder / path.name).write_bytes(path.read_bytes())
        return
    texts = [(path.stem, parse_document(path).document.export_to_markdown()) for path in files]
    for index in range(documents):
        stem, text = texts[index % len(texts)]
        # Every paragraph marked with its copy, so no chunk (and no judge prompt, which
        # shows the chunk) is the same in two copies: the cache would answer repeats.
        marked = re.sub(r"\n\n(?=[A-Za-z])", f"\n\nIn copy {index}, ", text)
        (folder / f"doc{index:03d}_{stem}.md").write_text(f"# {stem}, copy {index}\n\n{marked}\n")


UPSTREAM = ["raw_documents", "parsed_documents", "document_chunks"]
# Everything from the first request to the last: generation, its checks, curation.
MEASURED = ["generated_qa_pairs", "filtered_qa_pairs"]


def resources_for(tmp_path: Path, database: Path, base_url: str, judge: bool) -> dict:
    return {
        "documents": DocumentsFolder(path=str(tmp_path / "documents")),
        "duckdb": PipelineDatabase(database=str(database)),
        "generation": GenerationResource(backend="openai", model="sim-model", base_url=base_url,
                                         cache_path=str(database.with_suffix(".cache.duckdb"))),
        "curation": CurationResource(use_judge=judge),
        "export": ExportSettings(export_dir=str(tmp_path / "exports")),
    }


def execute(resources: dict, assets: list[str]) -> tuple[bool, float]:
    keys = sorted(resources["documents"].discover())
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(DOCUMENTS_PARTITIONS_NAME, keys)
        job = build_definitions(resources).resolve_job_def(PROCESS_DOCUMENTS_JOB)
        started = time.perf_counter()
        result = job.execute_in_process(instance=instance, tags=range_tags(keys[0], keys[-1]), raise_on_error=False,
                                        asset_selection=[dg.AssetKey(name) for name in assets])
        return result.success, time.perf_counter() - started


def run_corpus(documents: int, judges: list[str], args: argparse.Namespace) -> list[dict]:
    """Parse and chunk the corpus once, then generate and curate a copy of it per judge
    setting, each against a fresh server and an empty cache."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_gpu_") as tmp:
        tmp_path = Path(tmp)
        make_corpus(tmp_path / "documents", documents)
        chunked = tmp_path / "chunked.duckdb"
        ok, _ = execute(resources_for(tmp_path, chunked, "http://127.0.0.1:9/v1", False), UPSTREAM)
        assert ok, "parsing and chunking the corpus failed"
        for judge in judges:
            database = tmp_path / f"judge_{judge}.duckdb"
            shutil.copy(chunked, database)
            base_url, server_stats, stop = start_server_process(
                slots=args.slots, ttft=args.ttft, tpot=args.tpot, output_tokens=args.output_tokens,
                fail_500=args.fail_500)
            try:
                ok, wall = execute(resources_for(tmp_path, database, base_url, judge == "on"), MEASURED)
                server = server_stats()
            finally:
                stop()
            span = server["last_answer_at"] - server["first_request_at"]
            ideal = server["total_sequence_s"] / args.slots
            row = {
                "documents": documents, "judge": judge, "run_succeeded": ok,
                "chat_requests": server["requests"], "sequences": server["sequences"],
                "outcomes": server["outcomes"], "sequence_s": round(server["total_sequence_s"], 1),
                "ideal_s": round(ideal, 2), "span_s": round(span, 2), "efficiency": round(ideal / span, 3),
                "steps_wall_s": round(wall, 1),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, choices=(11, 200), action="append",
                        help="corpus size (repeatable; default both)")
    parser.add_argument("--judge", choices=("on", "off"), action="append", help="default both")
    parser.add_argument("--slots", type=int, default=32)
    parser.add_argument("--ttft", type=float, default=0.05)
    parser.add_argument("--tpot", type=float, default=0.01)
    parser.add_argument("--output-tokens", type=int, default=100)
    parser.add_argument("--fail-500", type=float, default=0.05)
    args = parser.parse_args()
    rows = []
    for documents in args.documents or (200, 11):
        rows += run_corpus(documents, args.judge or ["on", "off"], args)
    print()
    print("| documents | judge | chat requests | sequence-s | ideal (/S) s | span s | efficiency | steps wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['documents']} | {row['judge']} | {row['chat_requests']} | {row['sequence_s']} | "
              f"{row['ideal_s']} | {row['span_s']} | {row['efficiency']} | {row['steps_wall_s']} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"setup": vars(args), "runs": rows}, indent=2, default=str) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
