"""The rows of an index version and the writer that fills them: ``DocumentRow`` and
``PassageRow`` (what ``passages.sqlite`` holds), the content hash that lets an update keep a
passage's vector, and ``Build``, a version's database written one article at a time."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOCUMENT_COLUMNS = ("id, source, path, sha256, title, date, date_inferred, author, publisher,"
                     " encoding, url, stored, language")
DOCUMENT_CACHE = 8192  # articles kept in memory by an open store


def document_row(r: Sequence[Any]) -> DocumentRow:
    return DocumentRow(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8], r[9], r[10],
                       bool(r[11]), r[12])


@dataclass(frozen=True)
class DocumentRow:
    id: int
    source: str
    path: str
    sha256: str
    title: str | None
    date: str | None
    date_inferred: bool
    author: str | None
    publisher: str | None
    encoding: str = "utf-8"
    url: str | None = None
    stored: bool = False  # the article text is kept in the index (not a text file's text)
    language: str | None = None  # as the page or record states it (never guessed)


@dataclass(frozen=True)
class PassageRow:
    id: int
    doc: int
    start: int
    end: int
    kind: str
    text: str
    sentences: tuple[tuple[int, int], ...]
    hash: str


SCHEMA = """
CREATE TABLE documents (id INTEGER PRIMARY KEY, source TEXT UNIQUE, path TEXT,
    sha256 TEXT, title TEXT, date TEXT, date_inferred INTEGER, author TEXT,
    publisher TEXT, encoding TEXT, url TEXT, stored INTEGER, language TEXT);
CREATE TABLE texts (doc INTEGER PRIMARY KEY, text TEXT);
CREATE TABLE passages (id INTEGER PRIMARY KEY, doc INTEGER, start INTEGER,
    end INTEGER, kind TEXT, text TEXT, sentences TEXT, hash TEXT);
"""


class Build:
    """A version being written in ``folder`` (from ``new_version``): its passages.sqlite is
    filled a document at a time, so an archive of any size is never held in memory; the
    vectors and keyword index are then made from it by streaming its rows.

    ``files`` is what the manifest records per file; ``documents`` and ``passages`` count
    the rows added (ids are given in that order, from ``first`` — a delta's from its base's
    counts — ``next_document`` and ``next_passage`` are the next ones). A delta's database
    also lists the base's articles it removes (``remove``)."""

    def __init__(self, folder: Path, first: tuple[int, int] = (0, 0), delta: bool = False):
        self.folder = Path(folder)
        self.folder.mkdir(exist_ok=True)
        self.files: dict[str, dict[str, Any]] = {}
        self.first_document, self.first_passage = first
        self.documents = 0
        self.passages = 0
        self.removed = 0
        self.precision: str | None = None  # of the vectors, when not the local embedder's
        self.db = sqlite3.connect(self.folder / "passages.sqlite")
        # A scratch file until the version is fsynced whole and published: no journal.
        self.db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + SCHEMA + (
            "CREATE TABLE removed (doc INTEGER PRIMARY KEY);" if delta else ""))

    @property
    def next_document(self) -> int:
        return self.first_document + self.documents

    @property
    def next_passage(self) -> int:
        return self.first_passage + self.passages

    def remove(self, docs: Iterable[int]) -> None:
        """Record base articles this delta removes (or replaces by a new copy)."""
        rows = [(int(d),) for d in docs]
        self.db.executemany("INSERT OR IGNORE INTO removed VALUES (?)", rows)
        self.removed += len(rows)

    def add(self, document: DocumentRow, passages: Sequence[PassageRow],
            text: str | None = None) -> None:
        """Add a document (id ``self.documents``), its passages (ids from ``self.passages``)
        and, for formats whose file is not the article, its stored article ``text``."""
        d = document
        self.db.execute(
            "INSERT INTO documents VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (d.id, d.source, d.path, d.sha256, d.title, d.date, int(d.date_inferred), d.author,
             d.publisher, d.encoding, d.url, int(d.stored), d.language))
        if text is not None:
            self.db.execute("INSERT INTO texts VALUES (?,?)", (d.id, text))
        self.db.executemany(
            "INSERT INTO passages VALUES (?,?,?,?,?,?,?,?)",
            [(p.id, p.doc, p.start, p.end, p.kind, p.text, json.dumps(p.sentences), p.hash)
             for p in passages])
        self.documents += 1
        self.passages += len(passages)

    def _rows(self, sql: str, size: int = 2048) -> Iterator[list[Any]]:
        cursor = self.db.execute(sql)
        while rows := cursor.fetchmany(size):
            yield rows

    def passage_texts(self) -> Iterator[str]:
        for rows in self._rows("SELECT text FROM passages ORDER BY id"):
            for (text,) in rows:
                yield text

    def metadata_texts(self) -> Iterator[str]:
        """Each article's title, author and outlet, streamed."""
        for rows in self._rows("SELECT title, author, publisher FROM documents"):
            for row in rows:
                yield " ".join(v for v in row if v)

    def hashes(self) -> Iterator[str]:
        """The content hash of every passage added."""
        for rows in self._rows("SELECT hash FROM passages"):
            for (digest,) in rows:
                yield digest

    def passages_to_embed(self) -> Iterator[list[tuple[int, str, str, str | None, str | None]]]:
        """(id, content hash, text, article title, article date) of every passage in id
        order, a block at a time."""
        yield from self._rows("SELECT p.id, p.hash, p.text, d.title, d.date FROM passages p "
                              "JOIN documents d ON d.id = p.doc ORDER BY p.id")

    def close(self) -> None:
        # Looking up an article's passages, or the newest date (every `qa ask` as of a date),
        # must not scan them all (a large archive). Sources are unique: indexed already.
        self.db.executescript(
            "CREATE INDEX IF NOT EXISTS passages_doc ON passages(doc);"
            "CREATE INDEX IF NOT EXISTS documents_date ON documents(date);")
        self.db.commit()
        self.db.close()


def content_hash(model: str, text: str) -> str:
    return hashlib.sha256(f"{model}\x00{text}".encode()).hexdigest()[:32]


def spans(raw: str) -> tuple[tuple[int, int], ...]:
    return tuple((int(a), int(b)) for a, b in json.loads(raw))


