"""The HTTP API: FastAPI over one warm ``Service``.

``POST /ask`` returns the same JSON object as ``qa ask --json``; ``POST /feedback`` records a
verdict on an answer (``qa feedback export`` turns them into ``qa eval`` questions); ``GET
/health`` says what is loaded; ``GET /`` is the search page (``qa.web``) and ``GET /show``
an article's stored text with a cited span marked; OpenAPI docs are at ``/docs``.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from index.errors import QAError, QuestionError

from . import web
from .feedback import FeedbackError
from .filters import Filters, make_filters, today
from .results import Answer, Passage
from .service import Busy, Service, TimedOut
from .watch_api import add_watch_routes

log = logging.getLogger("qa.api")


class AskRequest(BaseModel):
    """A question and how many passages to return, optionally filtered."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"question": "How many rockets landed at the Taji base?", "k": 3}]
        },
    )

    # The schema says what the cleaner keeps: at least one character that is not space, a
    # control character, a bidi override or a lone surrogate (others are refused with 400).
    question: str = Field(
        description="The question in plain English.",
        json_schema_extra={
            "minLength": 1,
            "pattern": "[^\\s\\x00-\\x1f\\x7f-\\x9f\\u202a-\\u202e\\u2066-\\u2069"
                       "\\ud800-\\udfff]",
        },
    )
    # Strict: the schema says integer and boolean, so `true` is not k=1 and 0 is not false.
    k: int = Field(5, ge=1, le=100, strict=True, description="How many passages to return.")
    source: str | None = Field(
        None, description="Only articles whose file name or outlet contains this."
    )
    since: str | None = Field(
        None, description="Only articles dated on or after (YYYY-MM-DD, YYYY-MM or YYYY)."
    )
    until: str | None = Field(
        None, description="Only articles dated on or before (YYYY-MM-DD, YYYY-MM or YYYY)."
    )
    show_weak: bool = Field(
        False, strict=True,
        description="Return the closest passages even when the answer is refused.",
    )
    as_of: str | None = Field(
        None, description="Answer as of this date (YYYY[-MM[-DD]]; default: today): later "
        "articles are not used."
    )

    _parsed: Filters = PrivateAttr(default_factory=Filters)

    @model_validator(mode="after")
    def _filters(self) -> AskRequest:
        try:
            self._parsed = make_filters(self.source, self.since, self.until,
                                        self.as_of or today())
        except QuestionError as error:
            raise ValueError(str(error).replace("--", "")) from None
        return self

    @property
    def filters(self) -> Filters:
        return self._parsed


class AnswerOut(BaseModel):
    """The JSON object `qa ask --json` prints (passages are empty for a refused answer unless
    show_weak)."""

    question: str
    answered: bool
    passages: list[Passage]
    reason: str | None = Field(
        None, description="Why the archive does not answer (null when it does).")


class ErrorOut(BaseModel):
    error: str


# The error bodies POST routes may answer with (all {"error"}).
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 413, 415, 422, 503)}


class FeedbackRequest(BaseModel):
    """A reader's verdict on the answer to a question: on the whole answer, or with ``rank``
    (and/or ``source``) on one finding. The answer judged is the one the served index gives
    now, recorded with the verdict."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"question": "How many rockets landed at the Taji "
                                                     "base?", "verdict": "up", "rank": 1}]},
    )

    question: str = Field(min_length=1)
    verdict: Literal["up", "down"]
    rank: int | None = Field(None, ge=1, le=100, strict=True)  # `true` is not rank 1
    source: str | None = Field(None, min_length=1, max_length=2_000)
    as_of: str | None = Field(None, description="The date the question was answered as of.")


class FeedbackOut(BaseModel):
    id: int
    answer: int


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message}, headers=headers)


class Limits:
    """Pure ASGI middleware run before the app reads a body: a Content-Length over
    ``max_body`` is 413 at once, and a body that grows past it while streaming is 413; a POST
    whose Content-Type is not JSON is 415; with ``token``, requests other than /health and
    the docs need ``Authorization: Bearer TOKEN`` (401 otherwise)."""

    OPEN = ("/health", "/docs", "/openapi.json", "/static-offline-docs")

    def __init__(self, app: Any, max_body: int, token: str | None = None):
        self.app, self.max_body, self.token = app, max_body, token

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        # Small bodies only: read it here, counting, and hand it on once it is complete.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await self._too_large()(scope, receive, send)
                return
            if not message.get("more_body"):
                break
        handed = False

        async def replay() -> Any:
            nonlocal handed
            if handed:
                return await receive()  # later calls see a disconnect, as the app expects
            handed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    def _refusal(self, scope: Any, headers: dict[str, str]) -> JSONResponse | None:
        import hmac

        path = scope.get("path", "")
        if self.token and not path.startswith(self.OPEN):
            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return _error(401, "missing or wrong bearer token: send Authorization: Bearer "
                                   "$QA_API_TOKEN", {"WWW-Authenticate": "Bearer"})
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            return self._too_large()
        if scope.get("method") == "POST":
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                return _error(415, "send the request body as JSON (Content-Type: "
                                   "application/json)")
        return None

    def _too_large(self) -> JSONResponse:
        return _error(413, f"request body over {self.max_body:,} bytes: ask a shorter question")


def create_api(
    service: Service, *, token: str | None = None, max_body: int = 64 * 1024,
    show_paths: bool = False,
) -> Any:
    """The API app over ``service`` (loaded once, shared by all requests).

    ``token``: the bearer token requests must carry. ``max_body``: the largest request body
    accepted. ``show_paths``: include absolute server paths in citations and /health
    (otherwise a citation's ``path`` is relative to the docs folder). Verdicts go to the
    service's feedback database."""
    from fastapi_offline import FastAPIOffline

    api = FastAPIOffline(
        title="qa — cited answers from a news archive",
        description="Retrieval question answering: passages with citations, no generated text.",
        version="0.1.0",
    )
    api.state.service = service
    _error_handlers(api)
    _answer_routes(api, service, show_paths)
    _page_routes(api, service)
    add_watch_routes(api, service, ERRORS)  # standing questions: /watches

    @api.get("/health", summary="What is served, and whether it is the current version")
    async def health() -> dict[str, Any]:
        # async on purpose: answered on the event loop, never queued behind questions.
        return service.health(paths=show_paths)

    return Limits(api, max_body=max_body, token=token)


def _error_handlers(api: Any) -> None:
    """Every error body is ``{"error": ...}`` (422 adds the validation ``detail``)."""

    @api.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [f"{_location(e['loc'])}: {e['msg']}" for e in error.errors()]
        return JSONResponse(
            status_code=422,
            content={
                "error": "invalid request body — " + "; ".join(problems),
                "detail": [{k: e[k] for k in ("loc", "msg", "type")} for e in error.errors()],
            },
        )

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail), getattr(error, "headers", None))


def _answer_routes(api: Any, service: Service, show_paths: bool) -> None:
    """``POST /ask`` and ``POST /feedback``."""

    @api.post(
        "/ask",
        response_model=AnswerOut,
        responses=ERRORS,
        summary="Answer a question with cited passages",
    )
    async def ask(body: AskRequest, request: Request) -> Any:
        answer = await _answer(service, request, body.question, body.k, body.filters)
        if not isinstance(answer, Answer):
            return _error(*answer) if answer[0] != 499 else Response(status_code=499)
        warning = "; ".join(answer.warnings).encode("ascii", "replace").decode()
        headers = {"X-QA-Warning": warning} if warning else None
        data = answer.to_dict(body.show_weak)
        if not show_paths:
            _relative_paths(data, service)
        return JSONResponse(data, headers=headers)

    @api.post(
        "/feedback", status_code=201, response_model=FeedbackOut,
        responses=ERRORS,
        summary="Record a verdict (up or down) on an answer or one of its findings",
    )
    async def give_feedback(body: FeedbackRequest, request: Request) -> Any:
        try:
            filters = make_filters(as_of=body.as_of or today())
        except QuestionError as error:
            return _error(400, str(error))
        answer = await _answer(service, request, body.question, max(5, body.rank or 0),
                               filters)
        if not isinstance(answer, Answer):
            return _error(*answer) if answer[0] != 499 else Response(status_code=499)
        try:
            shown = service.record_shown(answer, as_of=filters.as_of, via="api")
            verdict = service.judge(shown, body.verdict, rank=body.rank, source=body.source)
        except FeedbackError as error:
            return _error(400, str(error))
        except QAError as error:
            log.error("recording feedback failed: %s", error)
            return _error(503, "feedback cannot be recorded right now; the server log says why")
        return JSONResponse({"id": verdict, "answer": shown}, status_code=201)


def _page_routes(api: Any, service: Service) -> None:
    """The search page ``GET /`` and an article's stored text ``GET /show`` (``qa.web``)."""
    from fastapi.responses import HTMLResponse
    from starlette.concurrency import run_in_threadpool

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def search_page(request: Request) -> Any:
        params = {k: request.query_params.get(k, "").strip() for k in web.FIELDS}
        weak = request.query_params.get("weak") == "1"
        if not params["q"]:
            return HTMLResponse(web.page(params))
        try:
            k = max(1, min(int(params["k"] or 5), 20))
            filters = make_filters(params["source"] or None, params["since"] or None,
                                   params["until"] or None, params["as_of"] or today())
        except (QuestionError, ValueError) as error:
            return HTMLResponse(web.page(params, error=str(error).replace("--", "")), 400)
        answer = await _answer(service, request, params["q"], k, filters)
        if not isinstance(answer, Answer):
            status, message, headers = answer
            if status == 499:
                return Response(status_code=499)
            return HTMLResponse(web.page(params, error=message), status, headers=headers)
        data = answer.to_dict(weak)
        _relative_paths(data, service)
        return HTMLResponse(web.page(params, data, weak=weak, notes=answer.warnings))

    @api.get("/show", response_class=HTMLResponse, include_in_schema=False)
    async def show_page(source: str, span: str = "") -> Any:
        try:  # the warm store, off the event loop
            article, _ = await run_in_threadpool(service.show, source)
        except QAError as error:
            return HTMLResponse(web.page({}, error=str(error)), 404)
        start = end = None
        if ":" in span:
            first, _, last = span.partition(":")
            if first.isdigit() and last.isdigit():
                start, end = int(first), int(last)
        return HTMLResponse(web.article_page(article, start, end))


async def _answer(
    service: Service, request: Request, question: str, k: int, filters: Filters
) -> Answer | tuple[int, str, dict[str, str] | None]:
    """The answer, or (status, message, headers) of the error to send instead: 400 for a
    bad question, 503 when busy, late or failing (details in the log), 499 when the client
    went away (nobody reads a response)."""
    try:
        future = service.submit(question, k=k, filters=filters)
        answer = await _wait(future, request, service.timeout)
    except QuestionError as error:
        return 400, str(error), None
    except (Busy, TimedOut) as error:
        return 503, str(error), {"Retry-After": "1"}
    except QAError as error:
        log.error("answering failed: %s", error)
        return 503, "the archive cannot answer right now; the server log says why", None
    return answer if answer is not None else (499, "", None)


async def _wait(future: Any, request: Request, timeout: float) -> Answer | None:
    """The future's answer; None if the client disconnects first (a question still waiting
    is then dropped); TimedOut after ``timeout`` seconds."""
    import asyncio

    wrapped = asyncio.wrap_future(future)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        done, _ = await asyncio.wait({wrapped}, timeout=0.25)
        if done:
            return wrapped.result()
        if await request.is_disconnected():
            future.cancel()
            return None
        if loop.time() > deadline:
            future.cancel()
            raise TimedOut(f"no answer within {timeout:g} s: try again")


def _relative_paths(data: dict[str, Any], service: Service) -> None:
    """Citations' paths relative to the docs folder, not the server's absolute paths."""
    import os

    root = service.docs_dir or ""
    for passage in data["passages"]:
        for citation in [passage["citation"], *passage["also"]]:
            path = citation.get("path") or ""
            if root and os.path.isabs(path):
                try:
                    citation["path"] = os.path.relpath(path, root)
                except ValueError:  # another drive (Windows)
                    citation["path"] = os.path.basename(path)
