"""The review page (`make review`) through Starlette's TestClient: what an expert sees,
what each verdict writes to review_verdicts, and the errors a wrong form gets."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import threading
import time

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


PAGE_URL = "http://127.0.0.1:8765"


@pytest.fixture
def client(database) -> TestClient:
    return TestClient(build_app(database), base_url=PAGE_URL)


def verdicts(database: PipelineDatabase) -> list[dict]:
    with database.get_connection() as con:
        return con.execute(f"SELECT * FROM {REVIEW_VERDICTS_TABLE} ORDER BY reviewed_at").df().to_dict("records")


def page_token(client: TestClient, document: str = DOCUMENT, **request) -> str:
    """The form token the page puts in every form."""
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(f"/documents/{document}", **request).text)[1]


def post(client: TestClient, pair_id: str, verdict: str, document: str = DOCUMENT, *, token: str | None = None,
         **fields):
    """The pair's form as the page fills it, with `fields` typed over it."""
    row = sample_row(pair_id)
    form = {"pair_id": pair_id, "question": row["question"], "answer": row["answer"], "reason": "",
            "reviewer": "Ada Expert", "verdict": verdict,
            "csrf_token": page_token(client) if token is None else token, **fields}
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
    page = TestClient(build_app(PipelineDatabase(database=str(tmp_path / "empty.duckdb"))), base_url=PAGE_URL).get("/")
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
    assert f">{DOCUMENT}</a>" in TestClient(served["app"], base_url="http://127.0.0.1:9123").get("/").text

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


# Only the page's own forms write (issue 28, item 8): a page elsewhere that the reviewer
# visits can post the form, but cannot read the token the review page puts in it.
@pytest.mark.parametrize("token", ["", "0" * 64])
def test_a_verdict_posted_from_another_site_is_refused(client, database, token) -> None:
    response = client.post(f"/documents/{DOCUMENT}/verdicts", follow_redirects=False,
                           headers={"Origin": "https://elsewhere.example"},
                           data={"pair_id": "a", "verdict": "reject", "reason": "forged", "reviewer": "Ada Expert",
                                 "csrf_token": token})
    assert response.status_code == 403
    assert "Not saved: this form was not sent by the review page" in response.text
    assert verdicts(database) == []
    # what was typed is shown to copy, but not in a form that one more press would send
    assert "forged" in response.text and "<form" not in response.text


def test_a_request_for_another_host_name_is_refused(database) -> None:
    # DNS rebinding: a name the attacker controls, pointed at 127.0.0.1
    assert TestClient(build_app(database), base_url="http://rebound.example:8765").get("/").status_code == 400
    for url in (PAGE_URL, "http://localhost:8765"):
        assert TestClient(build_app(database), base_url=url).get("/").status_code == 200
    # behind a reverse proxy that keeps the browser's Host, the proxy's name is added
    app = build_app(database, page_url="http://review.internal:8765", allowed_hosts=["review.example.com"])
    for url, status in (("https://review.example.com", 200), ("http://review.internal:8765", 200), (PAGE_URL, 400)):
        assert TestClient(app, base_url=url).get("/").status_code == status, url


def test_with_a_password_reviewers_sign_in_and_the_verdict_bears_the_signed_in_name(database) -> None:
    client = TestClient(build_app(database, password="correct horse"), base_url=PAGE_URL)
    refused = client.get("/")
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic ")
    assert client.get("/", auth=("Ada Expert", "wrong")).status_code == 401
    assert client.get("/", auth=("", "correct horse")).status_code == 401  # the name is the reviewer's
    client.auth = ("Ada Expert", "correct horse")
    page = client.get(f"/documents/{DOCUMENT}").text
    assert "Signed in as Ada Expert" in page and 'name="reviewer"' not in page
    assert post(client, "a", "accept", reviewer="Someone Else").status_code == 303
    assert [row["reviewer"] for row in verdicts(database)] == ["Ada Expert"]
    # a token is the signed-in reviewer's own: another's page cannot post as Ada
    other = page_token(client, auth=("Bob", "correct horse"))
    assert post(client, "b", "accept", token=other).status_code == 403
    assert len(verdicts(database)) == 1


@pytest.mark.parametrize("address", ["http://0.0.0.0:8765", "http://192.168.1.20:8765", "http://review.internal"])
def test_main_listens_where_others_reach_it_only_when_reviewers_sign_in(monkeypatch, database, capsys,
                                                                        address) -> None:
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(app=app, **options))
    monkeypatch.setenv("SYNTH_ASSETS_DUCKDB_PATH", database.database)
    monkeypatch.setenv("SYNTH_ASSETS_REVIEW_PAGE_URL", address)
    monkeypatch.delenv("SYNTH_ASSETS_REVIEW_PASSWORD_ENV", raising=False)
    assert review_page.main([]) == 2 and served == {}
    assert "set SYNTH_ASSETS_REVIEW_PASSWORD_ENV" in capsys.readouterr().err
    monkeypatch.setenv("SYNTH_ASSETS_REVIEW_PASSWORD_ENV", "REVIEW_PASSWORD")
    monkeypatch.delenv("REVIEW_PASSWORD", raising=False)
    assert review_page.main([]) == 2 and served == {}  # the variable it names is not set
    assert "REVIEW_PASSWORD (named by SYNTH_ASSETS_REVIEW_PASSWORD_ENV) is not set" in capsys.readouterr().err
    monkeypatch.setenv("REVIEW_PASSWORD", "correct horse")
    assert review_page.main([]) == 0
    client = TestClient(served["app"], base_url=address)
    assert client.get("/").status_code == 401
    assert client.get("/", auth=("Ada Expert", "correct horse")).status_code == 200


# A run holding the database file: this process waits, then fails (issue 28, item 9).
HOLD_THE_FILE = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def test_verdicts_that_meet_a_run_holding_the_database_are_saved_or_refused_never_lost(database) -> None:
    # The page gives up on the file after 1 s; the "run" holds it 5 s.
    database = PipelineDatabase(database=database.database, lock_timeout_s=1.0)
    app = build_app(database)
    token = page_token(TestClient(app, base_url=PAGE_URL))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_FILE, database.database, "5"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    page = TestClient(app, base_url=PAGE_URL).get(f"/documents/{DOCUMENT}")  # a read is answered, not held
    assert page.status_code == 503 and "reload the page in a moment" in page.text
    refusals, problems = [], []

    def reviewer(thread: int) -> None:
        client = TestClient(app, base_url=PAGE_URL)
        for number in range(5):
            reason = f"thread {thread} verdict {number}"
            for _ in range(40):  # the reviewer presses again until it is saved
                try:
                    response = post(client, "abc"[number % 3], "accept", token=token, reason=reason)
                except Exception as error:  # noqa: BLE001 - a lost verdict, reported below
                    problems.append(f"{reason}: {error!r}")
                    break
                if response.status_code == 303:
                    break
                if response.status_code != 503 or "your verdict was not saved" not in response.text \
                        or f'value="{reason}"' not in response.text:
                    problems.append(f"{reason}: {response.status_code} {response.text[:300]}")
                    break
                refusals.append(reason)
                time.sleep(0.2)

    threads = [threading.Thread(target=reviewer, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    holder.wait(timeout=30)
    assert problems == []
    reasons = sorted(row["reason"] for row in verdicts(database))
    assert reasons == sorted(f"thread {t} verdict {n}" for t in range(4) for n in range(5))  # each once
    assert refusals  # the file was really held while they were posted
