"""Build, update and inspect an index: load → clean → chunk → embed → store."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import store
from .chunk import CHUNK_VERSION, MAX_TOKENS, OVERLAP_SENTENCES, Counter, chunk_segments
from .disk import link_atomic, write_atomic
from .errors import DocsError, IndexMissing, QAError
from .load import (
    READER_VERSION,
    Document,
    Documents,
    Duplicate,
    Skipped,
    find_files,
    load_documents,
    printable,
)
from .meta import extract_metadata, shown_title, title_outlet
from .model import INT8_FILE, ONNX_FILE
from .store import Build, DocumentRow, PassageRow, Progress, content_hash
from .vectors import VectorWriter

Warn = Callable[[str], None]


def _ignore(_: str) -> None:
    pass


def _ignore_progress(stage: str, done: int, total: int) -> None:
    pass


FORMATS = ".txt, .md, .html, .jsonl, .csv, .rss/.atom/.xml feeds, .warc; .gz too"


def _readable(path: Path) -> bool:
    from .load import _readable_name

    return _readable_name(path.name)


def embedded_text(title: str | None, date: str | None, text: str) -> str:
    """What is embedded for a passage (and content-hashed): its article's title and date as
    context, then the passage (the context never goes into the cited text)."""
    prefix = " — ".join(p for p in (title, date) if p)
    return f"{prefix}\n{text}" if prefix else text


def expected_manifest(model_name: str, dimension: int) -> dict[str, Any]:
    """Manifest keys that must match for an index to be usable by this code and model."""
    return {
        "model.name": model_name,
        "model.dimension": dimension,
        "chunking.version": CHUNK_VERSION,
    }


@dataclass
class Report:
    """What a build or update did."""

    documents: int = 0
    passages: int = 0
    embedded: int = 0
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    version: Path | None = None
    nodes: dict[str, int] = field(default_factory=dict)  # passages embedded per Ray node
    from_shards: int = 0  # of those embedded, vectors a stopped build left in --shards


def describe(document: Document, count_tokens: Counter) -> tuple[Any, list[Any]]:
    """An article's metadata read off its text and its passages (the costly part of
    reading: sentence splitting and token counts). Pure, so it can run anywhere."""
    meta = extract_metadata(document.text, infer=True)
    return meta, chunk_segments(document.text, meta.body, count_tokens)


def prepare(
    documents: Documents, count_tokens: Counter, model_name: str, progress: Progress,
    build: Build, warn: Warn = _ignore, ray: str | None = None,
) -> None:
    """Clean, describe and chunk documents into ``build``, one document at a time; with
    ``ray`` (a cluster's address) the describing runs on that Ray cluster, in order.

    Progress ("reading") is reported in characters, advanced as sentences are tokenized, so a
    single huge file shows progress too.
    """
    total = documents.chars
    done = 0
    progress("reading", 0, total)
    if ray is not None:
        from . import distributed

        for document, (meta, chunks) in zip(documents, distributed.describe(ray, documents),
                                            strict=True):
            _add(build, document, meta, chunks, model_name, warn)
            done += len(document.text)
            progress("reading", done, total)
        return
    for document in documents:
        counted = reported = 0

        def counting(
            texts: list[str], size: int = len(document.text), before: int = done
        ) -> list[int]:
            nonlocal counted, reported
            counts: list[int] = []
            for i in range(0, len(texts), 2048):
                part = texts[i : i + 2048]
                counts.extend(count_tokens(part))
                counted += sum(len(t) for t in part)
                if counted - reported > 250_000:
                    progress("reading", before + min(counted, size), total)
                    reported = counted
            return counts

        meta, chunks = describe(document, counting)
        _add(build, document, meta, chunks, model_name, warn)
        done += len(document.text)
        progress("reading", done, total)


def _add(build: Build, document: Document, meta: Any, chunks: list[Any], model_name: str,
         warn: Warn) -> None:
    """One described article into ``build``: its row, its passages, its file's entry."""
    if not chunks:
        name = document.path if not document.stored else f"{document.path} ({document.source})"
        warn(f"{printable(str(name))} has no article text (only headings, links or "
             "furniture): nothing indexed from it")
    # What the format states is trusted over what is read off the text; a stated title is
    # shown as one read off the text is ("… air …", no "| CNN" when CNN is the publisher).
    stated = document.article
    publisher = (stated and stated.publisher) or meta.publisher
    if stated and stated.title:
        publisher = publisher or title_outlet(stated.title, document.text, meta.body)
        title: str | None = shown_title(stated.title, publisher)
    else:
        title = meta.title
    date, inferred = (stated.date, False) if stated and stated.date else (
        meta.date, meta.date_inferred)
    doc_id = build.next_document
    row = DocumentRow(
        doc_id, document.source, printable(str(document.path)), document.sha256,
        title, date, inferred, (stated and stated.author) or meta.author,
        publisher, document.encoding,
        document.url, document.stored, stated.language if stated else None,
    )
    passages: list[PassageRow] = []
    for chunk in chunks:
        text = document.text[chunk.start : chunk.end]
        passages.append(PassageRow(
            build.next_passage + len(passages), doc_id, chunk.start, chunk.end, chunk.kind,
            text, chunk.sentences, content_hash(model_name, embedded_text(title, date, text)),
        ))
    build.add(row, passages, document.text if document.stored else None)
    key = document.file or document.source
    if key not in build.files:  # once per file: an export's entry hashes the whole file
        build.files[key] = _file_entry(document)


def _record_unindexed(build: Build, skipped: list[Skipped],
                      duplicates: list[Duplicate]) -> None:
    """Files not indexed are recorded too, so `status` and `ask` don't report them as new
    forever; when one changes (fixed, or replaced) it counts as changed and is read again."""
    for item in skipped:
        build.files.setdefault(item.source, _path_entry(item.path, skipped=item.reason))
    for copy in duplicates:
        if copy.path is not None:
            build.files.setdefault(copy.file, _path_entry(copy.path, duplicate_of=copy.of))


def embed_texts(build: Build) -> Iterator[list[tuple[int, str, str]]]:
    """(passage id, content hash, text to embed) of ``build``'s passages in id order, a
    block at a time: the passage text after its article's title and date."""
    for rows in build.passages_to_embed():
        yield [(i, h, embedded_text(title, date, text)) for i, h, text, title, date in rows]


def _file_entry(document: Document) -> dict[str, Any]:
    if document.stored:  # a record of an export, feed or crawl: the whole file's hash
        return _path_entry(document.path)
    size, mtime = _stat(document.path)
    return {"sha256": document.sha256, "size": size, "mtime": mtime}


def _path_entry(path: Path, **extra: Any) -> dict[str, Any]:
    """The manifest entry of a file by its path: hash (None if unreadable), size, mtime."""
    from .load import file_sha256

    size, mtime = _stat(path)
    try:
        digest: str | None = file_sha256(path)
    except OSError:
        digest = None
    return {"sha256": digest, "size": size, "mtime": mtime, **extra}


def _stat(path: Path) -> tuple[int | None, float | None]:
    try:
        stat = os.stat(path)
    except OSError:
        return None, None
    return stat.st_size, stat.st_mtime


def _manifest(build: Build, embedder: Any, docs_dir: Path, created: str | None) -> dict[str, Any]:
    from .model import MAX_TOKENS as MODEL_MAX_TOKENS

    now = store.now_iso()
    return {
        "format_version": store.FORMAT_VERSION,
        "model": {
            "name": embedder.name,
            "dimension": embedder.dimension,
            "sha256": getattr(embedder, "sha256", None),
            "normalized": True,
            "max_tokens": MODEL_MAX_TOKENS,
            "precision": build.precision or getattr(embedder, "precision", None),
        },
        "chunking": {
            "version": CHUNK_VERSION,
            "max_tokens": MAX_TOKENS,
            "overlap_sentences": OVERLAP_SENTENCES,
        },
        "docs_dir": str(Path(docs_dir).resolve()),
        "created": created or now,
        "updated": now,
        "counts": {"documents": build.documents, "passages": build.passages},
        "files": build.files,
    }


def _default_embedder(index_dir: Path) -> Any:
    from .embed import document_embedder

    return document_embedder(index_dir)


def _close(embedder: Any) -> None:
    """Stop the worker processes of an embedder this build made (``DocumentEmbedder``)."""
    close = getattr(embedder, "close", None)
    if close is not None:
        close()


def _default_counter() -> Counter:
    from .embed import count_tokens

    def batched(texts: list[str]) -> list[int]:
        # The tokenizer keeps every encoding of a batch alive; a paragraph run of a huge file
        # can hold hundreds of thousands of sentences, so count them a slice at a time.
        counts: list[int] = []
        for i in range(0, len(texts), 4096):
            counts.extend(count_tokens(texts[i : i + 4096]))
        return counts

    return batched


def _embed(
    embedder: Any, build: Build, progress: Progress, reuse: dict[str, int],
    old_vectors: Any, ray: tuple[str, Path, Path | None] | None = None,
) -> tuple[int, dict[str, int], Any]:
    """Write the vectors of ``build``'s passages into its folder (``VectorWriter``), a block
    at a time: rows whose content hash is in ``reuse`` are copied from ``old_vectors`` (row
    ``reuse[hash]``), the rest are embedded — here, or with ``ray`` (cluster address, int8
    model file, shards folder or None) on a Ray cluster (``distributed.embed``). Returns how
    many were embedded, by which Ray node, and the ``distributed.Shards`` used (or None)."""
    vectors = VectorWriter(build.folder, build.passages, embedder.dimension,
                           first=build.first_passage)
    todo = sum(1 for h in build.hashes() if h not in reuse)
    if ray is None and hasattr(embedder, "expect"):  # how hard to choose (DocumentEmbedder)
        embedder.expect(todo)
    done = 0
    progress("embedding", 0, todo)

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress("embedding", done, todo)

    def pending() -> Iterator[list[tuple[int, str, str]]]:
        """The passages to embed (id, content hash, text), a bounded block at a time; reused
        vectors copied over."""
        waiting: list[tuple[int, str, str]] = []
        for block in embed_texts(build):
            kept: list[int] = []
            kept_from: list[int] = []
            for i, h, text in block:
                if h in reuse and old_vectors is not None:
                    kept.append(i)
                    kept_from.append(reuse[h])
                else:
                    waiting.append((i, h, text))
            vectors.copy(kept, old_vectors, kept_from)
            if len(waiting) >= 512:
                yield waiting
                waiting = []
        if waiting:
            yield waiting

    nodes: dict[str, int] = {}
    shards = None
    if ray is None:
        for waiting in pending():
            vectors[[i for i, _, _ in waiting]] = embedder.embed([t for _, _, t in waiting],
                                                                 progress=advance)
    else:
        from . import distributed

        def write(ids: np.ndarray, block: np.ndarray) -> None:
            vectors[ids] = block

        address, model, folder = ray
        nodes, shards = distributed.embed(address, model, pending(), write, advance, folder)
        build.precision = "int8"  # the cluster's model, whatever this machine would choose
    vectors.flush()  # the mappings themselves close when this returns
    return todo, nodes, shards


def _spent(report: Report, shards: Any) -> None:
    """Once a version is published, the ``distributed.Shards`` it was assembled from (None
    when it was not) have done their work: count what came from an earlier build's, remove
    them."""
    if shards is not None:
        report.from_shards = shards.reused
        shards.remove_used()


def check_docs(docs_dir: Path) -> list[Path]:
    """The article files in ``docs_dir``; DocsError when the folder is missing or has none."""
    docs_dir = Path(docs_dir)
    if docs_dir.is_file():
        if not _readable(docs_dir):
            raise DocsError(f"{docs_dir} is not an article file qa reads ({FORMATS}): pass "
                            "--docs DIR or a file of one of those formats")
        return [docs_dir]
    files = find_files(docs_dir)
    if not files:
        raise DocsError(
            f"no readable articles ({FORMATS}) in {docs_dir}: add article files or pass "
            "--docs DIR"
        )
    return files


def build_index(
    docs_dir: Path,
    index_dir: Path,
    *,
    embedder: Any = None,
    count_tokens: Counter | None = None,
    progress: Progress = _ignore_progress,
    warn: Warn = _ignore,
    reuse_vectors: bool = False,
    model_cache: Path | None = None,
    fields: dict[str, str] | None = None,
    ray: str | None = None,
    retrain: bool = False,
    shards: Path | None = None,
) -> Report:
    """Index every article under ``docs_dir`` into a new version at ``index_dir``. With
    ``reuse_vectors`` (an update) nothing is written when the docs did not change since the
    live version (versions no reader uses are still pruned). With ``ray`` (a cluster
    address, or "auto") the passages are embedded on that Ray cluster (``distributed``),
    through Parquet shards in the folder ``shards`` when given (``distributed.Shards``).
    An update adds its vectors to the live version's trained IVF index while that training
    is not stale; ``retrain`` trains it afresh, keeping the vectors of unchanged passages (a
    new version even when no article changed).

    Raises IndexLocked when another process is writing the same index.
    """
    check_docs(docs_dir)
    index_dir = Path(index_dir)
    if shards is not None and ray is None:
        raise QAError("--shards is where Ray nodes write what they embed: add --ray ADDRESS, "
                      "or build without --shards")
    if ray is not None:
        if embedder is not None:
            raise QAError("--ray embeds with the real model only: build without --ray")
        from . import distributed

        distributed.connect(ray)  # an unreachable cluster fails before any work
    with store.writer_lock(index_dir):
        store.remove_leftovers(index_dir)
        reuse_vectors = reuse_vectors or retrain
        if fields is None:  # an update reads the export as the build did
            fields = _previous_fields(index_dir)
        # An update first looks at the live version once: nothing to do, or a delta will do.
        live = _open_live(index_dir, embedder) if reuse_vectors and not retrain else None
        done = None
        if live is not None:
            try:
                changes = docs_changes(docs_dir, live.files)
                done = _unchanged(docs_dir, index_dir, live, changes, embedder, model_cache) \
                    or _delta_update(live, changes, docs_dir, index_dir, embedder, count_tokens,
                                     progress, warn, model_cache, fields, ray, shards)
            except store.WRITE_ERRORS as error:
                store.remove_leftovers(index_dir)
                raise store.cannot_write(index_dir, error) from None
            finally:
                live.close()
        if done is not None:  # (the version read is no longer leased by this update)
            store.prune_versions(index_dir)
            return done
        skipped: list[Skipped] = []
        duplicates: list[Duplicate] = []
        problems: list[str] = []  # bad input inside files: kept for `qa index status`

        def bad(message: str) -> None:
            problems.append(message)
            warn(message)

        try:
            # The texts wait beside the index: a full disk fails here, as a write.
            documents = load_documents(Path(docs_dir), warn, skipped.append, fields,
                                       duplicates.append, bad, scratch=index_dir)
            if not documents:
                documents.close()
                raise DocsError(
                    f"no readable articles ({FORMATS}) in {docs_dir}: add article files or "
                    "pass --docs DIR"
                )
            with documents:
                return _write(
                    documents, skipped, docs_dir, index_dir, embedder, count_tokens, progress,
                    warn, reuse_vectors, model_cache, duplicates=duplicates, ray=ray,
                    retrain=retrain, shards=shards,
                    extra={"fields": fields or {}, "duplicates": _dropped(duplicates),
                           "reader_version": READER_VERSION,
                           "problems": {"count": len(problems), "examples": problems[:50]}})
        except store.WRITE_ERRORS as error:  # disk full, quota, permissions: before the switch
            store.remove_leftovers(index_dir)
            raise store.cannot_write(index_dir, error) from None


def _write(
    documents: Documents, skipped: list[Skipped], docs_dir: Path, index_dir: Path,
    embedder: Any, count_tokens: Counter | None, progress: Progress, warn: Warn,
    reuse_vectors: bool, model_cache: Path | None = None,
    extra: dict[str, Any] | None = None, duplicates: list[Duplicate] | None = None,
    ray: str | None = None, retrain: bool = False, shards: Path | None = None,
) -> Report:
    old: dict[str, Any] | None = None
    reuse: dict[str, int] = {}
    old_vectors: Any = None
    trained: tuple[Path, int] | None = None
    if reuse_vectors:
        # Before loading the model: a stale or damaged index fails fast.
        old, reuse, old_vectors, folder = _previous(index_dir, *_model_identity(embedder))
        trained_on = int((old or {}).get("vector_index", {}).get("trained_on") or 0)
        if folder is not None and trained_on and not retrain:
            trained = (folder / "faiss.index", trained_on)
    # The query model's export, checked once (from the shared cache if any); with the real
    # model, the int8 one (documents on most CPUs, re-ranked sentences on all) in the same
    # export.
    ensure_query_model(index_dir, _model_identity(embedder)[0], verify=True, cache=model_cache,
                       int8=embedder is None)
    made = embedder is None  # then this build owns it, and its worker processes
    embedder = embedder or _default_embedder(index_dir)
    count_tokens = count_tokens or _default_counter()
    # Rows, vectors and keyword index go straight into the new version's folder (one
    # leftover if this dies), never all into memory.
    build = Build(store.new_version(index_dir))
    try:
        prepare(documents, count_tokens, embedder.name, progress, build, warn, ray=ray)
        if not build.passages:
            raise DocsError(f"no article text found in {docs_dir}: nothing to index")
        _record_unindexed(build, skipped, duplicates or [])
        cluster = (ray, index_dir / INT8_FILE, shards) if ray is not None else None
        embedded, nodes, used = _embed(embedder, build, progress, reuse, old_vectors, cluster)
        if made:
            _close(embedder)  # its workers' memory is not needed for the indexes
        del old_vectors, reuse
        manifest = _manifest(build, embedder, docs_dir, old.get("created") if old else None)
        manifest.update(extra or {})
        if ray is not None:
            manifest["ingest"] = {"ray": ray, "nodes": nodes}
        onnx = index_dir / ONNX_FILE
        if onnx.exists():
            from .model import onnx_digest

            manifest["model"]["onnx"] = {
                "file": ONNX_FILE, "size": onnx.stat().st_size, "sha256": onnx_digest(onnx)
            }
        version = store.write_version(index_dir, build, None, manifest, progress,
                                      trained=trained)
    finally:
        if made:  # on every way out: an error, Ctrl-C, SIGTERM (the CLI raises there)
            _close(embedder)
        build.db.close()
        shutil.rmtree(build.folder, ignore_errors=True)  # gone already once published
    report = Report(build.documents, build.passages, embedded, version=version, nodes=nodes)
    _spent(report, used)
    report.skipped = sorted(s for s, entry in build.files.items() if entry.get("skipped"))
    if old is not None:
        before, after = old.get("files", {}), build.files
        report.added = sorted(set(after) - set(before))
        report.removed = sorted(set(before) - set(after))
        report.changed = sorted(
            s for s in set(after) & set(before)
            if (after[s]["sha256"], after[s].get("skipped")) !=
            (before[s].get("sha256"), before[s].get("skipped"))
        )
    else:
        report.added = sorted(build.files)
    return report


# An update of an index of DELTA_FROM passages or more writes a delta beside the live base
# (store.write_delta_version) instead of a whole new version, until the delta would hold more
# than max(DELTA_MIN, DELTA_SHARE of the base) passages, or remove more than DELTA_SHARE of
# the base's: that update rebuilds whole (and the next starts a new delta).
DELTA_FROM = 20_000
DELTA_MIN = 50_000
DELTA_SHARE = 0.1


def _delta_update(
    old: store.Store, changes: Changes, docs_dir: Path, index_dir: Path, embedder: Any,
    count_tokens: Counter | None, progress: Progress, warn: Warn, model_cache: Path | None,
    fields: dict[str, str], ray: str | None, shards: Path | None = None,
) -> Report | None:
    """Update a large index (``old``, the live version; ``changes``, its docs' changes) by a
    delta: read only the new and changed files, embed their passages, and publish a version
    of the live base (hard-linked) plus a delta holding the previous delta's articles still
    there, the new ones, and the list of base articles gone. None when the update must
    rebuild whole instead: a small index, a file whose articles cannot be told apart, or a
    delta grown past its bound."""
    from .load import _root_and_paths, read_by_another, source_name

    manifest = old.manifest
    base = old.delta["base"] if old.delta else {
        "documents": old.document_count, "passages": old.passage_count}
    if base["passages"] < DELTA_FROM or read_by_another(manifest):
        return None
    if not changes:
        return None
    gone = set(changes.changed) | set(changes.removed)
    try:
        root, _ = _root_and_paths(Path(docs_dir), _ignore)
        leaving: dict[str, list[int]] = {}
        removed_sources: set[str] = set()
        # Only new files (the daily case): no article leaves, nothing to look up.
        for doc, source, path, stored in (old.document_origins() if gone else []):
            files = {source}
            if stored:
                relative = Path(path).relative_to(root)
                files = {source_name(Path(path), root), printable(relative.as_posix())}
            for file in files & gone:
                leaving.setdefault(file, []).append(doc)
                removed_sources.add(source)
    except ValueError:  # paths recorded in another form than this docs folder's
        return None
    entries = old.files
    for file in gone:
        entry = entries.get(file, {})
        if file not in leaving and not entry.get("skipped") and not entry.get("duplicate_of"):
            return None  # its articles are not found: rebuild rather than keep stale ones
    if any(e.get("duplicate_of") in removed_sources for e in entries.values()):
        return None  # a copy set aside as a duplicate of a leaving article comes back
    leaving_docs = {doc for docs in leaving.values() for doc in docs}
    return _write_delta(old, base, changes, leaving_docs, docs_dir, index_dir, embedder,
                        count_tokens, progress, warn, model_cache, fields, ray, shards)


def _write_delta(
    old: store.Store, base: dict[str, int], changes: Changes, leaving: set[int],
    docs_dir: Path, index_dir: Path, embedder: Any, count_tokens: Counter | None,
    progress: Progress, warn: Warn, model_cache: Path | None, fields: dict[str, str],
    ray: str | None, shards: Path | None = None,
) -> Report | None:
    base_docs, base_passages = int(base["documents"]), int(base["passages"])
    removed = old.removed_documents()
    removed |= {doc for doc in leaving if doc < base_docs}
    removed_passages = 0
    if removed:
        gone = np.zeros(base_docs, dtype=bool)
        gone[list(removed)] = True
        removed_passages = int(gone[old.passage_docs[:base_passages]].sum())
    bound = max(DELTA_MIN, DELTA_SHARE * base_passages)
    if removed_passages > DELTA_SHARE * base_passages:
        return None
    ensure_query_model(index_dir, _model_identity(embedder)[0], verify=True, cache=model_cache,
                       int8=embedder is None)
    made = embedder is None
    embedder = embedder or _default_embedder(index_dir)
    count_tokens = count_tokens or _default_counter()
    tmp = store.new_version(index_dir)
    build = Build(tmp / store.DELTA, first=(base_docs, base_passages), delta=True)
    try:
        build.remove(sorted(removed))
        # Vectors kept by content hash: of the previous delta's passages, and of the leaving
        # articles' (a changed article keeps its unchanged passages' vectors).
        reuse: dict[str, int] = {}
        keep = old.delta_documents()
        for doc in sorted(leaving):
            for row in old.passages_of(doc):
                reuse[row.hash] = row.id
        files = dict(old.files)
        for file in [*changes.changed, *changes.removed]:
            files.pop(file, None)
        for doc in keep:  # the previous delta's articles still there, renumbered
            if doc in leaving:
                continue
            meta = old.document(doc)
            rows = old.passages_of(doc)
            first = build.next_passage
            copied = [PassageRow(first + n, build.next_document, p.start, p.end, p.kind, p.text,
                                 p.sentences, p.hash) for n, p in enumerate(rows)]
            for p in rows:
                reuse[p.hash] = p.id
            build.add(replace(meta, id=build.next_document), copied,
                      old.stored_text(doc) if meta.stored else None)
        kept = build.passages
        skipped: list[Skipped] = []
        duplicates: list[Duplicate] = []
        documents = load_documents(Path(docs_dir), warn, skipped.append, fields,
                                   duplicates.append, warn, scratch=index_dir,
                                   only=set(changes.added) | set(changes.changed))
        with documents:
            prepare(documents, count_tokens, embedder.name, progress, build, warn, ray=ray)
        if build.passages > bound:
            build.db.close()
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        _record_unindexed(build, skipped, duplicates)
        files.update(build.files)
        cluster = (ray, index_dir / INT8_FILE, shards) if ray is not None else None
        embedded, nodes, used = _embed(embedder, build, progress, reuse, old.load_vectors(),
                                       cluster)
        if made:
            _close(embedder)
        manifest = _manifest(build, embedder, docs_dir, old.manifest.get("created"))
        for key in ("duplicates", "reader_version", "problems"):
            if key in old.manifest:
                manifest[key] = old.manifest[key]
        manifest["fields"] = fields or {}
        if ray is not None:
            manifest["ingest"] = {"ray": ray, "nodes": nodes}
        manifest["files"] = files
        live = {"documents": base_docs - len(removed) + build.documents,
                "passages": base_passages - removed_passages + build.passages}
        manifest["counts"] = live
        manifest["delta"] = {
            "documents": build.documents, "passages": build.passages,
            "base": {"documents": base_docs, "passages": base_passages},
            "removed": {"documents": len(removed), "passages": removed_passages},
            "carried": {"documents": len(keep) - len(leaving & set(keep)), "passages": kept},
            "bound": int(bound),
        }
        onnx = index_dir / ONNX_FILE
        if onnx.exists() and old.manifest.get("model", {}).get("onnx"):
            manifest["model"]["onnx"] = old.manifest["model"]["onnx"]
        version = store.write_delta_version(index_dir, build, old.version, manifest, progress)
    finally:
        if made:
            _close(embedder)
        build.db.close()
        shutil.rmtree(tmp, ignore_errors=True)  # gone already once published
    report = Report(live["documents"], live["passages"], embedded, version=version, nodes=nodes)
    _spent(report, used)
    report.added, report.changed = sorted(changes.added), sorted(changes.changed)
    report.removed = sorted(changes.removed)
    report.skipped = sorted(s for s, entry in files.items() if entry.get("skipped"))
    return report


def _previous_fields(index_dir: Path) -> dict[str, str]:
    try:
        fields = store.read_manifest(index_dir).get("fields")
    except Exception:  # no index, or one that cannot be read: nothing to carry over
        return {}
    return dict(fields) if isinstance(fields, dict) else {}


def _dropped(duplicates: list[Duplicate]) -> dict[str, Any]:
    """What ``qa index status`` reports of the duplicates: counts by reason, the first few."""
    counts: dict[str, int] = {}
    for item in duplicates:
        counts[item.why] = counts.get(item.why, 0) + 1
    return {"counts": counts,
            "examples": [[d.source, d.of, d.why] for d in duplicates[:20]]}


def _open_live(index_dir: Path, embedder: Any) -> store.Store | None:
    """The live version, if it is usable by this model and code (None: the update builds,
    or says why it cannot)."""
    try:
        return store.Store(index_dir, expect=expected_for(embedder))
    except QAError:
        return None


def _unchanged(
    docs_dir: Path, index_dir: Path, live: store.Store, changes: Changes, embedder: Any,
    model_cache: Path | None = None,
) -> Report | None:
    """The report of an update with nothing to do (the live version ``live``, its docs'
    ``changes``), or None when there is work."""
    from .load import read_by_another

    manifest = live.manifest
    if manifest.get("docs_dir") != str(Path(docs_dir).resolve()):
        return None
    if read_by_another(manifest):
        return None
    if changes:
        return None
    # A damaged export is still redone.
    ensure_query_model(index_dir, _model_identity(embedder)[0], verify=True, cache=model_cache)
    counts = manifest["counts"]
    report = Report(counts["documents"], counts["passages"], 0, version=live.version)
    report.skipped = sorted(s for s, entry in live.files.items() if entry.get("skipped"))
    return report


def _model_identity(embedder: Any) -> tuple[str, int]:
    if embedder is not None:
        return embedder.name, embedder.dimension
    from .model import DIMENSION, MODEL_NAME

    return MODEL_NAME, DIMENSION


def expected_for(embedder: Any = None) -> dict[str, Any]:
    """``expected_manifest`` of ``embedder`` (default: the real model)."""
    return expected_manifest(*_model_identity(embedder))


def _previous(
    index_dir: Path, model_name: str, dimension: int
) -> tuple[dict[str, Any] | None, dict[str, int], Any, Path | None]:
    """The old manifest, its passage rows by content hash, its vectors (memory-mapped, so
    only reused rows are read) and its version folder; None, {}, None, None when there is no
    index yet (update then builds one). IndexStale or IndexDamaged when it cannot be reused:
    an update never silently mixes vectors of another model or chunker. The old version
    stays on disk until the new one is live, so the map stays valid while the update runs."""
    try:
        old = store.Store(index_dir, expect=expected_manifest(model_name, dimension), older=True)
    except IndexMissing:
        return None, {}, None, None
    try:
        vectors = old.load_vectors()
        rows = dict(old.passage_hashes())
        manifest = {**old.manifest, "files": old.files}
    finally:
        old.close()
    return manifest, rows, vectors, old.version


def ensure_query_model(
    index_dir: Path, model_name: str, verify: bool = False, cache: Path | None = None,
    int8: bool = False,
) -> None:
    """Export the ONNX query encoder (and with ``int8`` the int8 document encoder) into
    ``index_dir`` once (real model only).

    With ``cache`` the export is made once per model in ``cache`` and hard-linked into each
    index (copied where links cannot be made), so a new docs folder costs no export and no
    second 90 MB copy. With ``verify`` (builds and updates), an export whose sha256 no longer
    matches the one recorded beside it (truncated, corrupt) is exported again.
    """
    from .model import INT8_FILE, MODEL_NAME, MODEL_SHA256, data_name, export_onnx, onnx_digest

    if model_name != MODEL_NAME:
        return
    index_dir = Path(index_dir)
    target = index_dir / ONNX_FILE
    stamp = index_dir / f"{ONNX_FILE}.sha256"
    # Its external weights (model.onnx.data) are vouched for by the stamp's digest.
    names = [ONNX_FILE, *([INT8_FILE] if int8 else []), stamp.name]
    intact = all((index_dir / name).exists() for name in names)
    if intact and verify:
        try:
            intact = stamp.read_bytes().decode("ascii").strip() == onnx_digest(target)
        except (OSError, UnicodeDecodeError):
            intact = False
    if intact:
        return
    index_dir.mkdir(parents=True, exist_ok=True)
    if cache is not None and Path(cache).resolve() != index_dir.resolve():
        from filelock import FileLock

        shared = Path(cache) / MODEL_SHA256[:16]
        shared.mkdir(parents=True, exist_ok=True)
        with FileLock(shared / ".lock"):  # two first builds export it once
            ensure_query_model(shared, model_name, verify=True, int8=int8)
        weights = [data_name(target)] if (shared / data_name(target)).exists() else []
        for name in [*weights, *names]:  # the stamp last: it vouches for the others
            link_atomic(shared / name, index_dir / name)
        return
    # export_onnx replaces the files atomically: readers never see them missing.
    digest = export_onnx(target, int8=index_dir / INT8_FILE if int8 else None)
    write_atomic(stamp, digest.encode())


def check_query_model(index_dir: Path, model_name: str, full: bool = False) -> None:
    """IndexDamaged unless the exported query model is the one its stamp records. Files not
    modified since the stamp was written are trusted (a cold ``qa ask`` does not hash 90 MB);
    ``full`` hashes them anyway (``qa index status``)."""
    from .errors import IndexDamaged
    from .model import MODEL_NAME, data_name, onnx_digest

    if model_name != MODEL_NAME:
        return
    target = index_dir / ONNX_FILE
    stamp = index_dir / f"{ONNX_FILE}.sha256"
    damaged = IndexDamaged(
        f"index at {index_dir} is damaged (the query model {ONNX_FILE} does not match its "
        "recorded sha256): run `qa index build`"
    )
    try:
        recorded = stamp.read_bytes().decode("ascii").strip()
        stamped = stamp.stat().st_mtime_ns
        newest = max(p.stat().st_mtime_ns for p in (target, target.with_name(data_name(target)))
                     if p.exists())
    except (OSError, UnicodeDecodeError, ValueError):
        raise damaged from None
    if (full or newest > stamped) and onnx_digest(target) != recorded:
        raise damaged


def update_index(docs_dir: Path, index_dir: Path, **options: Any) -> Report:
    """Bring the index in line with ``docs_dir``, embedding only new or changed passages
    (``build_index`` reusing the vectors of unchanged ones; same options)."""
    return build_index(docs_dir, index_dir, reuse_vectors=True, **options)


@dataclass
class Changes:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def docs_changes(docs_dir: Path, indexed: dict[str, Any]) -> Changes:
    """Files added, changed or removed since the index was built (``indexed``: its files'
    entries, ``Store.files``): size and mtime first, hashing only files whose stat differs."""
    from .load import _root_and_paths, file_sha256, source_names

    docs_dir = Path(docs_dir)
    changes = Changes()
    seen = set()
    try:
        root, paths = _root_and_paths(docs_dir, lambda _: None)
    except DocsError:
        return Changes(removed=sorted(indexed))
    for path, source in source_names(paths, root).items():
        seen.add(source)
        entry = indexed.get(source)
        if entry is None:
            changes.added.append(source)
            continue
        if _stat(path) == (entry.get("size"), entry.get("mtime")):
            continue
        try:
            digest: str | None = file_sha256(path)
        except OSError:
            digest = None
        if digest is None or digest != entry.get("sha256"):
            changes.changed.append(source)
    changes.removed = sorted(set(indexed) - seen)
    return changes
