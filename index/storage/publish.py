"""Writing and publishing index versions: a new version's folder, its keyword and vector
indexes, the sizes and digests in its manifest, fsync, the switch of ``CURRENT``; a delta
version over a hard-linked base; pruning the versions no reader leases. Call under
``layout.writer_lock``."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..disk import fsync_dir, fsync_tree, link_atomic, write_atomic
from ..errors import QAError
from . import lexical
from .layout import CURRENT, DELTA, FILES, LEASE, in_use, live_name, release_lease
from .manifest import file_sizes, read_manifest, sha256
from .rows import Build
from .vectors import VectorWriter, build_faiss, open_vectors

Progress = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


def new_version(index_dir: Path) -> Path:
    """The folder a new version is written in (``.tmp-v-…``, removed as a leftover if the
    writer dies); ``write_version`` completes it and publishes it. Call under writer_lock."""
    name = f"v-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}"
    tmp = Path(index_dir) / f".tmp-{name}"
    tmp.mkdir(parents=True)
    (tmp / LEASE).touch()
    return tmp


def write_version(
    index_dir: Path,
    build: Build,
    vectors: np.ndarray | None,
    manifest: dict[str, Any],
    progress: Progress = _no_progress,
    trained: tuple[Path, int] | None = None,
) -> Path:
    """Complete the version ``build`` is writing and switch CURRENT to it. Call under
    writer_lock. ``trained``: an earlier version's vector index file and how many vectors its
    training saw, to reuse that training while it is not stale (``vectors.build_faiss``).

    ``vectors`` is the float32 matrix, or None when a ``VectorWriter`` already wrote them into
    the version's folder (the vectors never need to fit in RAM)."""
    index_dir = Path(index_dir)
    tmp = build.folder
    try:
        faiss_index = _write_indexes(build, vectors, progress, *(trained or (None, 0)))
        manifest = dict(manifest)
        manifest["vector_index"] = faiss_index.params()
        if faiss_index.trained_on:  # IVF: how many vectors its training saw
            manifest["vector_index"]["trained_on"] = faiss_index.trained_on
        return _publish(index_dir, tmp, manifest, {})
    except BaseException as error:
        failure = _failed(index_dir, build, tmp, error)
        if failure is error:
            raise
        raise failure from error


def write_delta_version(
    index_dir: Path, build: Build, base: Path, manifest: dict[str, Any],
    progress: Progress = _no_progress,
) -> Path:
    """Complete a version made of the base of version ``base`` (its files hard-linked, not
    copied: versions never change) and the delta ``build`` is writing in the new version's
    ``delta/`` folder (the articles added since that base, renumbered after its ids, and the
    list of its articles removed), then switch CURRENT to it. Call under writer_lock.

    What the delta costs is its own size, not the archive's: its keyword index, and its
    vector index (flat, or IVF reusing the base's training). The base's digests are carried
    over from ``base``'s manifest; only the delta's files are hashed."""
    index_dir = Path(index_dir)
    tmp = build.folder.parent
    try:
        before = read_manifest(index_dir, base)
        shared = [name for name in before.get("sizes", {})
                  if not name.startswith(f"{DELTA}/") and name not in (LEASE, FILES)]
        for name in shared:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            link_atomic(base / name, tmp / name)
        base_index = before.get("vector_index", {})
        trained_on = int(base_index.get("trained_on") or 0)
        faiss_index = _write_indexes(build, None, progress,
                                     base / "faiss.index" if trained_on else None, trained_on)
        manifest = dict(manifest)
        manifest["delta"] = {**manifest["delta"], "vector_index": faiss_index.params()}
        manifest["vector_index"] = base_index
        digests = {name: digest for name, digest in (before.get("sha256") or {}).items()
                   if name in shared}
        return _publish(index_dir, tmp, manifest, digests)
    except BaseException as error:
        failure = _failed(index_dir, build, tmp, error)
        if failure is error:
            raise
        raise failure from error


def _write_indexes(build: Build, vectors: np.ndarray | None, progress: Progress,
                   trained: Path | None, trained_on: int) -> Any:
    """The keyword and vector indexes of ``build``'s passages, in its folder (``vectors``: the
    float32 matrix to store first, or None when a ``VectorWriter`` wrote them there), the
    IVF training taken from the index file ``trained`` while it is usable
    (``vectors.build_faiss``). Returns the vector index, saved."""
    folder = build.folder
    progress("keyword index", 0, build.passages)
    lexical.build(build.passage_texts(), folder / "bm25",
                  progress=lambda done: progress("keyword index", done, build.passages),
                  metadata=build.metadata_texts())
    build.close()
    if vectors is not None:
        out = VectorWriter(folder, *vectors.shape)
        for start in range(0, len(vectors), 65_536):
            out[start : start + 65_536] = vectors[start : start + 65_536]
        out.flush()
        del out
    mapped = open_vectors(folder)
    progress("vector index", 0, len(mapped))
    faiss_index = build_faiss(
        mapped, progress=lambda done, total: progress("vector index", done, total),
        trained=trained, trained_on=trained_on,
    )
    del mapped
    faiss_index.save(folder / "faiss.index")
    return faiss_index


def _publish(index_dir: Path, tmp: Path, manifest: dict[str, Any],
             digests: dict[str, str]) -> Path:
    """Record the sizes and digests of the complete version ``tmp`` (``digests``: those
    already known), fsync it, rename it into place and switch CURRENT to it."""
    name = tmp.name.removeprefix(".tmp-")
    manifest = dict(manifest)
    files = manifest.pop("files", None)
    if files is not None:
        (tmp / FILES).unlink(missing_ok=True)  # never written through a link to another version
        (tmp / FILES).write_text(json.dumps(files))
        manifest["counts"] = {**manifest["counts"], "files": len(files)}
    manifest["sizes"] = file_sizes(tmp)
    manifest["sha256"] = {
        file: digests.get(file) or sha256(tmp / file)
        for file in manifest["sizes"] if file != LEASE
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    fsync_tree(tmp)
    # Kept without a lease check only if it has no lease file (written by an older qa).
    previous = live_name(index_dir)
    if previous and (index_dir / previous / LEASE).exists():
        previous = ""
    os.rename(tmp, index_dir / name)
    fsync_dir(index_dir)
    write_atomic(index_dir / CURRENT, name.encode())
    prune_versions(index_dir, keep={name, previous})
    return index_dir / name


def _failed(index_dir: Path, build: Build, tmp: Path, error: BaseException) -> BaseException:
    """Clean up a version that failed before its switch; the error to raise."""
    build.db.close()
    shutil.rmtree(tmp, ignore_errors=True)
    # Disk full, quota, permissions: as OSError, or from sqlite and faiss in their words.
    if isinstance(error, OSError | sqlite3.OperationalError | RuntimeError):
        return cannot_write(index_dir, error)
    return error


# What a write that fails for want of space, quota or permission raises.
WRITE_ERRORS = (OSError, sqlite3.OperationalError)


def cannot_write(index_dir: Path, error: BaseException) -> QAError:
    """The error for a write that failed before the switch (disk full, quota, permissions)."""
    reason = getattr(error, "strerror", None) or (str(error).splitlines() or [repr(error)])[0]
    return QAError(
        f"could not write the index at {index_dir} ({reason}); the previous index is "
        "unchanged: free some space or pass --index DIR"
    )


def prune_versions(index_dir: Path, keep: Iterable[str] = ()) -> list[str]:
    """Remove the versions no process uses: not CURRENT, not in ``keep``, and no reader's
    lease on them (one written without a lease file is kept only if it is in ``keep``, as
    readers of older qa versions cannot say they use it). Returns the names removed. Call
    only under ``writer_lock``."""
    keep = set(keep) | {live_name(index_dir)}
    removed = []
    for old in sorted(index_dir.glob("v-*")):
        if old.name in keep or not old.is_dir():
            continue
        busy, held = in_use(old)
        if busy:
            continue
        try:
            # Renamed while the exclusive lock is held, so a reader that resolved CURRENT to
            # this version before the switch sees it gone once it gets its lease.
            grave = index_dir / f".tmp-old-{old.name}"
            os.rename(old, grave)
        except OSError:
            continue
        finally:
            release_lease(held)
        shutil.rmtree(grave, ignore_errors=True)
        removed.append(old.name)
    remove_leftovers(index_dir)
    return removed


def remove_leftovers(index_dir: Path) -> None:
    """Delete what a killed writer left behind: half-written version directories and temporary
    files. Call only under ``writer_lock``."""
    for leftover in [*index_dir.glob(".tmp-*"), *index_dir.glob(".*.tmp")]:
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


