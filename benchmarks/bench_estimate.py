"""Cost estimate (issue 30): does an estimate from 5 documents predict a 50-document run?

The corpus (a temporary folder, 50 documents): the 11 example documents (PDF, Word,
PowerPoint, HTML, Markdown, AsciiDoc) and 39 Markdown and HTML documents of 1.5-25 KB
written from the sentences of examples/documents/wiki_duck.html (seeded: each its own
mix, so no chunk repeats another's). Against the simulated server
(benchmarks/sim_server.py as a process of its own, usage in every reply), with the
openai backend and the default settings (qa, judge off):

1. cold: `python -m synth_assets.run --estimate --sample 5` (what `make run
   ARGS=--estimate` runs) on an empty instance: no recorded run, so completion tokens
   are the documented defaults per item;
2. pilot: `make run` over the 5 sampled documents alone, in an instance of its own,
   then the same estimate on the 50 with that instance: completion tokens per request
   and the throughput now come from the recorded run;
3. the real run: `make run` over all 50 in a fresh instance, database and cache; the
   server's own counters (requests, prompt and completion tokens of every reply) are
   the truth the estimates are compared with; the summary's `model:` lines are
   checked against them too.

Target: with the pilot's record, requests, prompt tokens and completion tokens each
within +-20% of the run. The estimate is also made with sample seeds 1-4 (the same
pilot record) to show how much the draw of 5 documents matters.

    .venv/bin/python benchmarks/bench_estimate.py

Prints a Markdown table and writes benchmarks/results/estimate.json; exits 1 when the
target is missed. `--tasks qa=0.4,...` and `--judge` run the same with a task mix and the
LLM judge (results in estimate_tasks_judge.json).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.sim_server import start_server_process  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "estimate.json"
EXAMPLES = ROOT / "examples" / "documents"
SERVER = {"slots": 32, "ttft": 0.05, "tpot": 0.002, "output_tokens": 100}
TOLERANCE = 0.20
FIGURES = ("requests", "prompt_tokens", "completion_tokens")


def sentences() -> list[str]:
    """The prose sentences of the duck article (paragraph text, tags and references removed)."""
    page = (EXAMPLES / "wiki_duck.html").read_text(encoding="utf-8")
    found = []
    for paragraph in re.findall(r"<p>(.*?)</p>", page, flags=re.S):
        text = html.unescape(re.sub(r"<[^>]+>", "", paragraph))
        text = re.sub(r"\[\d+\]|\s+", " ", text).strip()
        found += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 6]
    return found


def write_corpus(folder: Path, n_documents: int, seed: int = 0) -> None:
    """The 11 examples and n_documents - 11 synthetic documents of varied sizes."""
    folder.mkdir(parents=True)
    examples = sorted(p for p in EXAMPLES.iterdir() if p.is_file() and not p.name.startswith("LICENSE"))
    for path in examples:
        shutil.copy(path, folder / path.name)
    pool = sentences()
    rng = random.Random(seed)
    for i in range(n_documents - len(examples)):
        target = int(1500 * (25_000 / 1500) ** rng.random())  # log-uniform 1.5-25 KB
        sections, size = [], 0
        while size < target:
            paragraphs = [" ".join(rng.sample(pool, rng.randint(2, 6))) for _ in range(rng.randint(1, 4))]
            sections.append((f"Part {len(sections) + 1}: {rng.choice(pool).split()[0:4][-1].strip(',.')}", paragraphs))
            size += sum(len(p) for p in paragraphs)
        title = f"Notes on ducks {i + 1}"
        if i % 3 == 2:
            body = "".join(f"<h2>{html.escape(h)}</h2>" + "".join(f"<p>{html.escape(p)}</p>" for p in ps)
                           for h, ps in sections)
            (folder / f"notes_{i + 1:02d}.html").write_text(
                f"<html><head><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>",
                encoding="utf-8")
        else:
            body = "\n\n".join(f"## {h}\n\n" + "\n\n".join(ps) for h, ps in sections)
            (folder / f"notes_{i + 1:02d}.md").write_text(f"# {title}\n\n{body}\n", encoding="utf-8")


def environment(work: Path, name: str, documents: Path, base_url: str, extra: dict[str, str]) -> dict[str, str]:
    """A fresh instance, database, cache and export folder under work/name."""
    home = work / name / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SYNTH_ASSETS_DOCUMENTS_DIR": str(documents),
        "SYNTH_ASSETS_DUCKDB_PATH": str(work / name / "pipeline.duckdb"),
        "SYNTH_ASSETS_GENERATION_CACHE": str(work / name / "cache.duckdb"),
        "SYNTH_ASSETS_EXPORT_DIR": str(work / name / "exports"),
        "SYNTH_ASSETS_GENERATION_BACKEND": "openai",
        "SYNTH_ASSETS_MODEL": "sim-model",
        "SYNTH_ASSETS_OPENAI_BASE_URL": base_url,
        "SYNTH_ASSETS_PRICE_PER_HOUR": "2.0",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "GX_ANALYTICS_ENABLED": "False", "DAGSTER_DISABLE_TELEMETRY": "1",
        **extra,
    }


def synth_run(env: dict[str, str], *args: str) -> tuple[str, float]:
    """`python -m synth_assets.run ARGS` (what `make run ARGS=...` runs): its stdout and seconds.
    A run may exit 1 (no dataset published: a check); an estimate must exit 0."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "synth_assets.run", "--no-progress", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - started
    if done.returncode not in ((0,) if "--estimate" in args else (0, 1)) or "model:" not in done.stdout and \
            "--estimate" not in args:
        raise SystemExit(f"synth_assets.run {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-2000:]}"
                         f"\n{done.stderr[-3000:]}")
    return done.stdout, seconds


def estimated(output: str) -> dict[str, float]:
    """The figures of an --estimate printout."""
    figures = {}
    for name, label in (("requests", "requests"), ("prompt_tokens", "prompt tokens"),
                        ("completion_tokens", "completion tokens"), ("chunks", "chunks")):
        match = re.search(rf"^\s+{label}:\s+~([\d,]+)", output, flags=re.M)
        figures[name] = float(match.group(1).replace(",", ""))
    seconds = re.search(r"time:\s+~(\d+):(\d+):(\d+)", output)
    figures["seconds"] = (int(seconds[1]) * 3600 + int(seconds[2]) * 60 + int(seconds[3])) if seconds else None
    return figures


def sampled_names(folder: Path, sample: int, seed: int) -> list[str]:
    """The documents the estimate sampled (the same function, on the same folder)."""
    from synth_assets.core.estimate import sample_documents, text_size

    files = sorted(p for p in folder.iterdir() if p.is_file())
    return sample_documents({p.name: text_size(p) for p in files}, sample, seed)


def sampling_spread(corpus: Path, home: Path, sample: int, draws: int = 1000) -> dict:
    """How far a draw of `sample` documents can land, from the sampling alone: the real
    run's own counts per document (its generated_qa_pairs' model_usage) scaled as the
    estimate scales its sample, over `draws` seeds. Percentiles of estimate / truth."""
    import dagster as dg

    from synth_assets.assets.generate import latest_generation_metadata
    from synth_assets.core.estimate import SampledDocument, sample_documents, text_size, weights

    files = sorted(p for p in corpus.iterdir() if p.is_file())
    sizes = {p.name: text_size(p) for p in files}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        metadata = latest_generation_metadata(instance, list(sizes))
    counts = {key: {f: sum(c[f] for c in (metadata[key]["model_usage"].value
                                           if key in metadata and "model_usage" in metadata[key] else {}).values())
                    for f in FIGURES} for key in sizes}
    truth = {f: sum(c[f] for c in counts.values()) for f in FIGURES}
    ratios: dict[str, list[float]] = {f: [] for f in FIGURES}
    for seed in range(draws):
        keys = sample_documents(sizes, sample, seed)
        weight = weights([SampledDocument(key, sizes[key]) for key in keys], sum(sizes.values()), len(sizes))
        for f in FIGURES:
            ratios[f].append(sum(counts[key][f] * weight[key] for key in keys) / truth[f])
    spread = {}
    for f, values in ratios.items():
        values.sort()
        spread[f] = {"mean": round(sum(values) / draws, 3), "median": round(values[draws // 2], 3),
                     "p5": round(values[draws // 20], 3), "p95": round(values[draws - draws // 20 - 1], 3),
                     "within_20_percent": round(sum(abs(v - 1) <= TOLERANCE for v in values) / draws, 3)}
    return {"draws": draws, **spread}


def usage_block(summary: str) -> str:
    """The summary's `model:` line and the lines under it."""
    lines = summary.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  model:"))
    end = start + 1
    while end < len(lines) and lines[end].startswith(" " * 19):
        end += 1
    return "\n".join(lines[start:end])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=50)
    parser.add_argument("--sample", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=5, help="sample seeds 0..N-1 (the pilot is seed 0's sample)")
    parser.add_argument("--tasks", default=None, help="SYNTH_ASSETS_TASKS for every run (default: qa only)")
    parser.add_argument("--judge", action="store_true", help="SYNTH_ASSETS_USE_JUDGE=1 for every run")
    args = parser.parse_args(argv)
    extra = {**({"SYNTH_ASSETS_TASKS": args.tasks} if args.tasks else {}),
             **({"SYNTH_ASSETS_USE_JUDGE": "1"} if args.judge else {})}
    results = RESULTS.with_name(f"estimate{'_tasks' if args.tasks else ''}{'_judge' if args.judge else ''}.json")
    work = Path(tempfile.mkdtemp(prefix="bench_estimate_"))
    corpus = work / "corpus"
    write_corpus(corpus, args.documents)
    sample = sampled_names(corpus, args.sample, 0)
    pilot_folder = work / "pilot_corpus"
    pilot_folder.mkdir()
    for name in sample:
        shutil.copy(corpus / name, pilot_folder / name)
    result: dict = {"documents": args.documents, "sample": args.sample, "sampled_seed_0": sample,
                    "corpus_bytes": sum(p.stat().st_size for p in corpus.iterdir()), "server": SERVER,
                    "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"}
    base_url, stats, stop = start_server_process(**SERVER)
    try:
        cold_env = environment(work, "cold", corpus, base_url, extra)
        cold_output, cold_seconds = synth_run(cold_env, "--estimate", "--sample", str(args.sample))
        result["cold"] = {**estimated(cold_output), "wall_seconds": round(cold_seconds, 1), "output": cold_output}
        pilot_env = environment(work, "pilot", pilot_folder, base_url, extra)
        before = stats()
        pilot_output, pilot_seconds = synth_run(pilot_env)
        after = stats()
        result["pilot"] = {"wall_seconds": round(pilot_seconds, 1), "summary": pilot_output,
                           **{f: after[f] - before[f] for f in FIGURES}}
        estimate_env = {**pilot_env, "SYNTH_ASSETS_DOCUMENTS_DIR": str(corpus)}
        result["estimates"] = {}
        for seed in range(args.seeds):
            output, seconds = synth_run(estimate_env, "--estimate", "--sample", str(args.sample), "--seed", str(seed))
            result["estimates"][seed] = {**estimated(output), "wall_seconds": round(seconds, 1),
                                         "sampled": sampled_names(corpus, args.sample, seed)}
            if seed == 0:
                result["estimate_output"] = output
        full_env = environment(work, "full", corpus, base_url, extra)
        before = stats()
        run_output, run_seconds = synth_run(full_env)
        after = stats()
        result["run"] = {"wall_seconds": round(run_seconds, 1), "summary": run_output,
                         **{f: after[f] - before[f] for f in FIGURES}}
        generation = re.search(r"generation: ([\d.]+) s", run_output)
        result["run"]["generation_seconds"] = float(generation[1]) if generation else None
        result["draws"] = sampling_spread(corpus, Path(full_env["DAGSTER_HOME"]), args.sample)
    finally:
        stop()
        shutil.rmtree(work, ignore_errors=True)

    actual = result["run"]
    result["ratios"] = {seed: {f: round(e[f] / actual[f], 3) for f in FIGURES} for seed, e in result["estimates"].items()}
    result["cold_ratios"] = {f: round(result["cold"][f] / actual[f], 3) for f in FIGURES}
    # The summary's own figures (what the pipeline recorded) against the server's.
    summary_line = re.search(r"model:\s+(\d+) requests, (\d+) prompt \+ (\d+) completion tokens", actual["summary"])
    result["summary_matches_server"] = bool(summary_line) and tuple(map(int, summary_line.groups())) == tuple(
        actual[f] for f in FIGURES)
    passed = all(abs(ratio - 1) <= TOLERANCE for ratio in result["ratios"][0].values()) and result["summary_matches_server"]
    result["passed"] = passed
    result["settings"] = extra
    results.parent.mkdir(exist_ok=True)
    results.write_text(json.dumps(result, indent=2))

    print(f"| estimate | sampled | requests | prompt tokens | completion tokens |\n| --- | --- | ---: | ---: | ---: |")
    print(f"| the run (server's counters) | all {args.documents} | {actual['requests']} | {actual['prompt_tokens']} "
          f"| {actual['completion_tokens']} |")
    cold = result["cold"]
    print(f"| cold (no recorded run), seed 0 | {', '.join(sample)} | {cold['requests']:.0f} ({cold['requests'] / actual['requests']:.2f}) "
          f"| {cold['prompt_tokens']:.0f} ({cold['prompt_tokens'] / actual['prompt_tokens']:.2f}) "
          f"| {cold['completion_tokens']:.0f} ({cold['completion_tokens'] / actual['completion_tokens']:.2f}) |")
    for seed, e in result["estimates"].items():
        ratio = result["ratios"][seed]
        print(f"| after the pilot, seed {seed} | {', '.join(e['sampled'])} | {e['requests']:.0f} ({ratio['requests']:.2f}) "
              f"| {e['prompt_tokens']:.0f} ({ratio['prompt_tokens']:.2f}) "
              f"| {e['completion_tokens']:.0f} ({ratio['completion_tokens']:.2f}) |")
    print(f"\nestimated time (seed 0): {result['estimates'][0]['seconds']} s of generation; the run's generation: "
          f"{actual['generation_seconds']} s ({actual['wall_seconds']} s wall for the whole make run) "
          f"(pilot {result['pilot']['wall_seconds']} s); summary's model figures equal the server's: "
          f"{result['summary_matches_server']}")
    draws = result["draws"]
    print(f"\nthe sampling alone, over {draws['draws']} draws of {args.sample} (the run's own counts per document, "
          "scaled as the estimate scales): estimate / truth")
    print("| figure | mean | median | 5th percentile | 95th percentile | draws within 20% |\n| --- | ---: | ---: | ---: | ---: | ---: |")
    for f in FIGURES:
        d = draws[f]
        print(f"| {f} | {d['mean']} | {d['median']} | {d['p5']} | {d['p95']} | {d['within_20_percent']:.0%} |")
    print("\n" + result["estimate_output"])
    print(usage_block(actual["summary"]))
    print("\nPASS" if passed else "\nFAIL: an estimate is off by more than 20% (seed 0) or the summary is not the server's")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
