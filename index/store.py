"""The index on disk: versioned, self-describing, switched over atomically.

Layout of an index directory::

    CURRENT              name of the live version directory (replaced atomically)
    .lock                held by the one writer
    model.onnx           query encoder exported from the verified weights (onnxruntime-optimised)
    model.onnx.data      its weights (ONNX external data)
    model.int8.onnx      int8 document encoder (CPUs without AMX), made on the building machine
    v-<stamp>/           one immutable version
        manifest.json    model, dimension, chunking, per-file hashes, sizes of the files below
        passages.sqlite  documents and passages (text, offsets, sentence spans, hashes)
        vectors.npy      int8 [n, dim], row i = passage id i (float32 before format 4)
        scales.npy       float32 [n]: row i's vector is vectors[i]·scales[i], normalised
        faiss.index      inner-product index over vectors.npy (flat, or IVF with 4-bit PQ
                         codes when large, re-scored from vectors.npy; flat ones are
                         searched from vectors.npy without loading faiss)
        bm25/            bm25s index over the same passages
        delta/           (after updates of a large index) the articles added since the files
                         above were written: the same files over passage ids after theirs,
                         plus the list of the base's articles removed; the base's files are
                         hard links to the previous version's

Writers build a new version directory, fsync it, then replace CURRENT; readers resolve
CURRENT once and only ever see complete versions.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .disk import fsync_dir, fsync_tree, link_atomic, write_atomic
from .errors import IndexDamaged, IndexLocked, IndexMissing, IndexOutdated, IndexStale, QAError
from .model import ONNX_FILE

# 2: documents.url, stored article texts of non-text formats; 3: language; 4: int8 vectors
# with a scale per row
FORMAT_VERSION = 4
CURRENT = "CURRENT"
DELTA = "delta"  # a version's folder of the articles updates added since its base was built
# The entry of every indexed file (hash, size, mtime; skipped, duplicate), beside the manifest
# rather than in it: an archive of 500,000 files makes it ~86 MB of JSON (1.2 s to parse),
# which updates and `qa index status` read, and opening a version for a question does not.
FILES = "files.json"
Progress = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


_DOCUMENT_COLUMNS = ("id, source, path, sha256, title, date, date_inferred, author, publisher,"
                     " encoding, url, stored, language")
DOCUMENT_CACHE = 8192  # articles kept in memory by an open store


def _document_row(r: Sequence[Any]) -> DocumentRow:
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


def _lock(index_dir: Path) -> Any:
    from filelock import FileLock

    return FileLock(index_dir / ".lock")


@contextmanager
def writer_lock(index_dir: Path, wait: bool = False) -> Iterator[None]:
    """Exclusive lock so two builds or updates never interleave. The OS releases it when the
    holder dies, even by kill -9, so a crashed writer never blocks the next one."""
    from filelock import Timeout

    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        lock = _lock(index_dir)
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        raise IndexLocked(
            f"another qa process is writing the index at {index_dir}: wait for it to finish"
        ) from None
    except OSError as error:
        raise QAError(
            f"cannot write the index at {index_dir} ({error.strerror or error}): pass --index DIR "
            "with a writable folder"
        ) from None
    try:
        yield
    finally:
        lock.release()


def is_being_written(index_dir: Path) -> bool:
    """Whether a writer holds the lock right now (for status displays; never blocks)."""
    from filelock import Timeout

    if not (Path(index_dir) / ".lock").exists():
        return False
    lock = _lock(Path(index_dir))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:
        return False
    lock.release()
    return False


def current_version(index_dir: Path) -> Path:
    """The live version directory, or IndexMissing."""
    name = _live_name(index_dir, missing_ok=False)
    version = Path(index_dir) / name
    if not name.startswith("v-") or not version.is_dir():
        raise IndexDamaged(f"index at {index_dir} is damaged (CURRENT): run `qa index build`")
    return version


def _live_name(index_dir: Path, missing_ok: bool = True) -> str:
    """The name CURRENT holds ("" when there is none and ``missing_ok``)."""
    try:
        return (Path(index_dir) / CURRENT).read_bytes().decode("utf-8").strip()
    except FileNotFoundError:
        if missing_ok:
            return ""
        raise IndexMissing(
            f"no index at {index_dir}: run `qa index build` (or `qa ask`, which builds it)"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        if missing_ok:
            return ""
        reason = "not text" if isinstance(error, UnicodeDecodeError) else str(error)
        raise IndexDamaged(
            f"index at {index_dir} is damaged (CURRENT: {reason}): run `qa index build`"
        ) from None


# Reader leases. Every version holds an empty LEASE file. A process using the version keeps a
# shared flock(2) on it until it closes the version; a writer removes an old version only
# when it can take the exclusive lock, i.e. no process uses it. The kernel drops the locks of
# a process that dies, even by kill -9, so a crashed reader never pins a version. flock is the
# same call with the same semantics on Linux and macOS (BSD locks on the open file, not on the
# process, shared by fork); on local file systems both honour it between processes. Where
# fcntl is missing (Windows) leases are skipped and the writer keeps the previous version.
LEASE = ".lease"


def _flock(fd: int, exclusive: bool, wait: bool) -> bool:
    """Lock ``fd``; False when ``wait`` is off and another process holds a conflicting lock."""
    try:
        import fcntl
    except ImportError:  # no flock: nothing to coordinate with
        return True
    flags = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        fcntl.flock(fd, flags | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def open_lease(version: Path) -> BinaryIO | bool | None:
    """A shared lease on ``version``: an open file to close when done (closing it, or the
    process ending, releases the lease), True for a version written without a lease file,
    None when the version went away (resolve CURRENT again)."""
    try:
        lease = open(version / LEASE, "rb")  # noqa: SIM115 - held until the store closes
    except FileNotFoundError:
        return True if version.is_dir() else None
    _flock(lease.fileno(), exclusive=False, wait=True)
    # A writer renames a version away while holding the exclusive lock: if that happened
    # before we got ours, the version is gone.
    if not version.is_dir():
        lease.close()
        return None
    return lease


def release_lease(lease: Any) -> None:
    if hasattr(lease, "close"):
        lease.close()


def _in_use(version: Path) -> tuple[bool, BinaryIO | None]:
    """(whether a reader holds a lease on ``version``, the file holding it exclusively)."""
    try:
        lease = open(version / LEASE, "rb")  # noqa: SIM115 - returned to the caller
    except OSError:
        return False, None
    if _flock(lease.fileno(), exclusive=True, wait=False):
        return False, lease
    lease.close()
    return True, None


def read_manifest(index_dir: Path, version: Path | None = None) -> dict[str, Any]:
    """The manifest of ``version`` (default: the live one)."""
    version = version or current_version(index_dir)
    try:
        manifest = json.loads((version / "manifest.json").read_text())
    except (OSError, ValueError):
        manifest = None
    counts = manifest.get("counts") if isinstance(manifest, dict) else None
    if not isinstance(counts, dict) or not isinstance(counts.get("passages"), int):
        raise IndexDamaged(f"index at {index_dir} is damaged: run `qa index build`")
    return manifest


def read_files(index_dir: Path, version: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The entries of the files ``version`` indexed (in its manifest when written before
    ``FILES`` existed)."""
    if "files" in manifest:
        return dict(manifest["files"])
    try:
        files = json.loads((version / FILES).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        files = None
    if not isinstance(files, dict):
        raise IndexDamaged(f"index at {index_dir} is damaged: run `qa index build`")
    return files


READABLE_FORMATS = (1, 2, 3, 4)  # formats an update can take passages and vectors from


def check_manifest(
    manifest: dict[str, Any], index_dir: Path, expect: dict[str, Any], older: bool = False
) -> None:
    """Refuse an index built by another format, model, dimension or chunker. With ``older``,
    an older format of the same model is accepted (an update reuses its vectors)."""
    problems = []
    version = manifest.get("format_version")
    old_format = version != FORMAT_VERSION and not (older and version in READABLE_FORMATS)
    if old_format:
        problems.append(f"format {version} (this qa reads {FORMAT_VERSION})")
    for key, want in expect.items():
        have = _dig(manifest, key)
        if have != want:
            problems.append(f"{key} {have!r} (expected {want!r})")
    if problems:
        # Same model and chunker, older layout: an update rebuilds it without re-embedding.
        cheap = old_format and len(problems) == 1 and version in READABLE_FORMATS
        fix = "qa index update` (it keeps the vectors)" if cheap else "qa index build`"
        error = IndexOutdated if cheap else IndexStale
        raise error(f"index at {index_dir} was built with {'; '.join(problems)}: run `{fix}")


def _dig(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None  # type: ignore[assignment]
    return data


def _open_db(path: Path, delta: Path | None = None) -> sqlite3.Connection:
    """A read-only connection; with ``delta`` (a delta's passages.sqlite) its rows are
    attached and the names ``documents``, ``passages`` and ``texts`` are views over both
    parts, without the base's articles the delta removed (``main.`` and ``delta.`` name the
    parts themselves)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    if delta is not None:
        db.execute("ATTACH DATABASE ? AS delta", (f"file:{delta}?mode=ro",))
        db.executescript(
            "CREATE TEMP VIEW documents AS SELECT * FROM main.documents WHERE id NOT IN"
            " (SELECT doc FROM delta.removed) UNION ALL SELECT * FROM delta.documents;"
            "CREATE TEMP VIEW passages AS SELECT * FROM main.passages WHERE doc NOT IN"
            " (SELECT doc FROM delta.removed) UNION ALL SELECT * FROM delta.passages;"
            "CREATE TEMP VIEW texts AS SELECT * FROM main.texts UNION ALL"
            " SELECT * FROM delta.texts;")
    db.execute("PRAGMA query_only = 1")
    return db


class Store:
    """A read-only view of one index version."""

    def __init__(
        self, index_dir: Path, expect: dict[str, Any] | None = None, mmap: bool = True,
        older: bool = False,
    ):
        """Open the live version. ``mmap`` (default) leaves the vector index on disk and maps
        it, so opening costs milliseconds at any size and processes share its pages. The
        version is leased until ``close``: no writer removes it while this store uses it."""
        self.index_dir = Path(index_dir)
        for _ in range(100):  # a writer switching versions meanwhile: resolve again
            named = _live_name(self.index_dir)
            try:
                self.version = current_version(self.index_dir)
            except IndexDamaged:
                # The version CURRENT named was switched away from and pruned before this
                # looked at it (a busy machine, two quick updates): CURRENT names another now.
                if _live_name(self.index_dir) != named:
                    continue
                raise
            self._lease = open_lease(self.version)
            if self._lease is not None:
                break
        else:
            raise IndexDamaged(f"index at {self.index_dir} keeps changing: try again")
        try:
            self._open(expect, mmap, older)
        except BaseException:
            self.close()
            raise

    def _open(self, expect: dict[str, Any] | None, mmap: bool, older: bool) -> None:
        from .vectors import FaissIndex, NumpyIndex, StackedIndex, VectorIndex, open_vectors

        # The same version for everything: CURRENT may switch while this loads.
        self.manifest = read_manifest(self.index_dir, self.version)
        check_manifest(self.manifest, self.index_dir, expect or {}, older)
        damaged = IndexDamaged(f"index at {self.index_dir} is damaged: run `qa index build`")
        if not _sizes_match(self.version, self.manifest.get("sizes")):
            raise damaged
        onnx = self.manifest.get("model", {}).get("onnx")
        if isinstance(onnx, dict) and not _sizes_match(
            self.index_dir, {ONNX_FILE: onnx.get("size")}
        ):
            raise IndexDamaged(
                f"index at {self.index_dir} is damaged (the query model {ONNX_FILE} is missing or"
                " truncated): run `qa index build`"
            )
        delta = self.manifest.get("delta")
        self.delta: dict[str, Any] | None = delta if isinstance(delta, dict) else None

        def vector_index(folder: Path, params: dict[str, Any]) -> VectorIndex:
            if params.get("kind") == "faiss-flat":
                return NumpyIndex.load(folder, mmap=mmap)
            # A quantised IVF index re-scores its candidates against the stored vectors:
            # a few thousand rows at random places a question.
            return FaissIndex.opening(folder / "faiss.index", open_vectors(folder, scattered=True),
                                      damaged, mmap=mmap)

        try:
            self.vectors: VectorIndex = vector_index(
                self.version, self.manifest.get("vector_index", {}))
            base = self.vectors.count
            if self.delta is not None:
                self.vectors = StackedIndex(self.vectors, vector_index(
                    self.version / DELTA, self.delta.get("vector_index", {})))
            self.db = _open_db(self.version / "passages.sqlite",
                               self.version / DELTA / "passages.sqlite" if self.delta else None)
            # Ids run from 0 without gaps, so the largest id counts the rows; count(*) would
            # read all of them (a second at 10M passages, on every cold `qa ask`).
            (last,) = self.db.execute("SELECT max(id) FROM main.passages").fetchone()
            count = 0 if last is None else last + 1
            if self.delta is not None:
                # (One aggregate a query: sqlite reads min and max together by a full scan.)
                (first,) = self.db.execute("SELECT min(id) FROM delta.passages").fetchone()
                (last,) = self.db.execute("SELECT max(id) FROM delta.passages").fetchone()
                if first not in (None, base):
                    raise damaged
                count += 0 if last is None else last + 1 - base
        except Exception as error:  # faiss raises RuntimeError, sqlite DatabaseError
            raise damaged from error
        if count != self.vectors.count or count != self.passage_count:
            raise damaged
        self._live: np.ndarray | None | bool = False  # not read yet
        self._vectors: Any = None
        self._documents: dict[int, DocumentRow] | None = None
        self._latest: str | None = None
        self._passage_docs: np.ndarray | None = None
        # Articles are read one at a time through a bounded cache, never all into memory;
        # the last few filter masks are kept.
        self.document = lru_cache(maxsize=DOCUMENT_CACHE)(self._read_document)
        self.passage_mask = lru_cache(maxsize=4)(self._passage_mask)
        self.db.create_function("casefold", 1, lambda s: s.casefold() if s else s,
                                deterministic=True)
        self._bm25: Any = None
        self._files: dict[str, Any] | None = None

    @property
    def files(self) -> dict[str, Any]:
        """The entries of the files this version indexed (``FILES``), read when first asked."""
        if self._files is None:
            self._files = read_files(self.index_dir, self.version, self.manifest)
        return self._files

    @property
    def passage_count(self) -> int:
        """Passage ids in use (with a delta, the base's and the delta's, removed or not)."""
        if self.delta is not None:
            return int(self.delta["base"]["passages"]) + int(self.delta["passages"])
        return int(self.manifest["counts"]["passages"])

    @property
    def document_count(self) -> int:
        """Document ids in use (as ``passage_count``)."""
        if self.delta is not None:
            return int(self.delta["base"]["documents"]) + int(self.delta["documents"])
        return int(self.manifest["counts"]["documents"])

    @property
    def live(self) -> np.ndarray | None:
        """A boolean per passage id, False for the passages of base articles a later update
        removed or replaced; None when there are none (read once)."""
        if self._live is False:
            removed = self.removed_documents()
            if not removed:
                self._live = None
            else:
                gone = np.zeros(self.document_count, dtype=bool)
                gone[np.fromiter(removed, dtype=np.int64, count=len(removed))] = True
                self._live = ~gone[self.passage_docs]
        return self._live  # type: ignore[return-value]

    @property
    def documents(self) -> dict[int, DocumentRow]:
        """Every article, loaded whole: for tools and tests. Answering never calls this
        (``document`` reads one article; filters select in SQL)."""
        if self._documents is None:
            rows = self._query(f"SELECT {_DOCUMENT_COLUMNS} FROM documents")
            self._documents = {r[0]: _document_row(r) for r in rows}
        return self._documents

    def _read_document(self, doc: int) -> DocumentRow:
        """One article by id (KeyError for none); ``document`` is this, cached."""
        rows = self._query(f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE id = ?", (doc,))
        if not rows:
            raise KeyError(doc)
        return _document_row(rows[0])

    @property
    def latest_date(self) -> str | None:
        """The date of the newest dated article (None when none is dated)."""
        if self._latest is None:
            # Newest first down the date index (built since it existed), per part.
            dates = self._query(
                "SELECT date FROM main.documents WHERE date IS NOT NULL"
                + (" AND id NOT IN (SELECT doc FROM delta.removed)" if self.delta else "")
                + " ORDER BY date DESC LIMIT 1")
            if self.delta is not None:
                dates += self._query("SELECT max(date) FROM delta.documents")
            self._latest = max((d for (d,) in dates if d), default="")
        return self._latest or None

    def document_named(self, source: str) -> DocumentRow | None:
        rows = self._query(f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE source = ?",
                           (source,))
        return _document_row(rows[0]) if rows else None

    def sources_like(self, part: str, limit: int = 5) -> list[str]:
        """Source names containing ``part`` (for "did you mean"), sorted."""
        rows = self._query("SELECT source FROM documents WHERE instr(source, ?) > 0"
                           " ORDER BY source LIMIT ?", (part, limit))
        return [r[0] for r in rows]

    def metadata_texts(self) -> Iterator[str]:
        """Every article's title, author and outlet (streamed)."""
        try:
            for row in self.db.execute("SELECT title, author, publisher FROM documents"):
                yield " ".join(v for v in row if v)
        except sqlite3.DatabaseError as error:
            raise self._damaged("passages.sqlite") from error

    def document_origins(self) -> Iterator[tuple[int, str, str, bool]]:
        """(id, source, path, stored) of every live article, streamed: which file each came
        from (an update's delta finds the articles of changed and removed files)."""
        try:
            for doc, source, path, stored in self.db.execute(
                    "SELECT id, source, path, stored FROM documents"):
                yield doc, source, path, bool(stored)
        except sqlite3.DatabaseError as error:
            raise self._damaged("passages.sqlite") from error

    def article_hashes(self) -> Iterator[tuple[str, str]]:
        """(source, sha256) of every live article, streamed: what tells an article new or
        changed after an update (``qa.watch``)."""
        try:
            yield from self.db.execute("SELECT source, sha256 FROM documents")
        except sqlite3.DatabaseError as error:
            raise self._damaged("passages.sqlite") from error

    def removed_documents(self) -> set[int]:
        """The base's articles the delta removed (none without a delta)."""
        if self.delta is None:
            return set()
        return {doc for (doc,) in self._query("SELECT doc FROM delta.removed")}

    def delta_documents(self) -> list[int]:
        """The ids of the delta's articles, in order (none without a delta)."""
        if self.delta is None:
            return []
        return [doc for (doc,) in self._query("SELECT id FROM delta.documents ORDER BY id")]

    def stored_text(self, doc: int) -> str | None:
        """The article text the index keeps for a non-text format (None for text files)."""
        rows = self._query("SELECT text FROM texts WHERE doc = ?", (doc,))
        return rows[0][0] if rows else None

    def passages(self, ids: Sequence[int]) -> list[PassageRow]:
        """Rows for ``ids``, in that order."""
        ids = [int(i) for i in ids]
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self._rows(f"WHERE id IN ({marks})", ids)
        by_id = {row.id: row for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    def passages_of(self, doc: int) -> list[PassageRow]:
        """Every passage of one article, in text order."""
        return self._rows("WHERE doc = ? ORDER BY id", (doc,))

    def leads(self, rows: Sequence[PassageRow], depth: int = 3) -> set[int]:
        """The ids of those ``rows`` that are their article's first story passage (kind
        "text"): no text passage of the article comes before it. Read off the ``depth``
        passages before each (an article's byline and captions come first; ids follow the
        text), so this costs a lookup of neighbouring rows, not a read of whole articles.
        A row with more than ``depth`` other passages of its article before it is no lead."""
        wanted = sorted({r.id - k for r in rows if r.kind == "text"
                         for k in range(1, depth + 1) if r.id - k >= 0})
        marks = ",".join("?" * len(wanted))
        before = {i: (doc, kind) for i, doc, kind in self._query(
            f"SELECT id, doc, kind FROM passages WHERE id IN ({marks})", wanted)}
        found = set()
        for row in rows:
            if row.kind != "text":
                continue
            for k in range(1, depth + 1):
                previous = before.get(row.id - k)
                if previous is None or previous[0] != row.doc:  # the article starts here
                    found.add(row.id)
                    break
                if previous[1] == "text":
                    break
        return found

    def bylines_of(self, docs: Sequence[int]) -> list[PassageRow]:
        """The byline passages of these articles."""
        docs = [int(d) for d in docs]
        if not docs:
            return []
        marks = ",".join("?" * len(docs))
        return self._rows(f"WHERE kind = 'byline' AND doc IN ({marks}) ORDER BY id", docs)

    def _passage_mask(self, *, as_of: str | None = None, since: str | None = None,
                      until: str | None = None, source: str | None = None,
                      articles: frozenset[str] | None = None) -> np.ndarray:
        """A boolean per passage id: whether its article passes the filters (selected in
        SQL; ``passage_mask`` is this, cached). ``as_of`` leaves out articles dated after it;
        ``since``/``until`` keep dated articles in that range; ``source`` keeps those whose
        source name or outlet contains it (case-insensitive); ``articles`` keeps only the
        articles of those source names."""
        needle = source.casefold() if source else None
        named = json.dumps(sorted(articles)) if articles is not None else None
        rows = self._query(
            "SELECT id FROM documents WHERE (?1 IS NULL OR date IS NULL OR date <= ?1)"
            " AND (?2 IS NULL OR (date IS NOT NULL AND date >= ?2))"
            " AND (?3 IS NULL OR (date IS NOT NULL AND date <= ?3))"
            " AND (?4 IS NULL OR instr(casefold(source), ?4) > 0"
            " OR instr(casefold(coalesce(publisher, '')), ?4) > 0)"
            " AND (?5 IS NULL OR source IN (SELECT value FROM json_each(?5)))",
            (as_of, since, until, needle, named))
        docs = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        size = self.document_count
        accepted = np.zeros(max(size, int(docs.max()) + 1 if len(docs) else 0), dtype=bool)
        accepted[docs] = True
        return accepted[self.passage_docs]

    @property
    def passage_docs(self) -> np.ndarray:
        """The article id of every passage, by passage id (read once)."""
        if self._passage_docs is None:
            # Every id, also those of removed articles: the tables, not the views.
            parts = ["main", "delta"] if self.delta else ["main"]
            docs = []
            for part in parts:
                rows = self._query(f"SELECT doc FROM {part}.passages ORDER BY id")
                docs.append(np.fromiter((r[0] for r in rows), dtype=np.int32, count=len(rows)))
            self._passage_docs = np.concatenate(docs)
        return self._passage_docs

    def _rows(self, where: str, args: Sequence[Any]) -> list[PassageRow]:
        rows = self._query(
            f"SELECT id, doc, start, end, kind, text, sentences, hash FROM passages {where}", args
        )
        try:
            return [
                PassageRow(r[0], r[1], r[2], r[3], r[4], r[5], _spans(r[6]), r[7]) for r in rows
            ]
        except (ValueError, TypeError) as error:
            raise self._damaged("passages.sqlite") from error

    def all_passages(self) -> Iterator[PassageRow]:
        try:
            for r in self.db.execute(
                "SELECT id, doc, start, end, kind, text, sentences, hash FROM passages ORDER BY id"
            ):
                yield PassageRow(r[0], r[1], r[2], r[3], r[4], r[5], _spans(r[6]), r[7])
        except (sqlite3.DatabaseError, ValueError, TypeError) as error:
            raise self._damaged("passages.sqlite") from error

    def passage_hashes(self) -> Iterator[tuple[str, int]]:
        """(content hash, passage id) of every passage, streamed."""
        try:
            yield from self.db.execute("SELECT hash, id FROM passages")
        except sqlite3.DatabaseError as error:
            raise self._damaged("passages.sqlite") from error

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Run a read query; a corrupt database file is IndexDamaged, not a traceback."""
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as error:
            raise self._damaged("passages.sqlite") from error

    def verify(self) -> None:
        """Hash every file of the version against the manifest (sizes are checked on every
        open; contents only here, as it reads everything): IndexDamaged on a mismatch.
        Versions written before digests were recorded pass."""
        for name, digest in sorted((self.manifest.get("sha256") or {}).items()):
            try:
                actual = _sha256(self.version / name)
            except OSError:
                actual = None
            if actual != digest:
                raise self._damaged(f"{name} does not match its recorded sha256")

    def _damaged(self, what: str) -> IndexDamaged:
        return IndexDamaged(f"index at {self.index_dir} is damaged ({what}): run `qa index build`")

    def load_vectors(self) -> Any:
        """The stored vectors, memory-mapped (``vectors.open_vectors``): rows read as float32.
        Mapped once per store (a question asks for them more than once)."""
        if self._vectors is None:
            self._vectors = self._map_vectors()
        return self._vectors

    def _map_vectors(self) -> Any:
        from .vectors import Quantized, Stacked, open_vectors

        try:
            vectors: Any = open_vectors(self.version)
            if self.delta is not None:
                delta = open_vectors(self.version / DELTA)
                if not isinstance(delta, Quantized):
                    raise ValueError("a delta's vectors are int8")
                vectors = Stacked(vectors, delta)
        except (OSError, ValueError) as error:
            raise self._damaged("vectors.npy") from error
        if vectors.ndim != 2 or vectors.shape[0] != self.passage_count:
            raise self._damaged("vectors.npy")
        return vectors

    @property
    def bm25(self) -> Any:
        """The bm25s index over the passages (loaded on first use, memory-mapped)."""
        if self._bm25 is None:
            from . import lexical

            try:
                self._bm25 = lexical.load(self.version / "bm25")
                if self.delta is not None:
                    self._bm25 = lexical.StackedBm25(self._bm25,
                                                     lexical.load(self.version / DELTA / "bm25"))
            except Exception as error:
                raise IndexDamaged(
                    f"index at {self.index_dir} is damaged (BM25): run `qa index build`"
                ) from error
        return self._bm25

    def close(self) -> None:
        """Close the database and give the version's lease back (idempotent)."""
        db = getattr(self, "db", None)
        if db is not None:
            db.close()
        release_lease(self._lease)
        self._lease = None


def _sizes_match(directory: Path, sizes: Any) -> bool:
    if not isinstance(sizes, dict):
        return False
    for name, size in sizes.items():
        try:
            if (directory / name).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def _file_sizes(directory: Path) -> dict[str, int]:
    """Size of every file under ``directory``, by relative path (checked on every load)."""
    return {
        p.relative_to(directory).as_posix(): p.stat().st_size
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _spans(raw: str) -> tuple[tuple[int, int], ...]:
    return tuple((int(a), int(b)) for a, b in json.loads(raw))


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
    from . import lexical
    from .vectors import VectorWriter, build_faiss, open_vectors

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
    manifest["sizes"] = _file_sizes(tmp)
    manifest["sha256"] = {
        file: digests.get(file) or _sha256(tmp / file)
        for file in manifest["sizes"] if file != LEASE
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    fsync_tree(tmp)
    # Kept without a lease check only if it has no lease file (written by an older qa).
    previous = _live_name(index_dir)
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
    keep = set(keep) | {_live_name(index_dir)}
    removed = []
    for old in sorted(index_dir.glob("v-*")):
        if old.name in keep or not old.is_dir():
            continue
        busy, held = _in_use(old)
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


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
