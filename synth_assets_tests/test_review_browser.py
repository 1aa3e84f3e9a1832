"""The review page as an expert uses it, in headless Chromium, end to end: the real
pipeline samples two example documents, the expert accepts one pair, edits one and
rejects one through the page's forms, and the next training dataset has the edit, lacks
the rejected pair, and its card counts the verdicts.

Chromium is found, or the test skipped, as in test_ui_browser.py; the screenshot goes
where that file's go (docs/screenshots/ with SYNTH_ASSETS_UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import httpx
import pytest

from synth_assets.definitions import build_definitions
from synth_assets.jobs import BUILD_TRAINING_DATASET_JOB, PROCESS_DOCUMENTS_JOB
from synth_assets.resources.curation import CurationResource
from synth_assets.resources.documents import DocumentsFolder
from synth_assets.resources.export import ExportSettings
from synth_assets.resources.generation import GenerationResource
from synth_assets.resources.review import ReviewSettings
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.core.shards import read_split
from synth_assets.run import run_all
from synth_assets.storage import REVIEW_SAMPLE_TABLE, REVIEW_VERDICTS_TABLE
from synth_assets_tests.conftest import EXAMPLE_DOCUMENTS
from synth_assets_tests.test_ui_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    _free_port,
    _require_chromium,
    _screenshot,
)

pytestmark = pytest.mark.browser

DOCUMENTS = ["wiki.md", "word_sample.docx"]
REVIEWED = "wiki.md"
REVIEWER = "Ada Expert"
EDITED_ANSWER = "An answer corrected by the expert."
REJECT_REASON = "the passage does not support this"


def exported_rows(export_dir: Path) -> list[dict]:
    """Every Alpaca row of an export, train and validation."""
    return [row for split in ("train", "validation") for row in read_split(export_dir, "alpaca", split).to_dict("records")]


def latest_export(instance: dg.DagsterInstance) -> Path:
    event = instance.get_latest_materialization_event(dg.AssetKey("training_dataset"))
    return Path(event.asset_materialization.metadata["export_dir"].value)


@pytest.fixture
def review_page(tmp_path):
    """The page (what `make review` runs) on a free port, against `tmp_path`'s database."""
    _require_chromium()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SYNTH_ASSETS_DUCKDB_PATH": str(tmp_path / "synth_assets.duckdb"),
           "SYNTH_ASSETS_REVIEW_PAGE_URL": url}
    log = (tmp_path / "review_page.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "synth_assets.review_page"], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield url, server, tmp_path / "review_page.log"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def saved(pair_id: str):
    """The page's URL after a verdict on `pair_id` (ids hold '#': they are URL-encoded)."""
    return lambda url: parse_qs(urlsplit(url).query).get("saved") == [pair_id]


def section(page, pair_id: str):
    return page.locator(f'[id="pair-{pair_id}"]')


def wait_until_serving(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the review page did not start:\n" + log.read_text()[-3000:])
        time.sleep(0.5)


def test_an_expert_accepts_edits_and_rejects_and_the_next_dataset_follows(tmp_path, review_page, instance) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, server, log = review_page
    documents = tmp_path / "documents"
    documents.mkdir()
    for name in DOCUMENTS:
        shutil.copy(EXAMPLE_DOCUMENTS / name, documents / name)
    database = PipelineDatabase(database=str(tmp_path / "synth_assets.duckdb"))
    defs = build_definitions({
        "documents": DocumentsFolder(path=str(documents)), "duckdb": database,
        "generation": GenerationResource(), "curation": CurationResource(),
        "export": ExportSettings(export_dir=str(tmp_path / "exports")), "review": ReviewSettings(page_url=url),
    })
    first = run_all(defs, instance, show_progress=False)  # every asset, the review sample included
    assert first["export_ok"], first
    before = {(row["instruction"], row["output"]) for row in exported_rows(Path(first["export_dir"]))}
    with database.get_connection() as con:
        kept = con.execute(f"SELECT pair_id, question, answer FROM {REVIEW_SAMPLE_TABLE} WHERE document_id = ? "
                           "AND status = 'kept' ORDER BY priority DESC, pair_id", [REVIEWED]).fetchall()
    assert len(kept) >= 3, kept
    (accepted, *_), (edited, edited_question, edited_answer), (rejected, rejected_question, _) = kept[:3]
    assert {(edited_question, edited_answer), (rejected_question, kept[2][2])} <= before

    wait_until_serving(url, server, log)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url)
        for name in DOCUMENTS:  # both sampled documents are listed
            expect(page.get_by_role("link", name=name)).to_be_visible()
        page.get_by_role("link", name=REVIEWED).click()
        expect(page.get_by_role("heading", name=REVIEWED, level=1)).to_be_visible()
        expect(page.get_by_text(re.compile(r"^0 of \d+ sampled pairs reviewed"))).to_be_visible()

        # accept, with the keyboard only: the name, then Tab to Accept and Enter
        pair = section(page, accepted)
        pair.get_by_label("Your name").fill(REVIEWER)
        pair.get_by_label("Your name").press("Enter")  # Enter in a field chooses no verdict
        page.wait_for_timeout(500)
        assert page.url.endswith(f"/documents/{REVIEWED}")
        pair.get_by_label("Your name").press("Tab")
        page.keyboard.press("Enter")
        page.wait_for_url(saved(accepted))
        pair = section(page, accepted)
        expect(pair.get_by_role("status")).to_have_text("Verdict saved.")
        expect(pair.get_by_text(f"by {REVIEWER} on")).to_be_visible()

        # edit: the name is remembered; change the answer, save the edit
        pair = section(page, edited)
        expect(pair.get_by_label("Your name")).to_have_value(REVIEWER)
        pair.get_by_label("Answer").fill(EDITED_ANSWER)
        pair.get_by_role("button", name="Save edit").click()
        page.wait_for_url(saved(edited))
        expect(section(page, edited).get_by_text(f"Edited answer: {EDITED_ANSWER}")).to_be_visible()

        # reject: first without a reason (refused, saying why), then with one
        pair = section(page, rejected)
        pair.get_by_role("button", name="Reject").click()
        expect(page.get_by_role("alert")).to_contain_text("Not saved: a rejection needs a reason")
        pair = section(page, rejected)
        pair.get_by_label("Reason").fill(REJECT_REASON)
        pair.get_by_role("button", name="Reject").click()
        page.wait_for_url(saved(rejected))
        expect(section(page, rejected).get_by_text(f"Rejected by {REVIEWER}")).to_be_visible()
        expect(page.get_by_text(re.compile(r"^3 of \d+ sampled pairs reviewed"))).to_be_visible()
        page.set_viewport_size({"width": 1200, "height": 1400})
        section(page, edited).scroll_into_view_if_needed()
        _screenshot(page, "review-page.png")
        page.goto(url)
        expect(page.locator("tr", has_text=REVIEWED).locator("td")).to_have_text(
            [REVIEWED, REVIEWED, "8", "3", "1", "1", "1"])
        browser.close()

    with database.get_connection() as con:
        rows = con.execute(f"SELECT pair_id, verdict, reviewer, reason, original_answer, edited_question, "
                           f"edited_answer FROM {REVIEW_VERDICTS_TABLE} ORDER BY reviewed_at").fetchall()
    assert rows == [
        (accepted, "accept", REVIEWER, None, kept[0][2], None, None),
        (edited, "edit", REVIEWER, None, edited_answer, edited_question, EDITED_ANSWER),
        (rejected, "reject", REVIEWER, REJECT_REASON, kept[2][2], None, None),
    ]

    # what the verdicts sensor launches, then the dataset
    reviewed = defs.resolve_job_def(PROCESS_DOCUMENTS_JOB).execute_in_process(
        instance=instance, partition_key=REVIEWED, asset_selection=[dg.AssetKey("reviewed_qa_pairs")])
    assert reviewed.success
    assert defs.resolve_job_def(BUILD_TRAINING_DATASET_JOB).execute_in_process(instance=instance).success
    export = latest_export(instance)
    assert export != Path(first["export_dir"])
    after = {(row["instruction"], row["output"]) for row in exported_rows(export)}
    assert (edited_question, EDITED_ANSWER) in after and (edited_question, edited_answer) not in after
    assert rejected_question not in {question for question, _ in after}
    assert len(after) == len(before) - 1
    card = (export / "README.md").read_text()
    assert "3 sampled pairs reviewed by domain experts: 1 accepted,\n1 edited, 1 rejected." in card
    assert "1\nedits replace the generated text and 1 rejected pairs are left out." in card
