"""Where a cold run's time goes, step by step (issue 18).

    .venv/bin/python benchmarks/bench_step_times.py --documents 100

The corpus of benchmarks/bench_incremental.py (documents made from sections of the
example corpus, model-free generation, a fresh instance and DuckDB): `run_all` (what
`make run` runs) once, then the time of each step of its runs from their own event log
(STEP_START to STEP_SUCCESS). Run it at several sizes to see what grows with the corpus
rather than with the document.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_incremental as corpus  # noqa: E402  (also sets the offline environment)
import dagster as dg  # noqa: E402

from synth_assets.checks import quality_checks  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=100)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    folder = work / "documents"
    folder.mkdir()
    sections = corpus.corpus_sections()
    for i in range(args.documents):
        corpus.write_document(folder, sections, i)
    defs = corpus.build_definitions(corpus.resources(work, folder, "pipeline"))
    with dg.instance_for_test() as instance:
        started = time.perf_counter()
        summary = corpus.run_all(defs, instance, show_progress=False)
        cold = time.perf_counter() - started
        steps = corpus.step_seconds(instance)
    print(f"cold, {args.documents} documents: {cold:.1f} s, {cold / args.documents:.3f} s a document, "
          f"{summary['pairs_kept']} pairs kept")
    check_names = {spec.name for checks in quality_checks for spec in checks.check_specs}
    checks = sum(seconds for step, seconds in steps.items() if any(step.endswith(name) for name in check_names))
    print(f"  the checks together: {checks:.1f} s; parsed_documents: {steps.get('parsed_documents', 0):.1f} s")
    for step, seconds in sorted(steps.items(), key=lambda item: -item[1]):
        print(f"  {step}: {seconds:.1f} s")


if __name__ == "__main__":
    main()
