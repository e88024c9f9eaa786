"""Build and update an index: load → clean → chunk → embed → store.

``build_index`` and ``update_index`` take the folders and one ``BuildOptions``; each run is a
``job.Job`` with its model resolved (the one ``--model`` names, or the index's own for an
update). An update of a large index is a delta (``delta``); every other run writes a whole
new version (``write``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..docs import FORMATS, Changes, check_docs, docs_changes
from ..errors import DocsError, IndexMissing, QAError
from ..models.export import ONNX_FILE, ensure_query_model, export_folder, onnx_digest, stamp_time
from ..models.spec import DEFAULT, ModelSpec, from_manifest
from ..storage import layout, publish
from ..storage.manifest import READER_VERSION, read_by_another, read_manifest
from ..storage.reader import Store
from ..storage.rows import Build
from . import delta, distributed
from .describe import record_unindexed
from .job import BuildOptions, Job, Report, embed, prepare, spent
from .load import Documents, Duplicate, Skipped, load_documents


def build_index(docs_dir: Path, index_dir: Path, options: BuildOptions | None = None,
                reuse_vectors: bool = False) -> Report:
    """Index every article under ``docs_dir`` into a new version at ``index_dir``. With
    ``reuse_vectors`` (an update) nothing is written when the docs did not change since the
    live version (versions no reader uses are still pruned). With ``options.ray`` (a cluster
    address, or "auto") the passages are embedded on that Ray cluster (``distributed``),
    through Parquet shards in the folder ``options.shards`` when given. An update adds its
    vectors to the live version's trained IVF index while that training is not stale;
    ``options.retrain`` trains it afresh, keeping the vectors of unchanged passages (a new
    version even when no article changed).

    Raises IndexLocked when another process is writing the same index.
    """
    options = options or BuildOptions()
    check_docs(docs_dir)
    index_dir = Path(index_dir)
    _check_cluster(options)
    with layout.writer_lock(index_dir):
        publish.remove_leftovers(index_dir)
        reuse_vectors = reuse_vectors or options.retrain
        model = _model_for(index_dir, options, reuse_vectors)
        if options.embedder is None:  # its files as the manifest names them, before any work
            model.verified(trusted_before=_made(export_folder(index_dir, model)))
        job = Job(Path(docs_dir), index_dir, options, model, _fields_for(index_dir, options))
        done = _update_in_place(job) if reuse_vectors and not options.retrain else None
        if done is not None:  # (the version read is no longer leased by this update)
            publish.prune_versions(index_dir)
            return done
        try:
            return _build_whole(job, reuse_vectors)
        except publish.WRITE_ERRORS as error:  # disk full, quota, permissions: before the switch
            publish.remove_leftovers(index_dir)
            raise publish.cannot_write(index_dir, error) from None


def update_index(docs_dir: Path, index_dir: Path, options: BuildOptions | None = None) -> Report:
    """Bring the index in line with ``docs_dir``, embedding only new or changed passages
    (``build_index`` reusing the vectors of unchanged ones; the index's own model)."""
    return build_index(docs_dir, index_dir, options, reuse_vectors=True)


def _check_cluster(options: BuildOptions) -> None:
    if options.shards is not None and options.ray is None:
        raise QAError("--shards is where Ray nodes write what they embed: add --ray ADDRESS, "
                      "or build without --shards")
    if options.ray is not None:
        if options.embedder is not None or (options.model and not options.model.default):
            raise QAError("--ray embeds with the default model only: build without --ray")
        distributed.connect(options.ray)  # an unreachable cluster fails before any work


def _model_for(index_dir: Path, options: BuildOptions, reuse: bool) -> ModelSpec:
    """The model a run builds with: ``options.model``, else for an update (or a retraining)
    the one the index names, else the default."""
    if options.model is not None:
        return options.model
    if options.embedder is not None or not reuse:
        return DEFAULT
    try:
        manifest = read_manifest(index_dir)
    except IndexMissing:
        return DEFAULT
    except QAError:  # a damaged index: the update says so when it reads it
        return DEFAULT
    return from_manifest(manifest.get("model") or {}, index_dir)


def _made(folder: Path) -> int | None:
    """When the export in ``folder`` was made (None: there is none)."""
    try:
        return stamp_time(folder)
    except OSError:
        return None


def _fields_for(index_dir: Path, options: BuildOptions) -> dict[str, str]:
    """The export columns to read: as given, else as the index was built."""
    if options.fields is not None:
        return dict(options.fields)
    try:
        fields = read_manifest(index_dir).get("fields")
    except Exception:  # no index, or one that cannot be read: nothing to carry over
        return {}
    return dict(fields) if isinstance(fields, dict) else {}


def _update_in_place(job: Job) -> Report | None:
    """An update looks at the live version once: the report when there is nothing to do or a
    delta does it; None when it must write a whole version."""
    try:
        live = Store(job.index_dir, expect=job.expect())
    except QAError:  # not usable by this model and code: the whole build says why
        return None
    try:
        changes = docs_changes(job.docs_dir, live.files)
        return _unchanged(job, live, changes) or delta.update(job, live, changes)
    except publish.WRITE_ERRORS as error:
        publish.remove_leftovers(job.index_dir)
        raise publish.cannot_write(job.index_dir, error) from None
    finally:
        live.close()


def _unchanged(job: Job, live: Store, changes: Changes) -> Report | None:
    """The report of an update with nothing to do (``live``, its docs' ``changes``), or
    None when there is work."""
    manifest = live.manifest
    if manifest.get("docs_dir") != str(job.docs_dir.resolve()):
        return None
    if read_by_another(manifest) or changes:
        return None
    if job.options.embedder is None:  # a damaged export is still redone
        ensure_query_model(export_folder(job.index_dir, job.model), job.model, verify=True,
                           cache=job.options.model_cache)
    counts = manifest["counts"]
    report = Report(counts["documents"], counts["passages"], 0, version=live.version)
    report.skipped = sorted(s for s, entry in live.files.items() if entry.get("skipped"))
    return report


def _build_whole(job: Job, reuse_vectors: bool) -> Report:
    """Read every article of the docs folder and write a whole new version."""
    skipped: list[Skipped] = []
    duplicates: list[Duplicate] = []
    problems: list[str] = []  # bad input inside files: kept for `qa index status`

    def bad(message: str) -> None:
        problems.append(message)
        job.options.warn(message)

    # The texts wait beside the index: a full disk fails here, as a write.
    documents = load_documents(job.docs_dir, job.options.warn, skipped.append, job.fields,
                               duplicates.append, bad, scratch=job.index_dir)
    if not documents:
        documents.close()
        raise DocsError(f"no readable articles ({FORMATS}) in {job.docs_dir}: add article "
                        "files or pass --docs DIR")
    extra = {"duplicates": _dropped(duplicates), "reader_version": READER_VERSION,
             "problems": {"count": len(problems), "examples": problems[:50]}}
    with documents:
        return write(job, documents, (skipped, duplicates), extra, reuse_vectors)


def write(job: Job, documents: Documents, unindexed: tuple[list[Skipped], list[Duplicate]],
          extra: dict[str, Any], reuse_vectors: bool) -> Report:
    """Write ``documents`` as a whole new version (with ``reuse_vectors``, the previous
    version's vectors of unchanged passages copied) and publish it."""
    previous = _previous(job) if reuse_vectors else _Previous()
    job.start()
    # Rows, vectors and keyword index go straight into the new version's folder (one
    # leftover if this dies), never all into memory.
    build = Build(publish.new_version(job.index_dir))
    try:
        prepare(job, documents, build)
        if not build.passages:
            raise DocsError(f"no article text found in {job.docs_dir}: nothing to index")
        record_unindexed(build, *unindexed)
        embedded, nodes, used = embed(job, build, previous.rows, previous.vectors)
        job.close()  # its workers' memory is not needed for the indexes
        previous.vectors = previous.rows = None
        manifest = job.manifest(build, previous.manifest.get("created"))
        manifest.update(extra)
        _ingest_note(manifest, job, nodes)
        version = publish.write_version(job.index_dir, build, None, manifest,
                                        job.options.progress, trained=previous.trained)
    finally:
        job.close()  # on every way out: an error, Ctrl-C, SIGTERM (the CLI raises there)
        build.db.close()
        shutil.rmtree(build.folder, ignore_errors=True)  # gone already once published
    report = Report(build.documents, build.passages, embedded, version=version, nodes=nodes)
    spent(report, used)
    report.skipped = sorted(s for s, entry in build.files.items() if entry.get("skipped"))
    _compare(report, previous.manifest.get("files") if previous.manifest else None, build.files)
    return report


def _ingest_note(manifest: dict[str, Any], job: Job, nodes: dict[str, int]) -> None:
    """What the manifest says of the Ray cluster and of the query model's export."""
    if job.options.ray is not None:
        manifest["ingest"] = {"ray": job.options.ray, "nodes": nodes}
    onnx = export_folder(job.index_dir, job.model) / ONNX_FILE
    if onnx.exists() and job.options.embedder is None:
        manifest["model"]["onnx"] = {
            "file": onnx.relative_to(job.index_dir).as_posix(), "size": onnx.stat().st_size,
            "sha256": onnx_digest(onnx),
        }


def _compare(report: Report, before: dict[str, Any] | None, after: dict[str, Any]) -> None:
    """The files an update added, removed and changed (a build: every file added)."""
    if before is None:
        report.added = sorted(after)
        return
    report.added = sorted(set(after) - set(before))
    report.removed = sorted(set(before) - set(after))
    report.changed = sorted(
        s for s in set(after) & set(before)
        if (after[s]["sha256"], after[s].get("skipped")) !=
        (before[s].get("sha256"), before[s].get("skipped"))
    )


def _dropped(duplicates: list[Duplicate]) -> dict[str, Any]:
    """What ``qa index status`` reports of the duplicates: counts by reason, the first few."""
    counts: dict[str, int] = {}
    for item in duplicates:
        counts[item.why] = counts.get(item.why, 0) + 1
    return {"counts": counts,
            "examples": [[d.source, d.of, d.why] for d in duplicates[:20]]}


@dataclass
class _Previous:
    """What a whole rebuild takes from the live version: its manifest (with its files), its
    passage rows by content hash, its vectors (memory-mapped, so only reused rows are read),
    and its IVF training while that is usable (index file, vectors it saw)."""

    manifest: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, int] | None = None
    vectors: Any = None
    trained: tuple[Path, int] | None = None


def _previous(job: Job) -> _Previous:
    """The live version's ``_Previous``, empty when there is no index yet (update then
    builds one). IndexStale or IndexDamaged when it cannot be reused: an update never
    silently mixes vectors of another model or chunker. The old version stays on disk until
    the new one is live, so the map stays valid while the update runs."""
    try:  # before loading the model: a stale or damaged index fails fast
        old = Store(job.index_dir, expect=job.expect(), older=True)
    except IndexMissing:
        return _Previous()
    try:
        previous = _Previous({**old.manifest, "files": old.files}, dict(old.passage_hashes()),
                             old.load_vectors())
    finally:
        old.close()
    trained_on = int(previous.manifest.get("vector_index", {}).get("trained_on") or 0)
    if trained_on and not job.options.retrain:
        previous.trained = (old.version / "faiss.index", trained_on)
    return previous
