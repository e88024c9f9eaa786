"""One article into rows: its metadata read off the text (trusting what its format states),
its sentence-aware passages, and the rows, content hashes and file entry a build records.
``describe`` is pure, so it runs anywhere (here, or on a Ray cluster's nodes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..docs import file_sha256, file_state, printable
from ..models.embedder import token_counter
from ..models.spec import ModelSpec
from ..storage.rows import Build, DocumentRow, PassageRow, content_hash
from .chunk import MAX_TOKENS, Counter, chunk_segments
from .load import Document, Duplicate, Skipped
from .meta import extract_metadata, shown_title, title_outlet

Warn = Callable[[str], None]


def describe(document: Document, count_tokens: Counter,
             budget: int = MAX_TOKENS) -> tuple[Any, list[Any]]:
    """An article's metadata read off its text and its passages of at most ``budget`` word
    pieces (the costly part of reading: sentence splitting and token counts)."""
    meta = extract_metadata(document.text, infer=True)
    return meta, chunk_segments(document.text, meta.body, count_tokens, max_tokens=budget)


def counter(model: ModelSpec | None = None) -> Counter:
    """``model``'s word-piece counter (the default model's when None), counting a slice of
    texts at a time."""
    count = token_counter(model)

    def batched(texts: list[str]) -> list[int]:
        # The tokenizer keeps every encoding of a batch alive; a paragraph run of a huge file
        # can hold hundreds of thousands of sentences, so count them a slice at a time.
        counts: list[int] = []
        for i in range(0, len(texts), 4096):
            counts.extend(count(texts[i : i + 4096]))
        return counts

    return batched


def embedded_text(title: str | None, date: str | None, text: str) -> str:
    """What is embedded for a passage (and content-hashed): its article's title and date as
    context, then the passage (the context never goes into the cited text)."""
    prefix = " — ".join(p for p in (title, date) if p)
    return f"{prefix}\n{text}" if prefix else text


def add(build: Build, document: Document, described: tuple[Any, list[Any]], model: str,
        warn: Warn) -> None:
    """One described article into ``build``: its row, its passages (content-hashed under the
    ``model`` key), its file's entry."""
    meta, chunks = described
    if not chunks:
        name = document.path if not document.stored else f"{document.path} ({document.source})"
        warn(f"{printable(str(name))} has no article text (only headings, links or "
             "furniture): nothing indexed from it")
    title, date, inferred, publisher = _stated(document, meta)
    doc_id = build.next_document
    stated = document.article
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
            text, chunk.sentences, content_hash(model, embedded_text(title, date, text)),
        ))
    build.add(row, passages, document.text if document.stored else None)
    key = document.file or document.source
    if key not in build.files:  # once per file: an export's entry hashes the whole file
        build.files[key] = file_entry(document)


def _stated(document: Document, meta: Any) -> tuple[str | None, str | None, bool, str | None]:
    """(title, date, date inferred, publisher): what the format states is trusted over what
    is read off the text; a stated title is shown as one read off the text is ("… air …", no
    "| CNN" when CNN is the publisher)."""
    stated = document.article
    publisher = (stated and stated.publisher) or meta.publisher
    if stated and stated.title:
        publisher = publisher or title_outlet(stated.title, document.text, meta.body)
        title: str | None = shown_title(stated.title, publisher)
    else:
        title = meta.title
    date, inferred = (stated.date, False) if stated and stated.date else (
        meta.date, meta.date_inferred)
    return title, date, inferred, publisher


def record_unindexed(build: Build, skipped: list[Skipped],
                     duplicates: list[Duplicate]) -> None:
    """Files not indexed are recorded too, so `status` and `ask` don't report them as new
    forever; when one changes (fixed, or replaced) it counts as changed and is read again."""
    for item in skipped:
        build.files.setdefault(item.source, path_entry(item.path, skipped=item.reason))
    for copy in duplicates:
        if copy.path is not None:
            build.files.setdefault(copy.file, path_entry(copy.path, duplicate_of=copy.of))


def embed_texts(build: Build) -> Iterator[list[tuple[int, str, str]]]:
    """(passage id, content hash, text to embed) of ``build``'s passages in id order, a
    block at a time: the passage text after its article's title and date."""
    for rows in build.passages_to_embed():
        yield [(i, h, embedded_text(title, date, text)) for i, h, text, title, date in rows]


def file_entry(document: Document) -> dict[str, Any]:
    """What the index records of the file ``document`` came from (``files.json``)."""
    if document.stored:  # a record of an export, feed or crawl: the whole file's hash
        return path_entry(document.path)
    size, mtime = file_state(document.path)
    return {"sha256": document.sha256, "size": size, "mtime": mtime}


def path_entry(path: Path, **extra: Any) -> dict[str, Any]:
    """The entry of a file by its path: hash (None if unreadable), size, mtime."""
    size, mtime = file_state(path)
    try:
        digest: str | None = file_sha256(path)
    except OSError:
        digest = None
    return {"sha256": digest, "size": size, "mtime": mtime, **extra}
