"""Build, update and inspect an index: load → clean → chunk → embed → store."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import store
from .chunk import CHUNK_VERSION, MAX_TOKENS, OVERLAP_SENTENCES, Counter, chunk_segments
from .clean import find_body
from .errors import DocsError, IndexMissing
from .load import Document, find_files, load_documents
from .meta import extract_metadata
from .store import Build, DocumentRow, PassageRow, Progress, content_hash

Warn = Callable[[str], None]


def _ignore(_: str) -> None:
    pass


def _ignore_progress(stage: str, done: int, total: int) -> None:
    pass


def embed_prefix(title: str | None, date: str | None) -> str:
    """Context put in front of each passage when it is embedded (never into the cited text)."""
    parts = [p for p in (title, date) if p]
    return " — ".join(parts)


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
    version: Path | None = None


def prepare(
    documents: list[Document], count_tokens: Counter, model_name: str, progress: Progress
) -> Build:
    """Clean, describe and chunk documents into rows ready to embed and store."""
    build = Build()
    total = len(documents)
    for doc_id, document in enumerate(documents):
        meta = extract_metadata(document.text, infer=True)
        segments = find_body(document.text, meta.title)
        chunks = chunk_segments(document.text, segments, count_tokens)
        build.documents.append(
            DocumentRow(
                doc_id, document.source, str(document.path), document.sha256, meta.title,
                meta.date, meta.date_inferred, meta.author, meta.publisher, document.encoding,
            )
        )
        prefix = embed_prefix(meta.title, meta.date)
        for chunk in chunks:
            text = document.text[chunk.start : chunk.end]
            embedded = f"{prefix}\n{text}" if prefix else text
            build.passages.append(
                PassageRow(
                    len(build.passages), doc_id, chunk.start, chunk.end, chunk.kind, text,
                    chunk.sentences, content_hash(model_name, embedded),
                )
            )
            build.embed_texts.append(embedded)
        build.files[document.source] = _file_entry(document)
        progress("reading", doc_id + 1, total)
    return build


def _file_entry(document: Document) -> dict[str, Any]:
    stat = document.path.stat()
    return {"sha256": document.sha256, "size": stat.st_size, "mtime": stat.st_mtime}


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
        },
        "chunking": {
            "version": CHUNK_VERSION,
            "max_tokens": MAX_TOKENS,
            "overlap_sentences": OVERLAP_SENTENCES,
        },
        "docs_dir": str(Path(docs_dir).resolve()),
        "created": created or now,
        "updated": now,
        "counts": {"documents": len(build.documents), "passages": len(build.passages)},
        "files": build.files,
    }


def _default_embedder() -> Any:
    from .embed import TorchEmbedder

    return TorchEmbedder()


def _default_counter() -> Counter:
    from .embed import count_tokens

    return count_tokens


def _embed(
    embedder: Any, texts: list[str], progress: Progress, reuse: dict[str, np.ndarray],
    hashes: list[str],
) -> tuple[np.ndarray, int]:
    vectors = np.zeros((len(texts), embedder.dimension), dtype=np.float32)
    todo = [i for i, h in enumerate(hashes) if h not in reuse]
    for i, h in enumerate(hashes):
        if h in reuse:
            vectors[i] = reuse[h]
    done = 0
    progress("embedding", 0, len(todo))
    batch = 512  # bounded memory: embed and copy out in slices
    for s in range(0, len(todo), batch):
        ids = todo[s : s + batch]

        def advance(n: int) -> None:
            nonlocal done
            done += n
            progress("embedding", done, len(todo))

        vectors[ids] = embedder.embed([texts[i] for i in ids], progress=advance)
    return vectors, len(todo)


def check_docs(docs_dir: Path) -> list[Path]:
    """The article files in ``docs_dir``; DocsError when the folder is missing or has none."""
    files = find_files(Path(docs_dir))
    if not files:
        raise DocsError(
            f"no readable .txt or .md articles in {docs_dir}: add article files or pass --docs DIR"
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
) -> Report:
    """Index every article under ``docs_dir`` into a new version at ``index_dir``."""
    check_docs(docs_dir)
    documents = list(load_documents(Path(docs_dir), warn))
    if not documents:
        raise DocsError(
            f"no readable .txt or .md articles in {docs_dir}: add article files or pass --docs DIR"
        )
    index_dir = Path(index_dir)
    with store.writer_lock(index_dir):
        return _write(documents, docs_dir, index_dir, embedder, count_tokens, progress,
                      reuse_vectors)


def _write(
    documents: list[Document], docs_dir: Path, index_dir: Path, embedder: Any,
    count_tokens: Counter | None, progress: Progress, reuse_vectors: bool,
) -> Report:
    embedder = embedder or _default_embedder()
    count_tokens = count_tokens or _default_counter()
    old: dict[str, Any] | None = None
    reuse: dict[str, np.ndarray] = {}
    if reuse_vectors:
        old, reuse = _previous(index_dir, embedder)
    build = prepare(documents, count_tokens, embedder.name, progress)
    if not build.passages:
        raise DocsError(f"no article text found in {docs_dir}: nothing to index")
    vectors, embedded = _embed(
        embedder, build.embed_texts, progress, reuse, [p.hash for p in build.passages]
    )
    ensure_query_model(index_dir, embedder.name)
    manifest = _manifest(build, embedder, docs_dir, old.get("created") if old else None)
    onnx = index_dir / store.ONNX_FILE
    if onnx.exists():
        manifest["model"]["onnx"] = {"file": store.ONNX_FILE, "size": onnx.stat().st_size}
    version = store.write_version(index_dir, build, vectors, manifest, progress)
    report = Report(len(build.documents), len(build.passages), embedded, version=version)
    if old is not None:
        before, after = old.get("files", {}), build.files
        report.added = sorted(set(after) - set(before))
        report.removed = sorted(set(before) - set(after))
        report.changed = sorted(
            s for s in set(after) & set(before) if after[s]["sha256"] != before[s]["sha256"]
        )
    else:
        report.added = sorted(build.files)
    return report


def _previous(
    index_dir: Path, embedder: Any
) -> tuple[dict[str, Any] | None, dict[str, np.ndarray]]:
    """The old manifest and its vectors by content hash, when the old index is compatible."""
    try:
        old = store.Store(index_dir, expect=expected_manifest(embedder.name, embedder.dimension))
    except IndexMissing:
        return None, {}
    vectors = old.load_vectors()
    reuse = {p.hash: np.array(vectors[p.id]) for p in old.all_passages()}
    manifest = old.manifest
    old.close()
    return manifest, reuse


def ensure_query_model(index_dir: Path, model_name: str) -> None:
    """Export the ONNX query encoder once per index directory (real model only)."""
    from .model import MODEL_NAME

    if model_name != MODEL_NAME:
        return
    target = index_dir / store.ONNX_FILE
    if not target.exists():
        from .model import export_onnx

        index_dir.mkdir(parents=True, exist_ok=True)
        export_onnx(target)


def update_index(
    docs_dir: Path,
    index_dir: Path,
    *,
    embedder: Any = None,
    count_tokens: Counter | None = None,
    progress: Progress = _ignore_progress,
    warn: Warn = _ignore,
) -> Report:
    """Bring the index in line with ``docs_dir``, embedding only new or changed passages."""
    return build_index(
        docs_dir, index_dir, embedder=embedder, count_tokens=count_tokens, progress=progress,
        warn=warn, reuse_vectors=True,
    )


@dataclass
class Changes:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def docs_changes(docs_dir: Path, manifest: dict[str, Any]) -> Changes:
    """Files added, changed or removed since the index was built (size and mtime first,
    hashing only files whose stat differs)."""
    from .load import file_sha256, source_name

    docs_dir = Path(docs_dir)
    indexed: dict[str, Any] = manifest.get("files", {})
    changes = Changes()
    seen = set()
    try:
        paths = find_files(docs_dir)
    except DocsError:
        return Changes(removed=sorted(indexed))
    for path in paths:
        source = source_name(path, docs_dir)
        seen.add(source)
        entry = indexed.get(source)
        if entry is None:
            changes.added.append(source)
            continue
        try:
            stat = os.stat(path)
            if stat.st_size == entry["size"] and stat.st_mtime == entry["mtime"]:
                continue
            if file_sha256(path) != entry["sha256"]:
                changes.changed.append(source)
        except OSError:
            changes.changed.append(source)
    changes.removed = sorted(set(indexed) - seen)
    return changes
