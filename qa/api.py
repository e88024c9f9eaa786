"""The HTTP API: FastAPI over one warm ``Service``.

``POST /ask`` returns the same JSON object as ``qa ask --json``; ``GET /health`` says what is
loaded; OpenAPI docs are at ``/docs``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from index.errors import QAError, QuestionError

from .app import Service
from .filters import Filters, make_filters
from .results import Passage

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
        False, description="Return the closest passages even when the answer is refused."
    )

    _parsed: Filters = PrivateAttr(default_factory=Filters)

    @model_validator(mode="after")
    def _filters(self) -> AskRequest:
        try:
            self._parsed = make_filters(self.source, self.since, self.until)
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


class ErrorOut(BaseModel):
    error: str


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def create_api(service: Service) -> FastAPI:
    """The API app over ``service``'s engine, loaded once and shared."""
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
            answer = service.ask(body.question, k=body.k, filters=body.filters)
        except QuestionError as error:
            return JSONResponse(status_code=400, content={"error": str(error)})
        except QAError as error:
            log.error("answering failed: %s", error)
            return JSONResponse(status_code=503, content={"error": str(error)})
        warning = "; ".join(answer.warnings).encode("ascii", "replace").decode()
        headers = {"X-QA-Warning": warning} if warning else None
        return JSONResponse(answer.to_dict(body.show_weak), headers=headers)

    @api.get("/health", summary="What is loaded")
    def health() -> dict[str, Any]:
        return service.health()

    return api
