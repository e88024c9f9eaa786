"""Standing questions over HTTP: ``POST /watches``, ``GET /watches``, ``DELETE
/watches/{id}`` (the same bearer-token rules as ``/ask``; ``qa.api`` adds these routes)."""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import Path as FastPath
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from index.errors import QAError, QuestionError

from .filters import make_filters
from .watch import Watch, WatchError, Watches


class WatchRequest(BaseModel):
    """A standing question and where to tell when a new article answers it (neither
    ``slack`` nor ``webhook``: only `qa watch run` and the server's log say so)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"question": "Who is the new commander of the Quds "
                                                     "Force?",
                                         "webhook": "https://example.com/hooks/qa"}]},
    )

    question: str = Field(min_length=1, description="The standing question.")
    slack: str | None = Field(None, max_length=80,
                              description="A Slack channel ID (or #name) to post findings to.")
    webhook: str | None = Field(None, max_length=2_000,
                                description="A URL each finding is POSTed to as JSON.")
    since: str | None = Field(None, description="Only articles dated on or after this.")
    source: str | None = Field(None, description="Only articles whose file name or outlet "
                                                 "contains this.")


class WatchOut(BaseModel):
    id: int
    question: str
    slack: str | None
    webhook: str | None
    source: str | None
    since: str | None
    created: str
    user: str | None
    via: str | None
    findings: int = Field(0, description="Findings reported so far.")


def _out(watch: Watch, counts: dict[int, int]) -> dict[str, Any]:
    return {**watch.to_dict(), "findings": counts.get(watch.id, 0)}


def add_watch_routes(api: Any, service: Any, errors: dict[int | str, Any]) -> None:
    """Add the /watches routes to ``api`` over ``service``'s index (its watch database is
    opened on first use)."""
    from starlette.concurrency import run_in_threadpool

    opened: list[Watches] = []
    lock = threading.Lock()

    def watches() -> Watches:
        with lock:
            if not opened:
                opened.append(Watches.of_index(service.index_dir))
            return opened[0]

    def add(body: WatchRequest) -> tuple[Watch, bool]:
        with service.leased() as engine:
            watch, answer = watches().add(body.question, slack=body.slack,
                                          webhook=body.webhook, via="api", engine=engine,
                                          filters=make_filters(body.source, body.since))
        return watch, bool(answer and answer.answered)

    @api.post("/watches", status_code=201, responses=errors,
              summary="Add a standing question: told when a new article answers it")
    async def add_watch(body: WatchRequest) -> Any:
        try:
            watch, answered = await run_in_threadpool(add, body)
        except (QuestionError, WatchError) as error:
            return JSONResponse({"error": str(error).replace("--", "")}, status_code=400)
        except QAError as error:
            return JSONResponse({"error": f"cannot add the standing question: {error}"},
                                status_code=503)
        return JSONResponse({"watch": _out(watch, {}), "answered_now": answered},
                            status_code=201)

    @api.get("/watches", summary="The standing questions")
    async def list_watches() -> Any:
        db = await run_in_threadpool(watches)
        counts = db.counts()
        return {"watches": [_out(w, counts) for w in db.all()]}

    @api.delete("/watches/{watch}", summary="Remove a standing question",
                responses={404: errors.get(400, {})})
    async def remove_watch(
        watch: Annotated[int, FastPath(ge=1, le=2**63 - 1)],  # SQLite's integers: 500 beyond
    ) -> Any:
        try:
            removed = await run_in_threadpool(watches().remove, watch)
        except WatchError as error:
            return JSONResponse({"error": str(error)}, status_code=404)
        return {"removed": _out(removed, {})}
