"""The application layer every front end uses: where the index lives, opening it (building it
first, or waiting for a writer), the answer contract, status and health.

The CLI, the HTTP API and the Slack bot call these; none of them re-implements them.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from index.errors import IndexLocked, IndexMissing, QAError
from index.store import Progress

from .engine import Engine
from .filters import Filters, make_filters
from .ranking import RankingConfig
from .results import Answer

PROJECT_SEEDS = Path(__file__).resolve().parent.parent / "seeds"
Say = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


def cache_root() -> Path:
    """Where indexes and the chat history live: ``$QA_HOME/newsqa``, else the platform's user
    cache folder (``~/.cache/newsqa`` on Linux, honouring ``XDG_CACHE_HOME``)."""
    if os.environ.get("QA_HOME"):
        return Path(os.environ["QA_HOME"]) / "newsqa"
    from platformdirs import user_cache_path

    return user_cache_path("newsqa", appauthor=False)


@dataclass(frozen=True)
class Paths:
    docs: Path
    index: Path
    docs_given: bool  # False: the default docs, so an existing index's own folder wins

    @classmethod
    def resolve(cls, docs: Path | None = None, index: Path | None = None) -> Paths:
        """Without ``index`` the index lives in the cache folder, one per docs folder."""
        given = docs is not None
        if docs is None:
            docs = PROJECT_SEEDS if PROJECT_SEEDS.is_dir() else Path.cwd() / "seeds"
        docs = docs.expanduser()
        if index is None:
            resolved = docs.resolve()
            tag = hashlib.sha256(str(resolved).encode()).hexdigest()[:10]
            index = cache_root() / "indexes" / f"{resolved.name}-{tag}"
        return cls(docs, index.expanduser(), given)

    def indexed_docs(self) -> Path:
        """The docs folder to compare with: without --docs, the one the index was built from."""
        if self.docs_given:
            return self.docs
        from index.store import read_manifest

        try:
            return Path(read_manifest(self.index).get("docs_dir") or self.docs)
        except QAError:
            return self.docs


@dataclass
class Builder:
    """How to build or update an index: the embedder and token counter (default: the real
    model), and where progress, warnings and notices go."""

    embedder: Any = None
    count_tokens: Any = None
    progress: Progress = _no_progress
    warn: Say = _quiet
    notice: Say = _quiet

    def run(self, docs: Path, index: Path, update: bool = False) -> Any:
        from index.pipeline import build_index, update_index

        run = update_index if update else build_index
        return run(docs, index, embedder=self.embedder, count_tokens=self.count_tokens,
                   progress=self.progress, warn=self.warn)

    def run_or_wait(self, docs: Path, index: Path, update: bool) -> None:
        """Build or update; if another qa is writing the index, wait for it and then update
        (cheap when the other writer already did the work) instead of failing."""
        from index.store import CURRENT, writer_lock

        try:
            self.run(docs, index, update=update)
            return
        except IndexLocked:
            self.notice(f"another qa process is writing the index at {index}: waiting for it")
        with writer_lock(index, wait=True):
            pass
        if update or not (index / CURRENT).exists():
            self.run(docs, index, update=True)


def open_engine(
    paths: Paths,
    *,
    refresh: bool = False,
    builder: Builder | None = None,
    ranking: RankingConfig | None = None,
) -> Engine:
    """The engine over ``paths.index``, building the index first when there is none. When the
    docs changed since it was built: updated first with ``refresh``, else a warning."""
    from index.pipeline import check_docs, docs_changes

    builder = builder or Builder()
    try:
        engine = Engine(paths.index, embedder=builder.embedder, ranking=ranking)
    except IndexMissing:
        check_docs(paths.docs)
        builder.notice(f"no index yet for {paths.docs}: building it at {paths.index}")
        builder.run_or_wait(paths.docs, paths.index, update=False)
        return Engine(paths.index, embedder=builder.embedder, ranking=ranking)
    docs = paths.indexed_docs()
    changes = docs_changes(docs, engine.store.manifest)
    if changes and refresh:
        engine.close()
        builder.run_or_wait(docs, paths.index, update=True)
        return Engine(paths.index, embedder=builder.embedder, ranking=ranking)
    if changes:
        builder.warn(
            f"docs in {docs} changed since the index was built ({len(changes.added)} added,"
            f" {len(changes.changed)} changed, {len(changes.removed)} removed): answering from"
            " the index as it is; run `qa index update` or pass --refresh"
        )
    return engine


def status(paths: Paths, embedder: Any = None) -> dict[str, Any]:
    """What the index holds and whether its docs changed since it was built. Opening the
    store checks the manifest, file sizes and counts: a stale or damaged index is reported
    here, not at the next question."""
    from index.pipeline import docs_changes, expected_manifest
    from index.store import Store, is_being_written

    if embedder is None:
        from index.model import DIMENSION, MODEL_NAME

        expect = expected_manifest(MODEL_NAME, DIMENSION)
    else:
        expect = expected_manifest(embedder.name, embedder.dimension)
    store = Store(paths.index, expect=expect)
    manifest = store.manifest
    store.close()
    docs = paths.indexed_docs()
    changes = docs_changes(docs, manifest)
    return {
        "index": str(paths.index),
        "docs": str(docs),
        "documents": manifest["counts"]["documents"],
        "passages": manifest["counts"]["passages"],
        "model": manifest["model"]["name"],
        "vector_index": manifest.get("vector_index", {}).get("kind"),
        "built": manifest.get("created"),
        "updated": manifest.get("updated"),
        "up_to_date": not changes,
        "added": changes.added,
        "changed": changes.changed,
        "removed": changes.removed,
        "skipped": sorted(
            name for name, entry in manifest.get("files", {}).items() if entry.get("skipped")
        ),
        "being_written": is_being_written(paths.index),
    }


class Service:
    """One warm engine shared by long-running front ends (the HTTP API, the Slack bot).

    Everything a question needs is loaded up front; questions are answered one at a time
    (the engine's lazily loaded parts and its sqlite connection are not shared across
    threads)."""

    def __init__(self, engine: Engine, warm: bool = True):
        self.engine = engine
        self._lock = threading.Lock()
        self.model_loaded = False
        if warm:
            self.warm()

    def warm(self) -> None:
        """Load the query model, documents and keyword index now, not on the first request."""
        with self._lock:
            self.engine.ask("What does the archive say?", k=1)
            self.model_loaded = True

    def ask(
        self,
        question: str,
        k: int = 5,
        source: str | None = None,
        since: str | None = None,
        until: str | None = None,
        filters: Filters | None = None,
    ) -> Answer:
        """``engine.ask`` with user-given filters (QuestionError for a bad date or range)."""
        if filters is None:
            filters = make_filters(source, since, until)
        with self._lock:
            answer = self.engine.ask(question, k=k, filters=filters)
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
            "filters": ["source", "since", "until"],
        }
