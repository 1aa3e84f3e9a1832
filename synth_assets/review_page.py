"""`make review`: the review page, where a domain expert judges the sampled pairs
without Dagster.

    python -m synth_assets.review_page   # serves on SYNTH_ASSETS_REVIEW_PAGE_URL (http://127.0.0.1:8765)

`/` lists the documents that have a review sample (the review_sample asset) with how
many of their pairs are reviewed; `/documents/<document_id>` shows each sampled pair
with its source passage, and takes accept / edit / reject with a reason. Verdicts are
appended to the review_verdicts table (who, when, what changed; an edit keeps the
original), where the reviewed_qa_pairs asset picks them up.

The page opens a connection per request and closes it at once: Dagster runs write the
same DuckDB file, and DuckDB lets one process at a time hold it. Inside the page's own
process one request at a time holds a connection (uvicorn runs requests in threads); a
request that cannot get the database within `lock_wait_s` is answered at once: a page
asks to reload, a verdict is refused, not saved, with what was typed kept in the form.

Only the page's own forms write: each carries a token derived from a secret of this
process (and the signed-in reviewer), which a page on another site cannot read; a Host
header that is not the page's own is refused (TrustedHostMiddleware), so a web page
cannot reach it through a name it points at this machine. Reviewers sign in with HTTP
basic auth when `password_env` names the variable holding their password, and must
where page_url is not a loopback address.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import ipaddress
import os
import secrets
import sys
import threading
import warnings
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import dagster as dg
import duckdb
import pandas as pd
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from synth_assets.core.evidence import highlight_parts
from synth_assets.core.review import VERDICTS, reviewed_pairs
from synth_assets.resources.review import DEFAULT_REVIEW_PAGE_URL
from synth_assets.resources.storage import PipelineDatabase
from synth_assets.storage import REVIEW_SAMPLE_TABLE, REVIEW_VERDICTS_TABLE, is_lock_error, record_verdict

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
REVIEWER_COOKIE = "synth_assets_reviewer"
REVIEWER_COOKIE_DAYS = 365
# Where the sign-in middleware leaves the signed-in reviewer's name in the request scope.
SIGNED_IN = "synth_assets.reviewer"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


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
    pairs = pairs.sort_values(["priority", "pair_id"], ascending=[False, True]).to_dict("records")
    for pair in pairs:  # the passage cut where the item's cited spans start and end, to mark them
        pair["passage_parts"] = highlight_parts(pair.get("chunk_text") or "", pair.get("chunk_id"),
                                                pair.get("evidence_spans"))
    return pairs


def _reviewer(request: Request) -> str:
    return unquote(request.cookies.get(REVIEWER_COOKIE, ""))


class DatabaseBusy(Exception):
    """A run held the database longer than the page waits."""


class BasicAuthSignIn:
    """HTTP basic auth with the reviewers' password: the user name is the reviewer's
    name, kept in the request scope under SIGNED_IN."""

    def __init__(self, app: ASGIApp, password: str) -> None:
        self.app, self.password = app, password.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name = self.signed_in(Headers(scope=scope).get("authorization", ""))
        if name is None:
            await PlainTextResponse(
                "Sign in to review: your name as the user name, the reviewers' password as the password.",
                status_code=401, headers={"WWW-Authenticate": 'Basic realm="synth_assets review", charset="UTF-8"'},
            )(scope, receive, send)
            return
        scope[SIGNED_IN] = name
        await self.app(scope, receive, send)

    def signed_in(self, authorization: str) -> str | None:
        """The reviewer's name when `authorization` carries it with the right password."""
        kind, _, credentials = authorization.partition(" ")
        if kind.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        name, _, password = decoded.partition(b":")
        # Browsers send UTF-8 when asked (charset="UTF-8"); older ones Latin-1, which always decodes.
        try:
            name_text = name.decode("utf-8")
        except UnicodeDecodeError:
            name_text = name.decode("latin-1")
        if not hmac.compare_digest(password, self.password) or not name_text.strip():
            return None
        return name_text.strip()


def is_loopback(host: str) -> bool:
    """Whether `host` (a page_url's host name) is only reachable from this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name: it may resolve anywhere
        return False


def build_app(database: PipelineDatabase, *, page_url: str = DEFAULT_REVIEW_PAGE_URL,
              allowed_hosts: Iterable[str] = (), password: str | None = None) -> Starlette:
    """The review page on this database, answering for page_url's host (and
    `allowed_hosts`); with `password`, every request signs in (HTTP basic auth).

    A request waits for the database at most `database.lock_timeout_s` (main sets it
    from SYNTH_ASSETS_REVIEW_LOCK_WAIT_S) for this process's connection and as long
    again for the file."""
    host = urlsplit(page_url).hostname or ""
    hosts = {host, *allowed_hosts, *(LOOPBACK_NAMES if is_loopback(host) else ())}
    hosts |= {f"[{name}]" for name in hosts if ":" in name and not name.startswith("[")}  # IPv6, as Host has it
    # The form token: a page on another site can make the browser post the form, but
    # cannot read this, which only the review page's own pages show.
    secret = secrets.token_bytes(32)
    # DuckDB's in-process handling of one file opened from several threads is not ours
    # to rely on ("Unique file handle conflict" is not a lock error): one at a time.
    one_at_a_time = threading.Lock()
    wait_s = database.lock_timeout_s

    def form_token(request: Request) -> str:
        return hmac.new(secret, request.scope.get(SIGNED_IN, "").encode(), "sha256").hexdigest()

    @contextmanager
    def connection():
        if not one_at_a_time.acquire(timeout=wait_s):
            raise DatabaseBusy(f"another request of this page held the database for {wait_s:.0f} s")
        try:
            with database.get_connection() as con:
                yield con
        except duckdb.IOException as error:
            if not is_lock_error(error):
                raise
            raise DatabaseBusy(str(error)) from None
        finally:
            one_at_a_time.release()

    def read(query, *args):
        with connection() as con:
            return query(con, *args)

    def busy(request: Request, fields: dict | None = None, *, message: str | None = None) -> Response:
        """The answer when a run holds the database: reload, or (a verdict) press again."""
        return TEMPLATES.TemplateResponse(request, "review_retry.html", {
            "title": "The pipeline is writing", "fields": fields, "resend": fields is not None,
            "document_id": request.path_params.get("document_id"), "signed_in": request.scope.get(SIGNED_IN),
            "csrf_token": form_token(request), "message": message, "busy": True,
        }, status_code=503, headers={"Retry-After": str(max(1, round(wait_s)))})

    async def index(request: Request) -> Response:
        try:
            documents = await run_in_threadpool(read, _documents)
        except DatabaseBusy:
            return busy(request)
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
            "signed_in": request.scope.get(SIGNED_IN), "csrf_token": form_token(request),
            "saved": request.query_params.get("saved"),
            "reviewed": sum(pair["verdict"] is not None for pair in pairs),
        }, status_code=status_code)

    async def document(request: Request) -> Response:
        try:
            return await run_in_threadpool(document_page, request, request.path_params["document_id"])
        except DatabaseBusy:
            return busy(request)

    async def verdict(request: Request) -> Response:
        document_id = request.path_params["document_id"]
        # Browsers post plain forms url-encoded; the standard library reads that, so
        # Starlette's multipart parser (another package) is not needed.
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return Response("the verdict form is posted as application/x-www-form-urlencoded", status_code=415)
        fields = {name: values[-1] for name, values in
                  parse_qs((await request.body()).decode("utf-8"), keep_blank_values=True).items()}
        if not hmac.compare_digest(fields.get("csrf_token", "").encode(), form_token(request).encode()):
            # No form to press again here: that would send another site's text with a good token.
            return TEMPLATES.TemplateResponse(request, "review_retry.html", {
                "title": "Not saved", "fields": fields, "resend": False, "busy": False,
                "document_id": request.path_params["document_id"]}, status_code=403)
        pair_id, choice = fields.get("pair_id", ""), fields.get("verdict", "")
        signed_in = request.scope.get(SIGNED_IN)
        reviewer, reason = signed_in or fields.get("reviewer", "").strip(), fields.get("reason", "").strip()
        # Browsers send a textarea's line breaks as CRLF, whatever the text had.
        question, answer = (fields[name].replace("\r\n", "\n") if name in fields else None
                            for name in ("question", "answer"))

        def save() -> Response:
            if choice == "reject" and not reason:
                raise ValueError("a rejection needs a reason: say what is wrong with the pair")
            with connection() as con:
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
        except DatabaseBusy:
            return busy(request, fields)
        except ValueError as error:
            try:
                response = await run_in_threadpool(document_page, request, document_id, status_code=400, error={
                    "pair_id": pair_id, "message": str(error), "fields": fields})
            except DatabaseBusy:
                return busy(request, fields, message=str(error))
        if reviewer and not signed_in:
            response.set_cookie(REVIEWER_COOKIE, quote(reviewer), max_age=REVIEWER_COOKIE_DAYS * 86400,
                                samesite="lax")
        return response

    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=sorted(hosts), www_redirect=False)]
    if password is not None:
        middleware.append(Middleware(BasicAuthSignIn, password=password))
    return Starlette(middleware=middleware, routes=[
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
    review = settings.resources["review"]
    try:
        host, port = host_and_port(review.page_url)
        password = reviewers_password(review.password_env, os.environ)
        if password is None and not is_loopback(host):
            raise ValueError(
                f"SYNTH_ASSETS_REVIEW_PAGE_URL={review.page_url!r} is reachable from other machines, where "
                "anyone could write verdicts: set SYNTH_ASSETS_REVIEW_PASSWORD_ENV to the name of a variable "
                "holding the reviewers' password (they sign in with it), or listen on 127.0.0.1")
    except ValueError as error:
        print(f"synth_assets review page: {error}", file=sys.stderr)
        return 2
    # A request waits this long for a run's write, then is answered (see the module).
    pipeline = settings.resources["duckdb"]
    database = type(pipeline)(**{**pipeline.model_dump(), "lock_timeout_s": review.lock_wait_s})
    app = build_app(database, page_url=review.page_url, allowed_hosts=review.allowed_hosts, password=password)
    signing_in = " (reviewers sign in)" if password is not None else ""
    print(f"review page on {review.page_url}{signing_in}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


def reviewers_password(password_env: str | None, environ) -> str | None:
    """The password in the variable `password_env` names; None when it names none."""
    if not password_env:
        return None
    password = environ.get(password_env, "")
    if not password:
        raise ValueError(f"{password_env} (named by SYNTH_ASSETS_REVIEW_PASSWORD_ENV) is not set or empty: "
                         "put the reviewers' password there")
    return password


if __name__ == "__main__":
    sys.exit(main())
