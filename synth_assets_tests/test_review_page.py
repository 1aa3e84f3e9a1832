"""The review page (`make review`) through Starlette's TestClient: what an expert sees,
what each verdict writes to review_verdicts, and the errors a wrong form gets."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from starlette.testclient import TestClient

from synth_assets import review_page
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.review_page import REVIEWER_COOKIE, build_app, host_and_port
from synth_assets.storage import REVIEW_SAMPLE_TABLE, REVIEW_VERDICTS_TABLE, replace_partition_rows

DOCUMENT = "report.pdf"
OTHER = "notes.md"


def sample_row(pair_id: str, **values) -> dict:
    return {
        "pair_id": pair_id, "chunk_id": f"chunk-{pair_id}", "question": f"What does section {pair_id} say?",
        "answer": f"Section {pair_id} says the pump\nruns at 40 bar.", "question_type": "factual",
        "status": "kept", "reject_reasons": [], "grounding": 0.9, "judge_score": 4, "language": "en",
        "chunk_text": f"Section {pair_id}: the pump runs at <b>40 bar</b>.", "heading_path": "Operation > Pumps",
        "page_start": 3, "page_end": 4, "source_file": DOCUMENT, "why_sampled": "judge score at the threshold",
        "priority": 0.5, **values,
    }


@pytest.fixture
def database(tmp_path) -> PipelineDatabase:
    database = PipelineDatabase(database=str(tmp_path / "review.duckdb"))
    with database.get_connection() as con:
        replace_partition_rows(con, REVIEW_SAMPLE_TABLE, DOCUMENT, pd.DataFrame([
            sample_row("a", priority=0.9),
            sample_row("b", status="rejected", reject_reasons=["ungrounded", "low_information"], page_end=3,
                       why_sampled="rejected by one rule only", priority=0.7),
            sample_row("c", page_start=None, page_end=None, judge_score=None, why_sampled="random", priority=0.0),
        ]))
        replace_partition_rows(con, REVIEW_SAMPLE_TABLE, OTHER, pd.DataFrame([
            sample_row("x", source_file=OTHER)]))
    return database


@pytest.fixture
def client(database) -> TestClient:
    return TestClient(build_app(database))


def verdicts(database: PipelineDatabase) -> list[dict]:
    with database.get_connection() as con:
        return con.execute(f"SELECT * FROM {REVIEW_VERDICTS_TABLE} ORDER BY reviewed_at").df().to_dict("records")


def post(client: TestClient, pair_id: str, verdict: str, document: str = DOCUMENT, **fields):
    """The pair's form as the page fills it, with `fields` typed over it."""
    row = sample_row(pair_id)
    form = {"pair_id": pair_id, "question": row["question"], "answer": row["answer"], "reason": "",
            "reviewer": "Ada Expert", "verdict": verdict, **fields}
    return client.post(f"/documents/{document}/verdicts", data=form, follow_redirects=False)


def test_the_index_lists_each_sampled_document_with_its_review_counts(client) -> None:
    post(client, "a", "accept")
    page = client.get("/")
    assert page.status_code == 200
    assert f'href="/documents/{DOCUMENT}"' in page.text and f'href="/documents/{OTHER}"' in page.text
    report_row = page.text.split(f">{DOCUMENT}</a></td>")[1].split("</tr>")[0]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", report_row)
    assert cells == [DOCUMENT, "3", "1", "1", "0", "0"]  # file, sampled, reviewed, accepted, edited, rejected


def test_the_index_says_how_to_get_a_sample_when_there_is_none(tmp_path) -> None:
    page = TestClient(build_app(PipelineDatabase(database=str(tmp_path / "empty.duckdb")))).get("/")
    assert page.status_code == 200
    assert "No document has a review sample yet" in page.text and "review_sample" in page.text


def test_a_document_shows_each_pair_with_its_passage_heading_pages_file_and_why_it_was_sampled(client) -> None:
    page = client.get(f"/documents/{DOCUMENT}")
    assert page.status_code == 200
    text = page.text
    # most uncertain first
    assert text.index('id="pair-a"') < text.index('id="pair-b"') < text.index('id="pair-c"')
    assert 'id="pair-x"' not in text  # another document's pair
    for shown in ("What does section a say?", "Section a says the pump\nruns at 40 bar.",
                  "Operation &gt; Pumps", "pages 3–4", DOCUMENT, "judge score at the threshold", "judge score 4",
                  "kept by the filters", "rejected by the filters: ungrounded, low_information",
                  "rejected by one rule only", "0 of 3 sampled pairs reviewed"):
        assert shown in text, shown
    # the passage is text, not markup
    assert "the pump runs at &lt;b&gt;40 bar&lt;/b&gt;." in text and "<b>40 bar</b>" not in text
    assert "· page 3\n" in text.split('id="pair-b"')[1]  # one page
    pair_c = text.split('id="pair-c"')[1]
    assert "page " not in pair_c.split("<blockquote")[0]  # no pages known
    assert "judge score" not in pair_c.split("sampled because")[0]


def test_an_unknown_document_is_a_404_that_says_so(client) -> None:
    page = client.get("/documents/missing.pdf")
    assert page.status_code == 404
    assert "No review sample for the document missing.pdf" in page.text


def test_accept_records_who_and_when_and_marks_the_pair(client, database) -> None:
    response = post(client, "a", "accept", reason="matches the passage")
    assert response.status_code == 303
    assert response.headers["location"] == f"/documents/{DOCUMENT}?saved=a#pair-a"
    [row] = verdicts(database)
    assert (row["pair_id"], row["document_id"], row["verdict"], row["reviewer"], row["reason"]) == (
        "a", DOCUMENT, "accept", "Ada Expert", "matches the passage")
    assert row["original_question"] == "What does section a say?" and pd.isna(row["edited_question"])
    page = client.get(response.headers["location"])
    pair = page.text.split('id="pair-a"')[1].split("</section>")[0]
    assert "Verdict saved." in pair and "Accepted</strong>" in pair and "by Ada Expert on" in pair
    assert "1 of 3 sampled pairs reviewed" in page.text


def test_an_edit_keeps_the_original_and_shows_the_new_text(client, database) -> None:
    # a browser sends the textarea's line breaks as CRLF: that is no change
    response = post(client, "b", "edit", answer="Section b says the pump\r\nruns at 45 bar.")
    assert response.status_code == 303
    [row] = verdicts(database)
    assert row["verdict"] == "edit"
    assert (row["original_question"], row["original_answer"]) == (
        "What does section b say?", "Section b says the pump\nruns at 40 bar.")
    assert (row["edited_question"], row["edited_answer"]) == (
        "What does section b say?", "Section b says the pump\nruns at 45 bar.")
    pair = client.get(response.headers["location"]).text.split('id="pair-b"')[1].split("</section>")[0]
    assert "Edited</strong>" in pair and "Edited answer: Section b says the pump\nruns at 45 bar." in pair


def test_reject_needs_a_reason(client, database) -> None:
    refused = post(client, "c", "reject")
    assert refused.status_code == 400
    assert "Not saved: a rejection needs a reason" in refused.text
    assert verdicts(database) == []
    assert post(client, "c", "reject", reason="the passage does not say this").status_code == 303
    [row] = verdicts(database)
    assert (row["verdict"], row["reason"]) == ("reject", "the passage does not say this")
    assert pd.isna(row["edited_answer"])


@pytest.mark.parametrize(("pair_id", "verdict", "fields", "message"), [
    ("a", "accept", {"reviewer": "  "}, "a verdict needs the reviewer&#39;s name"),
    ("a", "edit", {"question": "What does section a say?  "}, "an edit must change the question or the answer"),
    ("a", "accept", {"answer": "Changed, but Accept pressed."}, "the question or answer was changed but Accept"),
    ("a", "approve", {}, "verdict must be accept, edit or reject, not &#39;approve&#39;"),
    ("zzz", "accept", {}, "pair zzz is not in the review sample"),
    ("x", "accept", {}, f"pair x belongs to {OTHER}, not to {DOCUMENT}"),
])
def test_a_bad_verdict_is_refused_with_the_reason_and_keeps_what_was_typed(
        client, database, pair_id, verdict, fields, message) -> None:
    response = post(client, pair_id, verdict, reason="typed reason", **fields)
    assert response.status_code == 400
    assert message in response.text
    assert verdicts(database) == []
    if pair_id == "a":  # shown at the pair, with the reviewer's input still in the form
        pair = response.text.split('id="pair-a"')[1].split("</section>")[0]
        assert message in pair and 'value="typed reason"' in pair
        for typed in fields.values():
            assert typed in pair


def test_the_reviewers_name_is_remembered(client) -> None:
    assert f'name="reviewer" value=""' in client.get(f"/documents/{DOCUMENT}").text
    post(client, "a", "accept", reviewer="Zoë Åberg")
    assert REVIEWER_COOKIE in client.cookies
    page = client.get(f"/documents/{DOCUMENT}").text
    assert page.count('name="reviewer" value="Zoë Åberg"') == 3  # every pair's form


def test_the_latest_verdict_counts_and_one_on_old_text_is_not_shown(client, database) -> None:
    post(client, "a", "reject", reason="wrong pressure")
    post(client, "a", "accept", reviewer="Second Reviewer")
    pair = client.get(f"/documents/{DOCUMENT}").text.split('id="pair-a"')[1].split("</section>")[0]
    assert "Accepted</strong>" in pair and "Second Reviewer" in pair and "wrong pressure" not in pair
    # the document was processed again and the pair's answer changed: the verdict was on other text
    with database.get_connection() as con:
        replace_partition_rows(con, REVIEW_SAMPLE_TABLE, DOCUMENT, pd.DataFrame([
            sample_row("a", answer="A new answer.")]))
    page = client.get(f"/documents/{DOCUMENT}").text
    assert "0 of 1 sampled pairs reviewed" in page and "Accepted</strong>" not in page


def test_a_form_that_is_not_url_encoded_is_refused(client) -> None:
    response = client.post(f"/documents/{DOCUMENT}/verdicts", files={"pair_id": (None, "a")})
    assert response.status_code == 415


def test_the_page_listens_where_page_url_says() -> None:
    assert host_and_port("http://127.0.0.1:8765") == ("127.0.0.1", 8765)
    assert host_and_port("http://review.internal/") == ("review.internal", 80)
    with pytest.raises(ValueError, match="SYNTH_ASSETS_REVIEW_PAGE_URL='127.0.0.1:8765' must look like"):
        host_and_port("127.0.0.1:8765")


def test_main_serves_the_configured_database_on_the_configured_address(monkeypatch, database) -> None:
    import uvicorn

    served = {}
    monkeypatch.setenv("SYNTH_ASSETS_REVIEW_PAGE_URL", "http://127.0.0.1:9123")
    monkeypatch.setenv("SYNTH_ASSETS_DUCKDB_PATH", database.database)
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(app=app, **options))
    assert review_page.main([]) == 0
    assert (served["host"], served["port"]) == ("127.0.0.1", 9123)
    assert f">{DOCUMENT}</a>" in TestClient(served["app"]).get("/").text

    monkeypatch.setenv("SYNTH_ASSETS_REVIEW_PAGE_URL", "localhost:9123")
    assert review_page.main([]) == 2


def test_a_pair_id_with_hashes_comes_back_marked(client, database) -> None:
    pair_id = f"{DOCUMENT}#c0001#q01"  # what generation names pairs
    with database.get_connection() as con:
        replace_partition_rows(con, REVIEW_SAMPLE_TABLE, DOCUMENT, pd.DataFrame([sample_row(pair_id)]))
    response = post(client, pair_id, "accept")
    assert response.headers["location"] == (
        f"/documents/{DOCUMENT}?saved=report.pdf%23c0001%23q01#pair-report.pdf%23c0001%23q01")
    page = client.get(response.headers["location"]).text
    assert "Verdict saved." in page.split(f'id="pair-{pair_id}"')[1]
