"""The HTTP API: FastAPI over one warm ``Service``.

``POST /ask`` returns the same JSON object as ``qa ask --json``; ``GET /health`` says what is
loaded; OpenAPI docs are at ``/docs``.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from index.errors import QAError, QuestionError

from .engine import Engine
from .service import Service

log = logging.getLogger("qa.api")


class AskRequest(BaseModel):
    """A question and how many passages to return, optionally filtered."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"question": "How many rockets landed at the Taji base?", "k": 3}]
        },
    )

    question: str = Field(description="The question in plain English.")
    k: int = Field(5, ge=1, le=100, description="How many passages to return.")
    source: str | None = Field(None, description="Only passages from this source (file stem).")
    since: date | None = Field(None, description="Only articles dated on or after (YYYY-MM-DD).")
    until: date | None = Field(None, description="Only articles dated on or before (YYYY-MM-DD).")

    @model_validator(mode="after")
    def _dates_in_order(self) -> AskRequest:
        if self.since and self.until and self.since > self.until:
            raise ValueError("since is after until: no article could match")
        return self


class CitationOut(BaseModel):
    source: str
    path: str
    title: str | None
    date: str | None
    author: str | None
    publisher: str | None
    start: int = Field(description="Character offset into the file's text.")
    end: int
    date_inferred: bool = False


class HighlightOut(BaseModel):
    text: str
    start: int
    end: int


class PassageOut(BaseModel):
    rank: int
    score: float
    text: str
    highlight: HighlightOut | None
    citation: CitationOut
    also: list[CitationOut] = []


class AnswerOut(BaseModel):
    """The JSON object `qa ask --json` prints."""

    question: str
    answered: bool
    passages: list[PassageOut]


class ErrorOut(BaseModel):
    error: str


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def create_api(engine: Engine | Service) -> FastAPI:
    """The API app over ``engine``, loaded once and shared (questions are serialised)."""
    service = engine if isinstance(engine, Service) else Service(engine)
    api = FastAPI(
        title="qa — cited answers from a news archive",
        description="Retrieval question answering: passages with citations, no generated text.",
        version="0.1.0",
    )
    api.state.service = service

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

    @api.post(
        "/ask",
        response_model=AnswerOut,
        responses={400: {"model": ErrorOut}, 422: {"model": ErrorOut}},
        summary="Answer a question with cited passages",
    )
    def ask(body: AskRequest) -> Any:
        try:
            answer = service.ask(
                body.question, k=body.k, source=body.source, since=body.since, until=body.until
            )
        except QuestionError as error:
            return JSONResponse(status_code=400, content={"error": str(error)})
        except QAError as error:
            log.error("answering failed: %s", error)
            return JSONResponse(status_code=503, content={"error": str(error)})
        warning = "; ".join(answer.warnings).encode("ascii", "replace").decode()
        headers = {"X-QA-Warning": warning} if warning else None
        return JSONResponse(answer.to_dict(), headers=headers)

    @api.get("/health", summary="What is loaded")
    def health() -> dict[str, Any]:
        return service.health()

    return api
