"""One run of a build or update: ``BuildOptions`` (what it needs besides its folders), the
``Job`` (those, its model resolved, the embedder and token counter it uses), its ``Report``,
and the two stages every run shares: describing the articles into rows (``prepare``) and
embedding them into the version's vectors (``embed``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..models.export import INT8_FILE, ensure_query_model, export_folder
from ..models.spec import DEFAULT, ModelSpec
from ..storage.manifest import CHUNK_VERSION, FORMAT_VERSION, expected, now_iso
from ..storage.rows import Build
from ..storage.vectors import VectorWriter
from . import distributed
from .chunk import OVERLAP_SENTENCES, Counter
from .describe import add, counter, describe, embed_texts
from .embed import document_embedder
from .load import Documents

Warn = Callable[[str], None]
Progress = Callable[[str, int, int], None]


def _ignore(_: str) -> None:
    pass


def _ignore_progress(stage: str, done: int, total: int) -> None:
    pass


@dataclass(frozen=True)
class BuildOptions:
    """What a build or update needs besides its folders. ``embedder`` and ``count_tokens``
    stand in for the model's own (tests pass a small fake); ``model`` is the model to build
    with (None: the default for a build, the index's own for an update); ``model_cache`` is
    where a model's ONNX export is kept for every index; ``fields`` maps article fields to an
    export's columns (None: as the index was built); ``ray`` is a Ray cluster's address to
    embed on, ``shards`` a folder its nodes share; ``retrain`` trains the vector index
    afresh."""

    embedder: Any = None
    count_tokens: Counter | None = None
    model: ModelSpec | None = None
    progress: Progress = _ignore_progress
    warn: Warn = _ignore
    model_cache: Path | None = None
    fields: dict[str, str] | None = None
    ray: str | None = None
    shards: Path | None = None
    retrain: bool = False


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


@dataclass
class Job:
    """One build or update: its folders, options and model, and (once ``start``ed) the
    embedder and token counter it uses."""

    docs_dir: Path
    index_dir: Path
    options: BuildOptions
    model: ModelSpec = DEFAULT
    fields: dict[str, str] = field(default_factory=dict)
    embedder: Any = None
    count_tokens: Counter | None = None
    made: bool = False  # the embedder is this job's: it stops its worker processes

    @property
    def key(self) -> str:
        """What the passages' vectors are known by (content hashes): the model's key, or the
        name of the embedder given."""
        given = self.options.embedder
        return given.name if given is not None else self.model.key

    def expect(self) -> dict[str, Any]:
        """What the live version's manifest must say for its vectors to be reused."""
        return expected(self.options.embedder, self.model if self.options.model else None)

    def start(self) -> None:
        """The query model's export, checked once (from the shared cache if any); with the
        real model the int8 one (documents on most CPUs, re-ranked sentences on all) in the
        same export. Then the embedder and the token counter."""
        folder = export_folder(self.index_dir, self.model)
        if self.options.embedder is None:
            ensure_query_model(folder, self.model, verify=True, cache=self.options.model_cache,
                               int8=True)
        self.made = self.options.embedder is None  # then its worker processes are this job's
        self.embedder = self.options.embedder or document_embedder(folder, self.model)
        self.count_tokens = self.options.count_tokens or counter(self.model)

    def close(self) -> None:
        """Stop the worker processes of an embedder this job made (idempotent)."""
        close = getattr(self.embedder, "close", None) if self.made else None
        if close is not None:
            close()

    def manifest(self, build: Build, created: str | None) -> dict[str, Any]:
        """The new version's manifest (what ``publish`` adds: sizes, digests, indexes)."""
        embedder, now = self.embedder, now_iso()
        model = self.model.to_manifest()
        if self.options.embedder is not None:  # a stand-in: its name, not a loadable model
            model = {"name": embedder.name, "dimension": embedder.dimension,
                     "sha256": getattr(embedder, "sha256", None), "normalized": True,
                     "window": self.model.window, "pooling": self.model.pooling,
                     "passage_budget": self.model.passage_budget}
        model["precision"] = build.precision or getattr(embedder, "precision", None)
        return {
            "format_version": FORMAT_VERSION,
            "model": model,
            "chunking": {"version": CHUNK_VERSION, "max_tokens": self.model.passage_budget,
                         "overlap_sentences": OVERLAP_SENTENCES},
            "docs_dir": str(Path(self.docs_dir).resolve()),
            "created": created or now,
            "updated": now,
            "counts": {"documents": build.documents, "passages": build.passages},
            "files": build.files,
            "fields": self.fields,
        }


def prepare(job: Job, documents: Documents, build: Build) -> None:
    """Clean, describe and chunk documents into ``build``, one document at a time; with a Ray
    cluster the describing runs there, in order.

    Progress ("reading") is reported in characters, advanced as sentences are tokenized, so a
    single huge file shows progress too.
    """
    progress, warn = job.options.progress, job.options.warn
    total = documents.chars
    done = 0
    progress("reading", 0, total)
    if job.options.ray is not None:
        for document, described in zip(documents, distributed.describe(job.options.ray,
                                                                       documents), strict=True):
            add(build, document, described, job.key, warn)
            done += len(document.text)
            progress("reading", done, total)
        return
    assert job.count_tokens is not None
    for document in documents:
        counting = _counting(job.count_tokens, progress, (done, len(document.text), total))
        add(build, document, describe(document, counting, job.model.passage_budget), job.key,
            warn)
        done += len(document.text)
        progress("reading", done, total)


def _counting(count_tokens: Counter, progress: Progress,
              where: tuple[int, int, int]) -> Counter:
    """``count_tokens`` reporting progress through one document (``where``: characters done
    before it, its size, the total) every 250,000 characters counted."""
    before, size, total = where
    counted = reported = 0

    def counting(texts: list[str]) -> list[int]:
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

    return counting


def embed(job: Job, build: Build, reuse: dict[str, int] | None,
          old_vectors: Any) -> tuple[int, dict[str, int], Any]:
    """Write the vectors of ``build``'s passages into its folder (``VectorWriter``), a block
    at a time: rows whose content hash is in ``reuse`` are copied from ``old_vectors`` (row
    ``reuse[hash]``), the rest are embedded — here, or on a Ray cluster with the int8 model
    (``distributed.embed``). Returns how many were embedded, by which Ray node, and the
    ``distributed.Shards`` used (or None)."""
    reuse = reuse or {}
    embedder, progress = job.embedder, job.options.progress
    vectors = VectorWriter(build.folder, build.passages, embedder.dimension,
                           first=build.first_passage)
    todo = sum(1 for h in build.hashes() if h not in reuse)
    if job.options.ray is None and hasattr(embedder, "expect"):  # how hard to choose
        embedder.expect(todo)
    advance = _advancing(progress, todo)
    pending = _pending(build, vectors, reuse, old_vectors)
    nodes: dict[str, int] = {}
    shards = None
    if job.options.ray is None:
        for waiting in pending:
            vectors[[i for i, _, _ in waiting]] = embedder.embed([t for _, _, t in waiting],
                                                                 progress=advance)
    else:
        def put(ids: np.ndarray, block: np.ndarray) -> None:
            vectors[ids] = block

        int8 = export_folder(job.index_dir, job.model) / INT8_FILE
        nodes, shards = distributed.embed(job.options.ray, int8, pending,
                                          put, advance, job.options.shards)
        build.precision = "int8"  # the cluster's model, whatever this machine would choose
    vectors.flush()  # the mappings themselves close when this returns
    return todo, nodes, shards


def _advancing(progress: Progress, todo: int) -> Callable[[int], None]:
    done = 0
    progress("embedding", 0, todo)

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress("embedding", done, todo)

    return advance


def _pending(build: Build, vectors: VectorWriter, reuse: dict[str, int],
             old_vectors: Any) -> Iterator[list[tuple[int, str, str]]]:
    """The passages to embed (id, content hash, text), a bounded block at a time; reused
    vectors copied over as the blocks are read."""
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


def spent(report: Report, shards: Any) -> None:
    """Once a version is published, the ``distributed.Shards`` it was assembled from (None
    when it was not) have done their work: count what came from an earlier build's, remove
    them."""
    if shards is not None:
        report.from_shards = shards.reused
        shards.remove_used()


