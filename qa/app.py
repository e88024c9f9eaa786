"""The application layer every front end uses: where the index lives, opening it (building it
first through the ``Builds`` a front end hands in, or waiting for a writer), status, an article
as citations refer to it; the long-running ``Service`` servers share is ``qa.service``'s (also
importable from here).

The CLI, the HTTP API and the Slack bot call these; none of them re-implements them. Building
is the ingest wing's (``index.ingest.builder.Builder``): this layer reads indexes and never
imports it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from index.docs import check_docs, docs_changes
from index.errors import IndexMissing, IndexOutdated, QAError
from index.models.export import check_query_model, export_folder
from index.models.spec import from_manifest
from index.storage.layout import is_being_written
from index.storage.manifest import READER_VERSION, expected, read_by_another, read_manifest
from index.storage.reader import Store
from index.storage.vectors import STALE_AFTER

from .cite import article
from .engine import Engine
from .feedback import Feedback, Judged, feedback_path
from .filters import make_filters, parse_date
from .ranking import RankingConfig
from .results import Answer
from .service import Busy as Busy
from .service import Service as Service
from .service import TimedOut as TimedOut
from .watch import Run, Watch, Watches, check_channel, check_webhook, run, standing_question
from .watch_slack import destinations

PROJECT_SEEDS = Path(__file__).resolve().parent.parent / "seeds"
Say = Callable[[str], None]
OpenEngine = Callable[[], Engine]


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
        try:
            return Path(read_manifest(self.index).get("docs_dir") or self.docs)
        except QAError:
            return self.docs


class Builds(Protocol):
    """What ``open_engine`` needs of a builder (``index.ingest.builder.Builder``): the model
    stand-in and export cache it builds with, where it tells, and a build or update that waits
    for another writer."""

    @property
    def embedder(self) -> Any: ...

    @property
    def model_cache(self) -> Path | None: ...

    @property
    def warn(self) -> Say: ...

    def notice(self, message: str) -> None: ...

    def run_or_wait(self, docs: Path, index: Path, update: bool) -> None: ...


# Opening an engine for questions compares the docs folder with the index (a warning when
# they differ) only up to this many files: above, a stat of every file would cost each
# `qa ask` seconds (a folder of 500,000 articles).
CHECK_DOCS_UP_TO = 20_000


def open_engine(
    paths: Paths,
    builder: Builds,
    *,
    refresh: bool = False,
    ranking: RankingConfig | None = None,
) -> Engine:
    """The engine over ``paths.index``, built first by ``builder`` when there is none. When the
    docs changed since it was built: updated first with ``refresh``, else a warning."""
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
    not at the next question (and without ``embedder``, the model's files against theirs)."""
    store = Store(paths.index, expect=expected(embedder))
    try:
        if verify:
            store.verify()
            if embedder is None:
                model = from_manifest(store.manifest["model"], paths.index)
                model.verified()
                check_query_model(export_folder(paths.index, model), full=True)
        manifest, files = store.manifest, store.files
    finally:
        store.close()
    docs = paths.indexed_docs()
    changes = docs_changes(docs, files)
    # This qa reads articles differently from the one that built the index (cleaning, titles):
    # an update re-reads them, keeping the vectors of passages that come out the same.
    reread = read_by_another(manifest)
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
        "reader": {"index": manifest.get("reader_version"), "this_qa": READER_VERSION},
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


def judged(paths: Paths, since: str | None = None) -> list[Judged]:
    """Readers' verdicts on the answers from the index at ``paths.index``, oldest first
    (``since``: a date, YYYY[-MM[-DD]], only those on or after it); none when nothing was
    recorded."""
    since = parse_date(since, "--since")
    if not feedback_path(paths.index).exists():
        return []
    db = Feedback.of_index(paths.index)
    try:
        return list(db.judged(since))
    finally:
        db.close()


def check_watches(engine: Engine, dry_run: bool = False) -> Run | None:
    """The standing questions checked over what the last update added and what is pending
    sent (``qa.watch.run``: webhooks, and Slack when ``SLACK_BOT_TOKEN`` is set); None when
    the index has no standing questions."""
    if not Watches.exists_for(engine.index_dir):
        return None
    token = os.environ.get("SLACK_BOT_TOKEN", "").strip() or None
    watches = Watches.of_index(engine.index_dir)
    try:
        tell = destinations(token, os.environ.get("SLACK_API_URL") or None,
                            Feedback.of_index(engine.index_dir) if token else None)
        return run(engine, watches, tell, dry_run=dry_run)
    finally:
        watches.close()


def add_watch(paths: Paths, open_engine: OpenEngine, question: str, *, slack: str | None = None,
              webhook: str | None = None, source: str | None = None, since: str | None = None,
              via: str = "cli") -> tuple[Watch, Answer | None]:
    """A standing question added to the index at ``paths.index``, with the archive's answer
    now as its baseline. The question, filters and destinations are checked before
    ``open_engine`` loads anything."""
    standing_question(question)
    filters = make_filters(source, since)
    check_channel(slack)
    check_webhook(webhook)
    engine = open_engine()
    watches = Watches.of_index(paths.index)
    try:
        return watches.add(question, slack=slack, webhook=webhook, filters=filters, via=via,
                           engine=engine)
    finally:
        watches.close()
        engine.close()


def list_watches(paths: Paths) -> tuple[list[Watch], dict[int, int]]:
    """The standing questions of the index at ``paths.index`` and the findings each
    reported (by watch id)."""
    watches = Watches.of_index(paths.index)
    try:
        return watches.all(), watches.counts()
    finally:
        watches.close()


def remove_watch(paths: Paths, watch: int) -> Watch:
    """Remove standing question ``watch`` (and what was recorded for it)."""
    watches = Watches.of_index(paths.index)
    try:
        return watches.remove(watch)
    finally:
        watches.close()


def run_watches(paths: Paths, open_engine: OpenEngine, dry_run: bool = False) -> Run | None:
    """``check_watches`` over the engine ``open_engine`` opens, closed after; None, with
    nothing opened, when the index has no standing questions."""
    if not Watches.exists_for(paths.index):
        return None
    engine = open_engine()
    try:
        return check_watches(engine, dry_run)
    finally:
        engine.close()


def check_after_update(paths: Paths, open_engine: OpenEngine, warn: Say) -> Run | None:
    """``run_watches`` after an update: a failure is a warning (the update is done)."""
    try:
        return run_watches(paths, open_engine)
    except QAError as error:
        warn(f"the index is updated, but checking the standing questions failed: {error}")
        return None


def show(index: Path, source: str, embedder: Any = None) -> tuple[dict[str, Any], list[str]]:
    """The article ``source`` names in the index at ``index``, as citations refer to it
    (``qa.cite.article``), with warnings (a text file changed since it was indexed)."""
    store = Store(index, expect=expected(embedder))
    try:
        return article(store, source)
    finally:
        store.close()
