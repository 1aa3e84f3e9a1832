"""The generation resource: one place that decides which backend writes the pairs."""

from __future__ import annotations

import os
from typing import Literal

import dagster as dg

from synth_assets.core.chunking import (
    DEFAULT_BUFFER_TOKENS,
    DEFAULT_GENERATION_TOKENS,
    DEFAULT_MAX_SEQ_LEN,
    DEFAULT_OVERLAP_TOKENS,
    chunk_size_for,
)
from synth_assets.generation.backends import ModelFreeBackend
from synth_assets.generation.base import GenerationBackend

GENERATION_BACKEND_ENV = "SYNTH_ASSETS_GENERATION_BACKEND"
GENERATION_MODEL_ENV = "SYNTH_ASSETS_MODEL"
PAIRS_PER_CHUNK_ENV = "SYNTH_ASSETS_PAIRS_PER_CHUNK"
DEFAULT_PAIRS_PER_CHUNK = 5


class GenerationResource(dg.ConfigurableResource):
    """Writes grounded question-answer pairs for chunks.

    The embedded default is the model-free backend, which runs anywhere. Every row
    records the backend, the model and the prompt version it came from.
    """

    backend: Literal["model_free"] = "model_free"
    model: str | None = None
    pairs_per_chunk: int = DEFAULT_PAIRS_PER_CHUNK
    # The model's context and the tokens it may write: they size the chunks
    # (chunk_size = max_seq_len - 2 x generation_tokens - buffer_tokens).
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN
    generation_tokens: int = DEFAULT_GENERATION_TOKENS
    buffer_tokens: int = DEFAULT_BUFFER_TOKENS
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS
    # Tokenizer used to size chunks; defaults to the model's own when it is local.
    tokenizer: str | None = None

    @classmethod
    def from_env(cls) -> "GenerationResource":
        return cls(
            backend=os.environ.get(GENERATION_BACKEND_ENV, "model_free"),
            model=os.environ.get(GENERATION_MODEL_ENV) or None,
            pairs_per_chunk=int(os.environ.get(PAIRS_PER_CHUNK_ENV, DEFAULT_PAIRS_PER_CHUNK)),
        )

    @property
    def chunk_tokens(self) -> int:
        return chunk_size_for(self.max_seq_len, self.generation_tokens, self.buffer_tokens)

    @property
    def tokenizer_name(self) -> str | None:
        return self.tokenizer or self.model

    def create_backend(self) -> GenerationBackend:
        if self.backend == "model_free":
            return ModelFreeBackend(pairs_per_chunk=self.pairs_per_chunk)
        raise dg.Failure(f"unknown generation backend {self.backend!r}")
