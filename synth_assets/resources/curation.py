"""Thresholds of the QA filters."""

from __future__ import annotations

import dagster as dg

from synth_assets.core.filters import FilterConfig

_DEFAULTS = FilterConfig()


class CurationResource(dg.ConfigurableResource):
    """Which generated pairs are good enough to train on (rejects are kept with reasons)."""

    min_question_chars: int = _DEFAULTS.min_question_chars
    max_question_chars: int = _DEFAULTS.max_question_chars
    min_answer_chars: int = _DEFAULTS.min_answer_chars
    max_answer_chars: int = _DEFAULTS.max_answer_chars
    min_grounding: float = _DEFAULTS.min_grounding
    min_stopword_ratio: float = _DEFAULTS.min_stopword_ratio
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

    def filter_config(self) -> FilterConfig:
        return FilterConfig(
            min_question_chars=self.min_question_chars,
            max_question_chars=self.max_question_chars,
            min_answer_chars=self.min_answer_chars,
            max_answer_chars=self.max_answer_chars,
            min_grounding=self.min_grounding,
            min_stopword_ratio=self.min_stopword_ratio,
        )
