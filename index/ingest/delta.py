"""Updates of a large index that cost what changed, not the archive: only the new and changed
files are read, and a version is published whose base files are hard links to the previous
version's plus a ``delta/`` folder (``publish.write_delta_version``): the previous delta's
articles still there and the new ones, renumbered after the base's ids, and the base's
articles that left or changed."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..docs import Changes, printable, root_and_paths, source_name
from ..models.export import ONNX_FILE, export_folder
from ..storage import layout, publish
from ..storage.manifest import read_by_another
from ..storage.reader import Store
from ..storage.rows import Build, PassageRow
from .describe import record_unindexed
from .job import Job, Report, embed, prepare, spent
from .load import Duplicate, Skipped, load_documents

# An update of an index of DELTA_FROM passages or more writes a delta beside the live base
# instead of a whole new version, until the delta would hold more than max(DELTA_MIN,
# DELTA_SHARE of the base) passages, or remove more than DELTA_SHARE of the base's: that
# update rebuilds whole (and the next starts a new delta).
DELTA_FROM = 20_000
DELTA_MIN = 50_000
DELTA_SHARE = 0.1


def update(job: Job, old: Store, changes: Changes) -> Report | None:
    """Update a large index (``old``, the live version; ``changes``, its docs' changes) by a
    delta: read only the new and changed files, embed their passages, and publish a version
    of the live base (hard-linked) plus a delta holding the previous delta's articles still
    there, the new ones, and the list of base articles gone. None when the update must
    rebuild whole instead: a small index, a file whose articles cannot be told apart, or a
    delta grown past its bound."""
    base = old.delta["base"] if old.delta else {
        "documents": old.document_count, "passages": old.passage_count}
    if base["passages"] < DELTA_FROM or read_by_another(old.manifest) or not changes:
        return None
    leaving = _leaving(job.docs_dir, old, changes)
    if leaving is None:
        return None
    removed = old.removed_documents() | {doc for doc in leaving if doc < base["documents"]}
    removed_passages = 0
    if removed:
        gone = np.zeros(int(base["documents"]), dtype=bool)
        gone[list(removed)] = True
        removed_passages = int(gone[old.passage_docs[: int(base["passages"])]].sum())
    if removed_passages > DELTA_SHARE * int(base["passages"]):
        return None
    return _write(job, old, changes, leaving, (removed, removed_passages))


def _leaving(docs_dir: Path, old: Store, changes: Changes) -> set[int] | None:
    """The ids of the live articles whose files changed or left; None when they cannot all
    be found (rebuild rather than keep stale ones)."""
    gone = set(changes.changed) | set(changes.removed)
    leaving: dict[str, list[int]] = {}
    removed_sources: set[str] = set()
    try:
        root, _ = root_and_paths(Path(docs_dir))
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
            return None  # its articles are not found
    if any(e.get("duplicate_of") in removed_sources for e in entries.values()):
        return None  # a copy set aside as a duplicate of a leaving article comes back
    return {doc for docs in leaving.values() for doc in docs}


def _write(job: Job, old: Store, changes: Changes, leaving: set[int],
           removal: tuple[set[int], int]) -> Report | None:
    """Write and publish the delta version; None when it grows past its bound."""
    base = old.delta["base"] if old.delta else {
        "documents": old.document_count, "passages": old.passage_count}
    bound = max(DELTA_MIN, DELTA_SHARE * int(base["passages"]))
    job.start()
    tmp = publish.new_version(job.index_dir)
    build = Build(tmp / layout.DELTA, first=(int(base["documents"]), int(base["passages"])),
                  delta=True)
    try:
        build.remove(sorted(removal[0]))
        reuse, kept = _carry(build, old, leaving)
        files = dict(old.files)
        for file in [*changes.changed, *changes.removed]:
            files.pop(file, None)
        _read_changed(job, build, changes)
        if build.passages > bound:
            return None
        files.update(build.files)
        embedded, nodes, used = embed(job, build, reuse, old.load_vectors())
        job.close()
        manifest = _manifest(job, old, build, files, (base, removal, leaving, kept, int(bound)))
        if job.options.ray is not None:
            manifest["ingest"] = {"ray": job.options.ray, "nodes": nodes}
        version = publish.write_delta_version(job.index_dir, build, old.version, manifest,
                                              job.options.progress)
    finally:
        job.close()
        build.db.close()
        shutil.rmtree(tmp, ignore_errors=True)  # gone already once published
    counts = manifest["counts"]
    report = Report(counts["documents"], counts["passages"], embedded, version=version,
                    nodes=nodes)
    spent(report, used)
    report.added, report.changed = sorted(changes.added), sorted(changes.changed)
    report.removed = sorted(changes.removed)
    report.skipped = sorted(s for s, entry in files.items() if entry.get("skipped"))
    return report


def _carry(build: Build, old: Store, leaving: set[int]) -> tuple[dict[str, int], int]:
    """The previous delta's articles still there, renumbered into ``build``; the vectors kept
    by content hash (of those, and of the leaving articles': a changed article keeps its
    unchanged passages' vectors) and how many passages were carried."""
    reuse: dict[str, int] = {}
    for doc in sorted(leaving):
        for row in old.passages_of(doc):
            reuse[row.hash] = row.id
    for doc in old.delta_documents():
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
    return reuse, build.passages


def _read_changed(job: Job, build: Build, changes: Changes) -> None:
    """Read, describe and chunk the new and changed files into ``build``."""
    skipped: list[Skipped] = []
    duplicates: list[Duplicate] = []
    documents = load_documents(job.docs_dir, job.options.warn, skipped.append, job.fields,
                               duplicates.append, job.options.warn, scratch=job.index_dir,
                               only=set(changes.added) | set(changes.changed))
    with documents:
        prepare(job, documents, build)
    record_unindexed(build, skipped, duplicates)


def _manifest(job: Job, old: Store, build: Build, files: dict[str, Any],
              sizes: tuple[dict[str, Any], tuple[set[int], int], set[int], int, int]
              ) -> dict[str, Any]:
    """The delta version's manifest: the live counts, the delta's own, what it carried."""
    base, (removed, removed_passages), leaving, kept, bound = sizes
    base_docs, base_passages = int(base["documents"]), int(base["passages"])
    manifest = job.manifest(build, old.manifest.get("created"))
    for key in ("duplicates", "reader_version", "problems"):
        if key in old.manifest:
            manifest[key] = old.manifest[key]
    manifest["files"] = files
    manifest["counts"] = {"documents": base_docs - len(removed) + build.documents,
                          "passages": base_passages - removed_passages + build.passages}
    keep = old.delta_documents()
    manifest["delta"] = {
        "documents": build.documents, "passages": build.passages,
        "base": {"documents": base_docs, "passages": base_passages},
        "removed": {"documents": len(removed), "passages": removed_passages},
        "carried": {"documents": len(keep) - len(leaving & set(keep)), "passages": kept},
        "bound": bound,
    }
    onnx = export_folder(job.index_dir, job.model) / ONNX_FILE
    if onnx.exists() and old.manifest.get("model", {}).get("onnx"):
        manifest["model"]["onnx"] = old.manifest["model"]["onnx"]
    return manifest
