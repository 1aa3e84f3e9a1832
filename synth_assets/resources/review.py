"""Experts in the loop: how many pairs a document's review sample holds, where the
review page listens, and the folder of human-labelled data mixed into the dataset."""

from __future__ import annotations

import dagster as dg

DEFAULT_REVIEW_PAGE_URL = "http://127.0.0.1:8765"


class ReviewSettings(dg.ConfigurableResource):
    """The review sample per document (uncertain pairs first, plus a random share so the
    precision and recall measured on it stay unbiased), the review page's address, and
    human-labelled examples mixed into the training dataset."""

    # Pairs picked for review per document (kept and rejected pairs together); 0 turns
    # the review sample off.
    sample_size: int = 8
    # Share of the sample drawn at random rather than by uncertainty.
    random_share: float = 0.25
    seed: int = 42
    # Where `make review` serves the review page (linked from review_sample's metadata).
    page_url: str = DEFAULT_REVIEW_PAGE_URL
    # The NAME of the environment variable holding the reviewers' password; set, every
    # request signs in with HTTP basic auth (the user name is the reviewer's name, the
    # password this one). Required when page_url is not a loopback address, where
    # anyone on the network could otherwise write verdicts. The password is never kept here.
    password_env: str | None = None
    # Host names the page answers to besides page_url's (and, when that is loopback,
    # localhost's): those a reverse proxy forwards unchanged. Any other Host header is
    # refused, so a web page cannot reach the review page through a name it controls.
    allowed_hosts: list[str] = []
    # Seconds a request waits for the database while a run writes it; then a read asks
    # to reload and a verdict is refused, not saved, with the typed text kept.
    lock_wait_s: float = 5.0
    # A folder of Alpaca, ShareGPT or messages files (.json/.jsonl) written by people;
    # None: no human data.
    human_data_dir: str | None = None
    # Human rows per synthetic row of the train split, where human rows go (0.25: one human
    # row for four synthetic ones, a seeded pick when there are more, all when fewer);
    # None: every valid human row.
    human_ratio: float | None = None
