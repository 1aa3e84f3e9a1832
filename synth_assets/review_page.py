"""`make review`: the review page, where a domain expert judges the sampled pairs
without Dagster.

    python -m synth_assets.review_page   # serves on SYNTH_ASSETS_REVIEW_PAGE_URL (http://127.0.0.1:8765)

`/` lists the documents that have a review sample (the review_sample asset) with how
many of their pairs are reviewed; `/documents/<document_id>` shows each sampled pair
with its source passage, and takes accept / edit / reject with a reason. Verdicts are
appended to the review_verdicts table (who, when, what changed; an edit keeps the
original), where the reviewed_qa_pairs asset picks them up.

The page opens a connection per request and closes it at once: Dagster runs write the
same DuckDB file, and DuckDB lets one process at a time hold it.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import dagster as dg
import pandas as pd
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from synth_assets.core.review import VERDICTS, reviewed_pairs
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.storage import REVIEW_SAMPLE_TABLE, REVIEW_VERDICTS_TABLE, record_verdict

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
REVIEWER_COOKIE = "synth_assets_reviewer"
REVIEWER_COOKIE_DAYS = 365


def _reviewed(con, document_id: str | None = None) -> pd.DataFrame:
    """The sampled pairs (of one document, or all), each with its current verdict as
    reviewed_qa_pairs will take it (core/review.py: the latest one, and only while the
    pair's text is what the expert saw); verdict is None for a pair not reviewed yet."""
    where, parameters = ("WHERE document_id = ?", [document_id]) if document_id else ("", [])
    sample = con.execute(f"SELECT * FROM {REVIEW_SAMPLE_TABLE} {where}", parameters).df()
    verdicts = con.execute(f"SELECT * FROM {REVIEW_VERDICTS_TABLE} {where}", parameters).df()
    reviewed, _ = reviewed_pairs(sample, verdicts)
    current = reviewed[["pair_id", "verdict", "reason", "reviewer", "reviewed_at", "question", "answer"]]
    merged = sample.merge(current.rename(columns={"reason": "verdict_reason", "question": "reviewed_question",
                                                  "answer": "reviewed_answer"}), on="pair_id", how="left")
    merged = merged.astype(object).where(merged.notna(), None)
    merged["reject_reasons"] = [list(reasons) if reasons is not None else [] for reasons in merged["reject_reasons"]]
    return merged


def _documents(con) -> list[dict]:
    pairs = _reviewed(con)
    documents = []
    for document_id, rows in pairs.groupby("document_id", sort=True):
        verdicts = rows["verdict"].value_counts()
        documents.append({"document_id": document_id, "source_file": rows["source_file"].iloc[0],
                          "sampled": len(rows), "reviewed": int(rows["verdict"].notna().sum()),
                          **{kind: int(verdicts.get(kind, 0)) for kind in VERDICTS}})
    return documents


def _sampled_pairs(con, document_id: str) -> list[dict]:
    """The document's sampled pairs, most uncertain first, each with its current verdict."""
    pairs = _reviewed(con, document_id)
    return pairs.sort_values(["priority", "pair_id"], ascending=[False, True]).to_dict("records")


def _reviewer(request: Request) -> str:
    return unquote(request.cookies.get(REVIEWER_COOKIE, ""))


def build_app(database: PipelineDatabase) -> Starlette:
    """The review page on this database."""

    def read(query, *args):
        with database.get_connection() as con:
            return query(con, *args)

    async def index(request: Request) -> Response:
        documents = await run_in_threadpool(read, _documents)
        return TEMPLATES.TemplateResponse(request, "review_index.html", {
            "documents": documents, "database": database.ducklake_catalog or database.database})

    def document_page(request: Request, document_id: str, *, error: dict | None = None,
                      status_code: int = 200) -> Response:
        pairs = read(_sampled_pairs, document_id)
        if not pairs:
            return TEMPLATES.TemplateResponse(request, "review_missing.html", {"document_id": document_id},
                                              status_code=404)
        return TEMPLATES.TemplateResponse(request, "review_document.html", {
            "document_id": document_id, "pairs": pairs, "reviewer": _reviewer(request), "error": error,
            "saved": request.query_params.get("saved"),
            "reviewed": sum(pair["verdict"] is not None for pair in pairs),
        }, status_code=status_code)

    async def document(request: Request) -> Response:
        return await run_in_threadpool(document_page, request, request.path_params["document_id"])

    async def verdict(request: Request) -> Response:
        document_id = request.path_params["document_id"]
        # Browsers post plain forms url-encoded; the standard library reads that, so
        # Starlette's multipart parser (another package) is not needed.
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return Response("the verdict form is posted as application/x-www-form-urlencoded", status_code=415)
        fields = {name: values[-1] for name, values in
                  parse_qs((await request.body()).decode("utf-8"), keep_blank_values=True).items()}
        pair_id, choice = fields.get("pair_id", ""), fields.get("verdict", "")
        reviewer, reason = fields.get("reviewer", "").strip(), fields.get("reason", "").strip()
        # Browsers send a textarea's line breaks as CRLF, whatever the text had.
        question, answer = (fields[name].replace("\r\n", "\n") if name in fields else None
                            for name in ("question", "answer"))

        def save() -> Response:
            if choice == "reject" and not reason:
                raise ValueError("a rejection needs a reason: say what is wrong with the pair")
            with database.get_connection() as con:
                sampled = con.execute(f"SELECT document_id, question, answer FROM {REVIEW_SAMPLE_TABLE} "
                                      "WHERE pair_id = ?", [pair_id]).fetchone()
                if sampled is not None and sampled[0] != document_id:
                    raise ValueError(f"pair {pair_id} belongs to {sampled[0]}, not to {document_id}")
                if choice == "accept" and sampled is not None and any(
                        sent is not None and sent.strip() != (text or "").strip()
                        for sent, text in zip((question, answer), sampled[1:])):
                    raise ValueError("the question or answer was changed but Accept was pressed: press "
                                     "Save edit to keep the change, or undo it to accept the pair as it is")
                record_verdict(con, pair_id=pair_id, verdict=choice, reviewer=reviewer, reason=reason,
                               edited_question=question, edited_answer=answer)
            return RedirectResponse(f"/documents/{quote(document_id)}?saved={quote(pair_id)}#pair-{quote(pair_id)}",
                                    status_code=303)

        try:
            response = await run_in_threadpool(save)
        except ValueError as error:
            response = await run_in_threadpool(document_page, request, document_id, status_code=400, error={
                "pair_id": pair_id, "message": str(error), "fields": fields})
        if reviewer:
            response.set_cookie(REVIEWER_COOKIE, quote(reviewer), max_age=REVIEWER_COOKIE_DAYS * 86400,
                                samesite="lax")
        return response

    return Starlette(routes=[
        Route("/", index),
        Route("/documents/{document_id}", document),
        Route("/documents/{document_id}/verdicts", verdict, methods=["POST"]),
    ])


def host_and_port(page_url: str) -> tuple[str, int]:
    """Where to listen for `page_url` (http://host:port)."""
    parts = urlsplit(page_url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"SYNTH_ASSETS_REVIEW_PAGE_URL={page_url!r} must look like http://127.0.0.1:8765")
    return parts.hostname, parts.port or 80


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    # Settings import the assets, whose beta-feature warnings (see definitions.py) say
    # nothing to a reviewer.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    from synth_assets.settings import Settings

    settings = Settings.from_env()
    page_url = settings.resources["review"].page_url
    try:
        host, port = host_and_port(page_url)
    except ValueError as error:
        print(f"synth_assets review page: {error}", file=sys.stderr)
        return 2
    print(f"review page on {page_url}", flush=True)
    uvicorn.run(build_app(settings.resources["duckdb"]), host=host, port=port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
