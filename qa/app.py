"""The application layer every front end uses: where the index lives, opening it (building it
first, or waiting for a writer), the answer contract, status and health.

The CLI, the HTTP API and the Slack bot call these; none of them re-implements them.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from index.errors import IndexLocked, IndexMissing, IndexOutdated, QAError
from index.store import Progress

from .engine import Engine
from .filters import Filters, make_filters, today
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
    # One verified export of the query model per model, linked into every index.
    model_cache: Path | None = field(default_factory=lambda: cache_root() / "models")
    # Export columns by article field ("text" → "story_body"); None: as the index was built.
    fields: dict[str, str] | None = None
    # A Ray cluster's address ("auto": the local one) to embed on; None: this machine.
    ray: str | None = None
    # With ``ray``: a folder every node shares, for the embedded blocks (Parquet shards).
    shards: Path | None = None
    # Train the vector index afresh (keeping the vectors of unchanged passages).
    retrain: bool = False

    def run(self, docs: Path, index: Path, update: bool = False) -> Any:
        from index.pipeline import build_index, update_index

        run = update_index if update else build_index
        return run(docs, index, embedder=self.embedder, count_tokens=self.count_tokens,
                   progress=self.progress, warn=self.warn, model_cache=self.model_cache,
                   fields=self.fields, ray=self.ray, retrain=self.retrain,
                   shards=self.shards)

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


# Opening an engine for questions compares the docs folder with the index (a warning when
# they differ) only up to this many files: above, a stat of every file would cost each
# `qa ask` seconds (a folder of 500,000 articles).
CHECK_DOCS_UP_TO = 20_000


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
    options: dict[str, Any] = dict(
        embedder=builder.embedder, ranking=ranking, model_cache=builder.model_cache
    )
    try:
        engine = Engine(paths.index, **options)
    except IndexOutdated:
        builder.notice(f"the index at {paths.index} has an older format: updating it (the "
                       "vectors are kept)")
        builder.run_or_wait(paths.indexed_docs(), paths.index, update=True)
        return Engine(paths.index, **options)
    except IndexMissing:
        check_docs(paths.docs)
        builder.notice(f"no index yet for {paths.docs}: building it at {paths.index}")
        builder.run_or_wait(paths.docs, paths.index, update=False)
        return Engine(paths.index, **options)
    from index.load import read_by_another

    reread = read_by_another(engine.store.manifest)
    if reread and not refresh:
        builder.warn("this qa reads articles differently from the one that built the index: "
                     "answering from the index as it is; run `qa index update` or pass --refresh")
    if not refresh and engine.store.manifest["counts"].get("files", 0) > CHECK_DOCS_UP_TO:
        return engine  # `qa index status` and `qa index update` still compare them all
    docs = paths.indexed_docs()
    changes = docs_changes(docs, engine.store.files)
    if (changes or reread) and refresh:
        engine.close()
        builder.run_or_wait(docs, paths.index, update=True)
        return Engine(paths.index, **options)
    if changes:
        builder.warn(
            f"docs in {docs} changed since the index was built ({len(changes.added)} added,"
            f" {len(changes.changed)} changed, {len(changes.removed)} removed): answering from"
            " the index as it is; run `qa index update` or pass --refresh"
        )
    return engine


def status(paths: Paths, embedder: Any = None, verify: bool = True) -> dict[str, Any]:
    """What the index holds and whether its docs changed since it was built. Opening the
    store checks the manifest, file sizes and counts, and ``verify`` hashes every file and the
    query model against their recorded digests: a stale or damaged index is reported here,
    not at the next question."""
    from index import load
    from index.pipeline import check_query_model, docs_changes, expected_for
    from index.store import Store, is_being_written

    store = Store(paths.index, expect=expected_for(embedder))
    try:
        if verify:
            store.verify()
            check_query_model(paths.index, store.manifest["model"]["name"], full=True)
        manifest, files = store.manifest, store.files
    finally:
        store.close()
    docs = paths.indexed_docs()
    changes = docs_changes(docs, files)
    # This qa reads articles differently from the one that built the index (cleaning, titles):
    # an update re-reads them, keeping the vectors of passages that come out the same.
    reread = load.read_by_another(manifest)
    return {
        "index": str(paths.index),
        "docs": str(docs),
        "documents": manifest["counts"]["documents"],
        "passages": manifest["counts"]["passages"],
        "model": manifest["model"]["name"],
        "vector_index": manifest.get("vector_index", {}).get("kind"),
        "vector_training": _training(manifest),
        "delta": _delta(manifest),
        "built": manifest.get("created"),
        "updated": manifest.get("updated"),
        "up_to_date": not changes and not reread,
        "reader": {"index": manifest.get("reader_version"), "this_qa": load.READER_VERSION},
        "added": changes.added,
        "changed": changes.changed,
        "removed": changes.removed,
        "skipped": sorted(name for name, entry in files.items() if entry.get("skipped")),
        "being_written": is_being_written(paths.index),
        "duplicates": (manifest.get("duplicates") or {}).get("counts", {}),
        "duplicate_examples": (manifest.get("duplicates") or {}).get("examples", []),
        "fields": manifest.get("fields") or {},
        "bad_records": (manifest.get("problems") or {}).get("count", 0),
        "bad_record_examples": (manifest.get("problems") or {}).get("examples", []),
    }


def _training(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """How many passages the IVF index was trained on, and whether that is stale (the
    archive has grown to ``STALE_AFTER`` times that); None for exact (flat) indexes."""
    from index.vectors import STALE_AFTER

    trained_on = manifest.get("vector_index", {}).get("trained_on")
    if not trained_on:
        return None
    passages = manifest["counts"]["passages"]
    return {"trained_on": trained_on, "stale": passages >= STALE_AFTER * trained_on}


def _delta(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """What updates added beside the last whole build (None when there is no delta)."""
    delta = manifest.get("delta")
    if not isinstance(delta, dict):
        return None
    return {"articles": delta["documents"], "passages": delta["passages"],
            "removed_articles": delta["removed"]["documents"],
            "removed_passages": delta["removed"]["passages"], "bound": delta["bound"]}


class UnknownSource(QAError):
    """No article of the index has that source name."""


def show(index: Path, source: str, embedder: Any = None) -> tuple[dict[str, Any], list[str]]:
    """The article ``source`` names in the index at ``index``, as citations refer to it: its
    metadata and the text its offsets index (the stored article text for non-text formats,
    the file's text for .txt/.md). Returns it with warnings (a text file changed since it was
    indexed)."""
    import hashlib

    from index.load import _read_regular
    from index.pipeline import expected_for
    from index.store import Store

    store = Store(index, expect=expected_for(embedder))
    warnings = []
    try:
        doc = store.document_named(source)
        if doc is None:
            near = store.sources_like(source)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise UnknownSource(f"no article {source!r} in the index at {index}{hint}: "
                                "use the source name a citation gives")
        text = store.stored_text(doc.id) if doc.stored else None
    finally:
        store.close()
    if text is None:
        try:
            data = _read_regular(Path(doc.path))
            if hashlib.sha256(data).hexdigest() != doc.sha256:
                warnings.append(f"{doc.path} changed since it was indexed: offsets may not match;"
                                " run `qa index update`")
            text = data.decode(doc.encoding, "replace")
        except OSError as error:
            raise QAError(f"cannot read {doc.path} ({error.strerror or error}): it may have "
                          "moved; run `qa index update`") from None
    return {
        "source": doc.source, "url": doc.url, "path": doc.path, "title": doc.title,
        "date": doc.date, "author": doc.author, "publisher": doc.publisher,
        "language": doc.language, "text": text,
    }, warnings


class Busy(QAError):
    """Every answering slot and queue place is taken: try again shortly (HTTP 503)."""


class TimedOut(QAError):
    """The question waited or ran longer than the service's per-request limit (HTTP 503)."""


class Service:
    """One warm index shared by long-running front ends (the HTTP API, the Slack bot).

    Questions are answered by ``workers`` threads (onnxruntime, FAISS and numpy release the
    GIL; the engine's caches are thread-safe) with at most ``queue`` more waiting: beyond that
    ``submit`` raises Busy at once rather than letting latency grow without bound. A question
    still waiting when its deadline (``timeout`` seconds) passes is dropped unanswered, and a
    front end can ``cancel`` the future of a question nobody waits for any more.

    A watcher thread follows ``CURRENT``: when an update publishes a new version it opens and
    warms it, then switches new questions to it; the old engine (and its lease on the old
    version) is closed when its last question is done. Nothing restarts.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        workers: int = 2,
        queue: int = 16,
        timeout: float = 30.0,
        reload_every: float | None = 1.0,
        warm: bool = True,
    ):
        from concurrent.futures import ThreadPoolExecutor

        self.engine = engine
        self.workers, self.queue, self.timeout = workers, queue, timeout
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="qa-answer")
        self._slots = threading.BoundedSemaphore(workers + queue)
        self._lock = threading.Lock()
        self._users: dict[int, int] = {}  # questions running per engine (by id)
        self._retired: list[Engine] = []
        self._stop = threading.Event()
        self.model_loaded = False
        self.reloads = 0
        self.reload_error: str | None = None
        self.pending = 0
        if warm:
            self.warm()
        self._watcher: threading.Thread | None = None
        if reload_every:
            self._watcher = threading.Thread(
                target=self._watch, args=(reload_every,), name="qa-reload", daemon=True
            )
            self._watcher.start()

    def warm(self, engine: Engine | None = None) -> None:
        """Load the query model, documents and keyword index now, not on the first request."""
        (engine or self.engine).ask("What does the archive say?", k=1)
        self.model_loaded = True

    # --- answering ---------------------------------------------------------------------

    def submit(
        self,
        question: str,
        k: int = 5,
        source: str | None = None,
        since: str | None = None,
        until: str | None = None,
        filters: Filters | None = None,
        as_of: str | None = None,
    ) -> Future[Answer]:
        """Queue a question; QuestionError for bad filters, Busy when the queue is full.
        Answers are as of ``as_of`` (default: today)."""
        import time

        if filters is None:
            filters = make_filters(source, since, until, as_of or today())
        if not self._slots.acquire(blocking=False):
            raise Busy("the archive is answering as many questions as it can: try again shortly")
        deadline = time.monotonic() + self.timeout
        with self._lock:
            self.pending += 1
        try:
            future = self._pool.submit(self._answer, question, k, filters, deadline)
        except RuntimeError:  # shut down
            self._done(None)
            raise Busy("the service is stopping") from None
        future.add_done_callback(self._done)
        return future

    def ask(self, question: str, k: int = 5, **filters: Any) -> Answer:
        """``submit`` and wait for the answer (TimedOut past the service's limit)."""
        from concurrent.futures import TimeoutError as FutureTimeout

        future = self.submit(question, k, **filters)
        try:
            return future.result(timeout=self.timeout)
        except FutureTimeout:
            future.cancel()
            raise TimedOut(f"no answer within {self.timeout:g} s: try again") from None

    def _done(self, future: Any) -> None:
        with self._lock:
            self.pending -= 1
        self._slots.release()

    def _answer(self, question: str, k: int, filters: Filters, deadline: float) -> Answer:
        import time

        if time.monotonic() > deadline:
            raise TimedOut(f"no answer within {self.timeout:g} s: try again")
        engine = self._acquire()
        try:
            answer = engine.ask(question, k=k, filters=filters)
        finally:
            self._release(engine)
        self.model_loaded = True
        return answer

    def _acquire(self) -> Engine:
        with self._lock:
            engine = self.engine
            self._users[id(engine)] = self._users.get(id(engine), 0) + 1
            return engine

    def _release(self, engine: Engine) -> None:
        with self._lock:
            self._users[id(engine)] -= 1
            idle = [e for e in self._retired if not self._users.get(id(e))]
            self._retired = [e for e in self._retired if e not in idle]
        for old in idle:
            self._users.pop(id(old), None)
            old.close()

    # --- following updates -------------------------------------------------------------

    def current(self) -> bool:
        """Whether the version served is the one ``CURRENT`` names now."""
        from index.store import current_version

        try:
            return current_version(self.engine.index_dir) == self.engine.store.version
        except QAError:
            return False

    def reload(self) -> bool:
        """Switch to the live version if it is not the one served; True if it switched. On
        failure the old version keeps answering and ``reload_error`` says why."""
        import logging

        if self.current():
            return False
        old = self.engine
        try:
            new = Engine(old.index_dir, embedder=old.embedder, ranking=old.ranking,
                         model_cache=getattr(old, "model_cache", None),
                         sentence_embedder=old.sentence_embedder)
            self.warm(new)
        except QAError as error:
            if self.reload_error != str(error):
                logging.getLogger("qa.app").warning("still serving %s: %s",
                                                    old.store.version.name, error)
            self.reload_error = str(error)
            return False
        with self._lock:
            self.engine = new
            self.reloads += 1
            self.reload_error = None
            busy = self._users.get(id(old), 0) > 0
            if busy:
                self._retired.append(old)
        if not busy:
            old.close()
        logging.getLogger("qa.app").info("now serving %s", new.store.version.name)
        return True

    def _watch(self, every: float) -> None:
        import logging

        while not self._stop.wait(every):
            try:
                self.reload()
            except Exception:  # never let the watcher die; the next round tries again
                logging.getLogger("qa.app").exception("reloading the index failed")

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            engines = [self.engine, *self._retired]
        for engine in engines:
            engine.close()

    def health(self, paths: bool = False) -> dict[str, Any]:
        """What is served: the version and whether it is current, its size and model, the
        load (questions running or waiting), and how often the model was loaded. Absolute
        paths only with ``paths``."""
        from index.embed import OnnxEmbedder

        engine = self.engine
        manifest = engine.store.manifest
        current = self.current()
        data = {
            "status": "ok" if current or self.reload_error is None else "stale",
            "index_loaded": True,
            "version": engine.store.version.name,
            "current": current,
            "reloads": self.reloads,
            "reload_error": self.reload_error,
            "documents": manifest["counts"]["documents"],
            "passages": manifest["counts"]["passages"],
            "model": manifest["model"]["name"],
            "built": manifest.get("created"),
            "updated": manifest.get("updated"),
            "model_loaded": self.model_loaded,
            "model_loads": OnnxEmbedder.loads,
            "workers": self.workers,
            "queue": self.queue,
            "pending": self.pending,
        }
        if paths:
            data["index"] = str(engine.index_dir)
        return data
