"""The application layer every front end uses: where the index lives, opening it (building it
first, or waiting for a writer), status, an article as citations refer to it; the
long-running ``Service`` servers share is ``qa.service``'s (also importable from here).

The CLI, the HTTP API and the Slack bot call these; none of them re-implements them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from index.errors import IndexLocked, IndexMissing, IndexOutdated, QAError
from index.store import Progress

from .cite import article
from .engine import Engine
from .feedback import Feedback, Judged, feedback_path
from .ranking import RankingConfig
from .service import Busy as Busy
from .service import Service as Service
from .service import TimedOut as TimedOut

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


def export_fields(values: list[str] | None) -> dict[str, str] | None:
    """``NAME=COLUMN`` pairs (``--field text=story_body``) as the export columns to read each
    article field from; ValueError naming the fields for anything else."""
    from index.formats import FIELDS

    if not values:
        return None
    fields = {}
    for value in values:
        name, _, column = value.partition("=")
        if name.strip() not in FIELDS or not column.strip():
            raise ValueError(f"--field {value!r}: use NAME=COLUMN with NAME one of "
                             f"{', '.join(FIELDS)}")
        fields[name.strip()] = column.strip()
    return fields


def fetch(urls: list[str], paths: Paths, builder: Builder, *, feed: bool = False,
          fetcher: Any = None) -> tuple[list[Any], Any]:
    """Download ``urls`` (with ``feed``: every item link of those feeds) into ``paths.docs``
    (robots.txt honoured; a URL that fails is a warning, the rest are kept), then update the
    index over that folder. Returns the downloads and the update's report."""
    from index.fetch import fetch as download

    results = download(urls, paths.docs, feed=feed, warn=builder.warn, fetcher=fetcher)
    saved = [r for r in results if r.path]
    builder.notice(f"fetched {len(saved)} of {len(results)} page(s) into {paths.docs}")
    return results, builder.run(paths.docs, paths.index, update=True)


def judged(paths: Paths, since: str | None = None) -> list[Judged]:
    """Readers' verdicts on the answers from the index at ``paths.index``, oldest first
    (``since``: a date, only those on or after it); none when nothing was recorded."""
    if not feedback_path(paths.index).exists():
        return []
    db = Feedback.of_index(paths.index)
    try:
        return list(db.judged(since))
    finally:
        db.close()


def check_watches(engine: Engine, dry_run: bool = False) -> Any:
    """The standing questions checked over what the last update added and what is pending
    sent (``qa.watch.run``: webhooks, and Slack when ``SLACK_BOT_TOKEN`` is set); None when
    the index has no standing questions."""
    from .watch import Watches, destinations, run

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


def show(index: Path, source: str, embedder: Any = None) -> tuple[dict[str, Any], list[str]]:
    """The article ``source`` names in the index at ``index``, as citations refer to it
    (``qa.cite.article``), with warnings (a text file changed since it was indexed)."""
    from index.pipeline import expected_for
    from index.store import Store

    store = Store(index, expect=expected_for(embedder))
    try:
        return article(store, source)
    finally:
        store.close()
