"""A process that replaces one document's rows in a DuckDB file again and again.

    python benchmarks/duckdb_writer.py DATABASE DOCUMENT WRITES ROWS [HOLD_S]

Each write replaces the document's ROWS rows of generated_qa_pairs (tagged
prompt_version "write-<n>") through PipelineDatabase, holds the connection HOLD_S
seconds (as a real step does), and prints n once committed. Used to kill a process in
the middle of a write and to run several writers at once (tests and
bench_reliability.py).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_writer(database: Path, document: str, writes: int, rows: int, hold_s: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, str(database), document, str(writes), str(rows), str(hold_s)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def main(argv: list[str]) -> None:
    sys.path.insert(0, str(ROOT))
    import pandas as pd

    from synth_assets.resources.storage import PipelineDatabase
    from synth_assets.storage import GENERATED_QA_PAIRS_TABLE, replace_partition_rows

    database, document, writes, rows = argv[0], argv[1], int(argv[2]), int(argv[3])
    hold_s = float(argv[4]) if len(argv) > 4 else 0.0
    db = PipelineDatabase(database=database)
    for n in range(writes):
        frame = pd.DataFrame({
            "pair_id": [f"{document}#p{i}" for i in range(rows)],
            "document_id": document, "chunk_id": f"{document}#c0",
            "question": "Why?", "answer": "Because " * 20, "question_type": "why",
            "evidence": None, "generator": "test", "model": None,
            "prompt_version": f"write-{n}", "reasoning": None,
        })
        with db.get_connection() as con:
            replace_partition_rows(con, GENERATED_QA_PAIRS_TABLE, document, frame)
            time.sleep(hold_s)
        print(n, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
