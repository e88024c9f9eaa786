"""One warm engine shared by long-running front ends (the HTTP API and the Slack bot).

``Service`` loads everything a query needs up front, serialises questions with a lock (the
engine's lazily loaded parts and its sqlite connection are not meant for concurrent use) and
forwards optional filters only to an engine that accepts them.
"""

from __future__ import annotations

import inspect
import threading
from datetime import date
from typing import Any

from index.errors import QuestionError

from .engine import Engine
from .results import Answer

FILTERS = ("source", "since", "until")


class Service:
    """A loaded ``Engine`` behind a lock, plus what a health check reports."""

    def __init__(self, engine: Engine, warm: bool = True):
        self.engine = engine
        self._lock = threading.Lock()
        parameters = inspect.signature(engine.ask).parameters
        self.filters = tuple(name for name in FILTERS if name in parameters)
        self.model_loaded = False
        if warm:
            self.warm()

    def warm(self) -> None:
        """Load everything a question needs now (query model, documents, keyword index and
        whatever else the engine loads lazily) by answering one, not on the first request."""
        with self._lock:
            self.engine.ask("What does the archive say?", k=1)
            self.model_loaded = True

    def ask(
        self,
        question: str,
        k: int = 5,
        source: str | None = None,
        since: date | str | None = None,
        until: date | str | None = None,
    ) -> Answer:
        """``engine.ask`` with the filters that were given; QuestionError for a filter this
        engine cannot apply (silently ignoring it would answer a different question)."""
        given = {"source": source, "since": since, "until": until}
        filters: dict[str, Any] = {}
        for name, value in given.items():
            if value is None:
                continue
            if name not in self.filters:
                raise QuestionError(f"filtering by {name} is not supported by this version of qa")
            filters[name] = value.isoformat() if isinstance(value, date) else value
        with self._lock:
            answer = self.engine.ask(question, k=k, **filters)
            self.model_loaded = True
            return answer

    def health(self) -> dict[str, Any]:
        """What is loaded: index location and size, model, and how often the model was loaded."""
        from index.embed import OnnxEmbedder

        manifest = self.engine.store.manifest
        return {
            "status": "ok",
            "index_loaded": True,
            "index": str(self.engine.index_dir),
            "documents": manifest["counts"]["documents"],
            "passages": manifest["counts"]["passages"],
            "model": manifest["model"]["name"],
            "built": manifest.get("created"),
            "updated": manifest.get("updated"),
            "model_loaded": self.model_loaded,
            "model_loads": OnnxEmbedder.loads,
            "filters": list(self.filters),
        }
