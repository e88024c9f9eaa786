"""Reading one index version: ``Store``, a read-only view of the version ``CURRENT`` names,
leased while open (its articles and passages in SQLite, its vectors and vector index, its
keyword index; a delta's parts read as one)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IndexDamaged
from ..models.export import ONNX_FILE
from . import lexical
from .layout import DELTA, current_version, live_name, open_lease, release_lease
from .manifest import check_manifest, read_files, read_manifest, sha256, sizes_match
from .rows import DOCUMENT_CACHE, DOCUMENT_COLUMNS, DocumentRow, PassageRow, document_row, spans
from .vectors import (
    FaissIndex,
    NumpyIndex,
    Quantized,
    Stacked,
    StackedIndex,
    VectorIndex,
    open_vectors,
)


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
            named = live_name(self.index_dir)
            try:
                self.version = current_version(self.index_dir)
            except IndexDamaged:
                # The version CURRENT named was switched away from and pruned before this
                # looked at it (a busy machine, two quick updates): CURRENT names another now.
                if live_name(self.index_dir) != named:
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
        # The same version for everything: CURRENT may switch while this loads.
        self.manifest = read_manifest(self.index_dir, self.version)
        check_manifest(self.manifest, self.index_dir, expect or {}, older)
        damaged = IndexDamaged(f"index at {self.index_dir} is damaged: run `qa index build`")
        if not sizes_match(self.version, self.manifest.get("sizes")):
            raise damaged
        self._check_export()
        delta = self.manifest.get("delta")
        self.delta: dict[str, Any] | None = delta if isinstance(delta, dict) else None
        try:
            self.vectors: VectorIndex = self._vector_index(
                self.version, self.manifest.get("vector_index", {}), mmap, damaged)
            base = self.vectors.count
            if self.delta is not None:
                self.vectors = StackedIndex(self.vectors, self._vector_index(
                    self.version / DELTA, self.delta.get("vector_index", {}), mmap, damaged))
            self.db = _open_db(self.version / "passages.sqlite",
                               self.version / DELTA / "passages.sqlite" if self.delta else None)
            count = self._count_rows(base, damaged)
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

    def _check_export(self) -> None:
        """IndexDamaged when the query model's export the manifest records is missing or
        truncated (sizes only; ``index.models.export.check_query_model`` hashes)."""
        onnx = self.manifest.get("model", {}).get("onnx")
        if isinstance(onnx, dict):
            name = str(onnx.get("file") or ONNX_FILE)
            if not sizes_match(self.index_dir, {name: onnx.get("size")}):
                raise IndexDamaged(
                    f"index at {self.index_dir} is damaged (the query model {name} is missing "
                    "or truncated): run `qa index build`"
                )

    @staticmethod
    def _vector_index(folder: Path, params: dict[str, Any], mmap: bool,
                      damaged: IndexDamaged) -> VectorIndex:
        if params.get("kind") == "faiss-flat":
            return NumpyIndex.load(folder, mmap=mmap)
        # A quantised IVF index re-scores its candidates against the stored vectors: a few
        # thousand rows at random places a question.
        return FaissIndex.opening(folder / "faiss.index", open_vectors(folder, scattered=True),
                                  damaged, mmap=mmap)

    def _count_rows(self, base: int, damaged: IndexDamaged) -> int:
        """Passage ids in the database (the delta's following the base's ``base``)."""
        # Ids run from 0 without gaps, so the largest id counts the rows; count(*) would read
        # all of them (a second at 10M passages, on every cold `qa ask`).
        (last,) = self.db.execute("SELECT max(id) FROM main.passages").fetchone()
        count = 0 if last is None else last + 1
        if self.delta is not None:
            # (One aggregate a query: sqlite reads min and max together by a full scan.)
            (first,) = self.db.execute("SELECT min(id) FROM delta.passages").fetchone()
            (last,) = self.db.execute("SELECT max(id) FROM delta.passages").fetchone()
            if first not in (None, base):
                raise damaged
            count += 0 if last is None else last + 1 - base
        return int(count)

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
            rows = self._query(f"SELECT {DOCUMENT_COLUMNS} FROM documents")
            self._documents = {r[0]: document_row(r) for r in rows}
        return self._documents

    def _read_document(self, doc: int) -> DocumentRow:
        """One article by id (KeyError for none); ``document`` is this, cached."""
        rows = self._query(f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = ?", (doc,))
        if not rows:
            raise KeyError(doc)
        return document_row(rows[0])

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
        rows = self._query(f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE source = ?",
                           (source,))
        return document_row(rows[0]) if rows else None

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
                PassageRow(r[0], r[1], r[2], r[3], r[4], r[5], spans(r[6]), r[7]) for r in rows
            ]
        except (ValueError, TypeError) as error:
            raise self._damaged("passages.sqlite") from error

    def all_passages(self) -> Iterator[PassageRow]:
        try:
            for r in self.db.execute(
                "SELECT id, doc, start, end, kind, text, sentences, hash FROM passages ORDER BY id"
            ):
                yield PassageRow(r[0], r[1], r[2], r[3], r[4], r[5], spans(r[6]), r[7])
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
                actual = sha256(self.version / name)
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


