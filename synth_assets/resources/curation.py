"""Curation settings: the thresholds of the QA filters, the optional judge and embeddings
(declared once, in core.filters.FilterConfig), and the gates of the quality checks.

Every field is set from the environment variable SYNTH_ASSETS_<FIELD NAME> (settings.py).
"""

from __future__ import annotations

import hashlib
import json

import dagster as dg
import pydantic

from synth_assets.core.filters import FilterConfig


class CurationResource(dg.ConfigurableResource, FilterConfig):
    """Which generated pairs are good enough to train on (rejects are kept with reasons)."""

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
    # Coverage warning (core/coverage.py): a document whose kept items draw on less than
    # this share of its non-boilerplate chunks. None: no check (a short document or a
    # strict filter can leave chunks uncovered for good reasons).
    min_coverage: float | None = pydantic.Field(default=None, ge=0.0, le=1.0)
    # Preference pairs (core/preference.py, docs/EXPORTS.md): each question of a qa item
    # is also answered without its source (a closed-book request, batched with the judge's;
    # without a model, a stand-in from another chunk), that answer filtered against the
    # item's chunk, and one the filters reject kept as the `rejected` side of a pair whose
    # `chosen` is the kept, grounded answer. Off: no request more, nothing changes.
    preference_pairs: bool = False

    def filter_config(self) -> FilterConfig:
        return FilterConfig(**self.model_dump(include=set(FilterConfig.model_fields)))

    def output_version(self) -> str:
        """A hash of the settings that decide which pairs are kept. Part of
        filtered_qa_pairs' code version, so changing a threshold marks that asset and
        its downstream stale (the gate settings only change what the checks say)."""
        settings = self.filter_config().model_dump()
        if self.preference_pairs:  # off keeps the versions it always had
            settings["preference_pairs"] = True
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
