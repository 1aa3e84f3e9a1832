"""The Dagster UI as a user sees it, in headless Chromium (Debian's package, driven by
Playwright), against `make ui` on an instance that has processed example documents.

`make test` installs Debian's chromium first when it runs as root (see the Makefile's
`browser` target). The tests are skipped, with that reason, only where chromium is
missing and cannot be installed (not root); as root a missing browser is a failure.
Screenshots go to a temporary folder, so a test run leaves the clone unchanged; with
SYNTH_ASSETS_UPDATE_SCREENSHOTS=1 they replace docs/screenshots/ (shown in the README).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "documents"
SCREENSHOTS = (ROOT / "docs" / "screenshots" if os.environ.get("SYNTH_ASSETS_UPDATE_SCREENSHOTS") == "1"
               else Path(tempfile.gettempdir()) / "synth_assets_screenshots")
CHROMIUM = Path("/usr/bin/chromium")
# Flags for a sandbox with no network beyond the package registries: no background
# requests to Google's services, no first-run UI.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCUMENTS = ["wiki.md", "word_sample.docx"]
# A file that is not what its extension says: its partition fails with the reason.
BROKEN_DOCUMENT = "broken.pdf"
NEW_DOCUMENT = "wiki_duck.html"
ASSETS = ["raw_documents", "parsed_documents", "document_chunks", "generated_qa_pairs",
          "filtered_qa_pairs", "alpaca_examples", "sharegpt_examples", "training_dataset"]

pytestmark = pytest.mark.browser


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.geteuid() == 0:
        pytest.fail(f"{CHROMIUM} is missing although this user could install it: run `make test` "
                    "(its `browser` step installs Debian's chromium with apt-get)")
    pytest.skip(f"{CHROMIUM} is not installed and installing it needs root (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class UI:
    def __init__(self, base_url: str, port: int, env: dict, work: Path) -> None:
        self.base_url, self.port, self.env, self.work = base_url, port, env, work


@pytest.fixture(scope="module")
def ui(tmp_path_factory) -> Iterator[UI]:
    """`python -m synth_assets.run` (what `make run` runs) on two example documents and a
    broken one, then `make ui` on the same instance and data, on a free port."""
    _require_chromium()
    work = tmp_path_factory.mktemp("ui")
    documents = work / "documents"
    documents.mkdir()
    for name in DOCUMENTS:
        shutil.copy(EXAMPLES / name, documents / name)
    (documents / BROKEN_DOCUMENT).write_bytes(b"this is not a PDF, whatever its name says\n")
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(work / "dagster_home"),
        "DAGSTER_PORT": str(port),
        "SYNTH_ASSETS_DOCUMENTS_DIR": str(documents),
        "SYNTH_ASSETS_DUCKDB_PATH": str(work / "synth_assets.duckdb"),
        "SYNTH_ASSETS_EXPORT_DIR": str(work / "exports"),
        "SYNTH_ASSETS_GENERATION_CACHE": str(work / "generation_cache.duckdb"),
        # The sensor looks once at start-up, then not for an hour: the GraphQL launch
        # below is the only run of the new document.
        "SYNTH_ASSETS_SENSOR_INTERVAL_S": "3600",
    }
    (work / "dagster_home").mkdir()
    shutil.copy(ROOT / "dagster.yaml", work / "dagster_home" / "dagster.yaml")
    made = subprocess.run([sys.executable, "-m", "synth_assets.run", "--no-progress"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stdout + made.stderr
    # the broken file fails alone, with its reason; the others are processed
    assert f"{BROKEN_DOCUMENT}: could not be read as PDF" in made.stdout, made.stdout
    assert "failed:          1\n" in made.stdout, made.stdout
    log = (work / "ui.log").open("w")
    server = subprocess.Popen(["make", "--no-print-directory", "ui"], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{base_url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("`make ui` did not start:\n" + (work / "ui.log").read_text()[-3000:])
            time.sleep(1)
        yield UI(base_url, port, env, work)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def browser(ui):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def browser_context(browser, ui):
    """One browser profile for all the tests, as one user would have."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    yield context
    context.close()


@pytest.fixture
def page(browser_context):
    page = browser_context.new_page()
    yield page
    page.close()


def test_a_new_browser_profile_is_not_greeted_by_a_community_modal(browser, ui) -> None:
    """dagster.yaml turns Dagster's first-visit prompt off (nux.enabled: false)."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        first = context.new_page()
        _open(first, f"{ui.base_url}/overview", wait_for="Overview")
        time.sleep(5)  # the prompt, when on, opens a moment after the page
        assert first.get_by_role("button", name="Skip").count() == 0
    finally:
        context.close()


def _visible(page, text: str):
    """The first visible element with `text` (the UI also renders hidden copies, e.g.
    to measure names before truncating them)."""
    return page.locator(f"text={text} >> visible=true").first


def _open(page, url: str, wait_for: str) -> None:
    page.goto(url)
    _visible(page, wait_for).wait_for(timeout=60_000)


def _screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    time.sleep(1)  # let the graph layout settle
    page.screenshot(path=str(SCREENSHOTS / name))


def test_the_asset_graph_renders_with_every_stage(ui, page) -> None:
    _open(page, f"{ui.base_url}/asset-groups", "ingest")
    for group in ("ingest", "generate", "curate", "export"):
        _visible(page, group).wait_for(timeout=30_000)
    page.mouse.click(1100, 250, button="right")  # the graph's menu
    page.locator("text=Expand all groups >> visible=true").first.click(timeout=10_000)
    for asset in ASSETS:
        _visible(page, asset).wait_for(timeout=30_000)
    _screenshot(page, "asset-graph.png")


def test_a_documents_partition_shows_its_materialisation_metadata(ui, page) -> None:
    _open(page, f"{ui.base_url}/assets/filtered_qa_pairs?view=partitions&partition=wiki.md", "pass_rate")
    for label in ("dagster/row_count", "generated", "rejected", "rejections_by_reason", "judge", "preview"):
        _visible(page, label).wait_for(timeout=10_000)
    _visible(page, "[Show Markdown]").click()
    _visible(page, "source heading").wait_for(timeout=10_000)  # the preview table
    _screenshot(page, "partition-metadata.png")
    page.keyboard.press("Escape")

    _open(page, f"{ui.base_url}/assets/parsed_documents?view=partitions&partition=word_sample.docx", "parser")
    _visible(page, "docling").wait_for(timeout=10_000)


def test_the_training_datasets_metadata_shows_the_cards_charts_as_images(ui, page) -> None:
    """The dataset at a glance in the UI: each chart of the card is in training_dataset's
    metadata as Markdown with the PNG inline, and the browser draws it as an image."""
    _open(page, f"{ui.base_url}/assets/training_dataset", "chart_rejections")
    for label in ("chart_grounding", "chart_rejections", "chart_coverage", "task_chart", "card"):
        _visible(page, label).wait_for(timeout=10_000)
    page.locator("tr:has-text('chart_rejections') >> text=[Show Markdown] >> visible=true").first.click()
    image = page.locator("img[src^='data:image/png;base64'] >> visible=true").first
    image.wait_for(timeout=10_000)
    # Decoded and drawn: a broken or empty image has no natural size.
    width, height = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert width >= 400 and height >= 200, (width, height)
    _visible(page, "outcome").wait_for(timeout=10_000)  # the same figures as a table under the chart
    _screenshot(page, "dataset-charts.png")
    page.keyboard.press("Escape")


def test_the_checks_show_their_results(ui, page) -> None:
    # The checks are listed by name (documents_are_covered first, the suite's name shortened
    # in the list): the filter box finds the suite's.
    _open(page, f"{ui.base_url}/assets/filtered_qa_pairs?view=checks", "documents_are_covered")
    page.get_by_placeholder("Filter checks").fill("quality_suite")
    page.locator("text=s_quality_suite >> visible=true").first.click()
    _visible(page, "filtered_pairs_pass_quality_suite").wait_for(timeout=30_000)
    _visible(page, "Passed").wait_for(timeout=30_000)
    # each expectation is in the check's metadata, by name
    _visible(page, "column_values_to_be_unique[normalised_question]").wait_for(timeout=30_000)
    _visible(page, "table_row_count_to_be_between[table]").wait_for(timeout=30_000)
    for label in ("validated_with", "failing_rows", "expectations"):
        _visible(page, label).wait_for(timeout=10_000)
    _visible(page, "Great Expectations 1.").wait_for(timeout=10_000)
    _screenshot(page, "asset-checks.png")
    # every expectation with its outcome and observed value, in one table
    page.locator("tr:has-text('expectations') >> text=[Show Markdown] >> visible=true").first.click()
    for text in ("observed value", "table_row_count_to_be_between[table]", "passed"):
        _visible(page, text).wait_for(timeout=10_000)
    _screenshot(page, "check-expectations.png")
    page.keyboard.press("Escape")


def test_a_failed_documents_partition_shows_the_reason(ui, page) -> None:
    _open(page, f"{ui.base_url}/assets/parsed_documents?view=partitions&partition={BROKEN_DOCUMENT}",
          "did not materialize this asset")
    _visible(page, "View logs").click()
    # the run's log, opened from the partition: the failure names the file, the reason and the stage
    _visible(page, "STEP_FAILURE").wait_for(timeout=30_000)
    for text in (f"{BROKEN_DOCUMENT}: could not be read as PDF", "the file has no PDF header", "stage"):
        _visible(page, text).wait_for(timeout=10_000)
    page.locator("text=STEP_FAILURE >> visible=true").first.scroll_into_view_if_needed()
    _screenshot(page, "failed-document.png")
    page.keyboard.press("Escape")


def test_an_assets_page_shows_its_group_kinds_owner_and_code_version(ui, page) -> None:
    _open(page, f"{ui.base_url}/assets/generated_qa_pairs", "Question-answer pairs written for each chunk")
    for text in ("generate", "model_free", "synthetic-data", "DuckDB", "Great Expectations", "question_types"):
        _visible(page, text).wait_for(timeout=10_000)

    _open(page, f"{ui.base_url}/assets/training_dataset", "Every document's kept pairs merged")
    for text in ("export", "synthetic-data", "Hugging Face", "DuckDB", "Great Expectations"):
        _visible(page, text).wait_for(timeout=10_000)
    _visible(page, "Compute details").click()
    _visible(page, "Code version").wait_for(timeout=10_000)
    _screenshot(page, "asset-overview.png")


def test_a_materialisation_launched_like_the_ui_completes_with_its_checks(ui, page, monkeypatch) -> None:
    from dagster_graphql import DagsterGraphQLClient

    shutil.copy(EXAMPLES / NEW_DOCUMENT, Path(ui.env["SYNTH_ASSETS_DOCUMENTS_DIR"]) / NEW_DOCUMENT)
    monkeypatch.setenv("DAGSTER_HOME", ui.env["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("documents", [NEW_DOCUMENT])
        client = DagsterGraphQLClient("127.0.0.1", port_number=ui.port)
        run_id = client.submit_job_execution(
            "process_documents", repository_location_name="synth_assets",
            tags={"dagster/partition": NEW_DOCUMENT},
        )
        deadline = time.monotonic() + 420  # step processes start slowly on 2 busy cores
        while (status := client.get_run_status(run_id)) not in (
            dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED
        ):
            assert time.monotonic() < deadline, f"run {run_id} still {status}"
            time.sleep(2)
        assert status == dg.DagsterRunStatus.SUCCESS
        checks = {
            event.dagster_event.event_specific_data.asset_check_key.name
            for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        }
        assert {"generated_pairs_are_complete_and_traceable", "filtered_pairs_pass_quality_suite",
                "alpaca_rows_are_valid", "sharegpt_rows_are_valid"} <= checks
        assert NEW_DOCUMENT in instance.get_materialized_partitions(dg.AssetKey("sharegpt_examples"))
    with duckdb.connect(ui.env["SYNTH_ASSETS_DUCKDB_PATH"], read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM sharegpt_examples WHERE document_id = ?", [NEW_DOCUMENT]).fetchone()[0]
    assert rows > 0  # the new document's examples are in the database
    _open(page, f"{ui.base_url}/runs/{run_id}", "RUN_SUCCESS")
    _screenshot(page, "run.png")


LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""


def test_a_backfill_over_two_documents_launched_like_the_ui_is_one_run(ui, page, monkeypatch) -> None:
    """The UI's "Materialize selected" over several partitions makes an asset backfill;
    with BackfillPolicy.single_run() the daemon launches one run for the whole range."""
    per_document = ASSETS[:-1]
    reply = httpx.post(f"{ui.base_url}/graphql", timeout=60, json={"query": LAUNCH_BACKFILL, "variables": {"params": {
        "partitionNames": DOCUMENTS, "assetSelection": [{"path": [name]} for name in per_document]}}}).json()
    launched = reply["data"]["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", reply
    monkeypatch.setenv("DAGSTER_HOME", ui.env["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as instance:
        deadline = time.monotonic() + 480  # the daemon picks the backfill up, then step processes start
        while True:
            runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": launched["backfillId"]}))
            if runs and all(run.is_finished for run in runs):
                break
            assert time.monotonic() < deadline, f"backfill {launched['backfillId']}: {[r.status for r in runs]}"
            time.sleep(3)
        [run] = runs  # one run for both documents
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert (run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]) == (
            DOCUMENTS[0], DOCUMENTS[-1])
        materialized = {
            (event.dagster_event.asset_key.to_user_string(), event.dagster_event.partition)
            for event in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        }
        assert materialized == {(name, key) for name in per_document for key in DOCUMENTS}
    _open(page, f"{ui.base_url}/runs/{run.run_id}", "RUN_SUCCESS")
    _screenshot(page, "backfill-run.png")
