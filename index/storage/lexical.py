"""BM25 keyword index, persisted beside the vector index.

bm25s builds the index and owns its on-disk format (a CSC matrix of precomputed per-term,
per-passage scores, plus a vocabulary). Querying does not need bm25s: ``load`` memory-maps the
saved arrays and ``Bm25Index.search`` sums a query's columns with numpy, which keeps bm25s and scipy
(slow imports) off the cold query path. The query tokenizer reproduces
``bm25s.tokenize`` (lower-case, ``\\b\\w\\w+\\b`` words, stopwords dropped, then Snowball
stemming); the stopword list is saved with the index so the two cannot drift apart.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .vectors import create_npy, load_npy

TOKEN_PATTERN = r"(?u)\b\w\w+\b"
QUERY_FILE = "query_tokenizer.json"
# Terms of the articles' titles, authors and outlets that no passage holds (refusals ask
# whether the archive knows a name at all), saved at build time so no question reads every
# article's metadata.
METADATA_FILE = "metadata_terms.json"
# bm25s methods whose scores are all in the matrix (the others add a non-occurrence term).
_SPARSE_METHODS = {"robertson", "lucene", "atire"}


def _bm25s_stopwords() -> list[str]:
    from bm25s.tokenization import _infer_stopwords

    return list(_infer_stopwords("en"))


class Analyzer:
    """How one index turns text into terms: bm25s's English analysis (lower-case words of 2+
    characters, stop words out, Snowball stems) with the stop words saved beside that index.

    One instance per open index, shared by keyword search, ranking and grouping; nothing here
    is module state, so two indexes open in one process never see each other's settings.
    Sentences and questions recur from query to query, so ``terms`` keeps a bounded cache.
    """

    def __init__(self, stopwords: frozenset[str] | None = None, cache: int = 65536):
        import Stemmer

        self.stopwords = frozenset(_bm25s_stopwords()) if stopwords is None else stopwords
        self._words = re.compile(TOKEN_PATTERN).findall
        # PyStemmer's own cache is slower than none (1.2 against 0.7 µs a word on news text);
        # ``_stems`` is a plain dict of the words seen (0.3 µs), filled up to ``STEMS`` words
        # and never emptied, so threads read it without the lock.
        self._stemmer = Stemmer.Stemmer("english", 0)
        self._stems: dict[str, str] = {}
        # PyStemmer objects are not thread-safe; servers answer on several threads.
        self._lock = threading.Lock()
        self.terms = lru_cache(maxsize=cache)(self.analyze)
        # The same, as a set: grouping compares each sentence with many others.
        self.term_set = lru_cache(maxsize=cache)(lambda text: frozenset(self.terms(text)))

    STEMS = 1 << 19  # words whose stems are kept (~60 MB at most)

    def stem(self, words: list[str]) -> list[str]:
        """Snowball stems of ``words`` (no stop-word filtering)."""
        known = self._stems
        missing = [w for w in words if w not in known]
        if not missing:
            return [known[w] for w in words]
        with self._lock:
            made = dict(zip(missing, self._stemmer.stemWords(missing), strict=True))
        if len(known) < self.STEMS:
            known.update(made)
        return [made[w] if w in made else known[w] for w in words]

    def analyze(self, text: str) -> tuple[str, ...]:
        """The terms of ``text`` (uncached: for whole articles; ``terms`` caches)."""
        return tuple(self.stem([w for w in self._words(text.lower()) if w not in self.stopwords]))

    def tokenize(self, texts: list[str]) -> list[list[str]]:
        """Terms per text, as ``bm25s.tokenize(texts, stopwords="en", stemmer=...)``."""
        return [list(self.analyze(text)) for text in texts]

    def settings(self) -> dict[str, Any]:
        return {"token_pattern": TOKEN_PATTERN, "lower": True, "stemmer": "english",
                "stopwords": sorted(self.stopwords)}


# bm25s.BM25()'s defaults, which the saved indexes have always used.
K1, B = 1.5, 0.75
PARAMS = {"k1": K1, "b": B, "delta": 0.5, "method": "lucene", "idf_method": "lucene",
          "dtype": "float32", "int_dtype": "int32", "backend": "numpy"}


def build(texts: Iterable[str], directory: Path,
          progress: Callable[[int], None] = lambda _: None,
          metadata: Iterable[str] = ()) -> None:
    """Index ``texts`` and save it in bm25s's format: the very scores ``bm25s.BM25().index``
    computes from ``bm25s.tokenize(texts, stopwords="en", stemmer=...)`` (Lucene BM25, k1 1.5,
    b 0.75; tests compare the two bit for bit), plus the query analyzer's settings.

    bm25s needs the whole tokenized corpus in memory as Python lists (gigabytes for a large
    export), so this streams instead: one pass writes each passage's (term, count) pairs to
    a scratch file while counting document frequencies; a second pass scores them and
    places each straight into its column of the memory-mapped CSC arrays. Memory holds the
    vocabulary and one count per term and per passage, never the corpus.

    ``metadata``: the articles' titles, authors and outlets; their terms that are in no
    passage are saved (``METADATA_FILE``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    analyzer = Analyzer(cache=0)
    vocab: dict[str, int] = {}
    df: list[int] = []
    lengths: list[int] = []  # terms per passage
    distinct: list[int] = []  # distinct terms per passage: its run in the scratch file
    scratch = directory / ".postings.tmp"
    try:
        with scratch.open("wb") as out:
            terms_buffer: list[int] = []
            counts_buffer: list[int] = []
            for number, text in enumerate(texts, start=1):
                terms = analyzer.analyze(text)
                counts = Counter(terms)
                ids = [vocab.setdefault(term, len(vocab)) for term in counts]
                df.extend([0] * (len(vocab) - len(df)))
                for i in ids:
                    df[i] += 1
                terms_buffer.extend(ids)
                counts_buffer.extend(counts.values())
                lengths.append(len(terms))
                distinct.append(len(ids))
                if len(terms_buffer) > 1 << 20:
                    _spill(out, terms_buffer, counts_buffer)
                if number % 10_000 == 0:
                    progress(number // 2)
            _spill(out, terms_buffer, counts_buffer)
        vocab[""] = len(vocab)  # bm25s's empty token: in the vocabulary, never a column
        _score(scratch, directory, np.asarray(df, dtype=np.int64),
               np.asarray(lengths, dtype=np.int64), np.asarray(distinct, dtype=np.int64),
               create_npy, progress)
    finally:
        scratch.unlink(missing_ok=True)
    (directory / "vocab.index.json").write_text(json.dumps(vocab, ensure_ascii=False),
                                                encoding="utf-8")
    (directory / "params.index.json").write_text(
        json.dumps({**PARAMS, "num_docs": len(lengths)}, indent=4))
    (directory / QUERY_FILE).write_text(json.dumps(analyzer.settings()))
    extra: set[str] = set()
    for text in metadata:
        extra.update(t for t in analyzer.analyze(text) if t not in vocab)
    (directory / METADATA_FILE).write_text(json.dumps(sorted(extra), ensure_ascii=False),
                                           encoding="utf-8")


def _spill(out: Any, terms: list[int], counts: list[int]) -> None:
    """Append (term, count) pairs to the scratch file and empty the buffers."""
    pairs = np.empty((len(terms), 2), dtype=np.int32)
    pairs[:, 0], pairs[:, 1] = terms, counts
    pairs.tofile(out)
    terms.clear()
    counts.clear()


def _score(scratch: Path, directory: Path, df: np.ndarray, lengths: np.ndarray,
           distinct: np.ndarray, create_npy: Any, progress: Callable[[int], None]) -> None:
    n_docs = len(lengths)
    # As bm25s: idf in float32 from double logs, the mean length in float64, scores computed
    # in float64 and stored as float32.
    idf = np.array([math.log(1 + (n_docs - d + 0.5) / (d + 0.5)) if d else 0.0 for d in df],
                   dtype=np.float32)
    avg = np.array(lengths).mean() if n_docs else np.float64(0)
    indptr = np.zeros(len(df) + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    nnz = int(indptr[-1])
    np.save(directory / "indptr.csc.index.npy", indptr)
    if not nnz:  # no passage has a term: empty columns (an empty file cannot be mapped)
        np.save(directory / "data.csc.index.npy", np.empty(0, dtype=np.float32))
        np.save(directory / "indices.csc.index.npy", np.empty(0, dtype=np.int32))
        return
    data = create_npy(directory / "data.csc.index.npy", (nnz,), np.float32)
    indices = create_npy(directory / "indices.csc.index.npy", (nnz,), np.int32)
    filled = indptr[:-1].copy()  # next free place in each column
    pairs = np.memmap(scratch, dtype=np.int32, mode="r", shape=(nnz, 2))
    # Passages in order, a block at a time: within a column, rows then come out ascending.
    row_ends = np.cumsum(distinct)
    first = 0
    while first < n_docs:
        last = min(n_docs, first + 50_000)
        start, end = int(row_ends[first - 1]) if first else 0, int(row_ends[last - 1])
        block = np.asarray(pairs[start:end])
        rows = np.repeat(np.arange(first, last, dtype=np.int32), distinct[first:last])
        terms, tf = block[:, 0], block[:, 1].astype(np.float32)
        norm = K1 * ((1 - B) + B * lengths[rows] / avg)
        scores = (idf[terms] * (tf / (norm + tf))).astype(np.float32)
        order = np.argsort(terms, kind="stable")
        sorted_terms = terms[order]
        starts = np.flatnonzero(np.r_[True, sorted_terms[1:] != sorted_terms[:-1]])
        runs = np.diff(np.r_[starts, len(sorted_terms)])
        within = np.arange(len(sorted_terms)) - np.repeat(starts, runs)
        places = filled[sorted_terms] + within
        data[places] = scores[order]
        indices[places] = rows[order]
        filled[sorted_terms[starts]] += runs
        progress(n_docs // 2 + last // 2)
        first = last
    data.flush()
    indices.flush()
    del data, indices, pairs


class _Questions:
    """What a keyword index answers for a question, given its ``analyzer`` and
    ``get_scores`` (every passage). The top n are taken from the scores by
    ``best_positive``."""

    analyzer: Analyzer

    def get_scores(self, tokens: list[str]) -> np.ndarray:
        raise NotImplementedError

    def search(self, query: str) -> np.ndarray:
        """BM25 score of every passage for ``query`` (zeros where no term matches)."""
        return self.get_scores(list(self.analyzer.terms(query)))


class Bm25Index(_Questions):
    """A saved bm25s index, memory-mapped; scores queries with numpy alone.

    ``analyzer`` is the index's own (the stop words it was built with); ``vocab_dict`` and
    ``scores`` (``data``/``indices``/``indptr``/``num_docs``) mirror ``bm25s.BM25``.
    """

    def __init__(self, directory: Path):
        directory = Path(directory)
        params = json.loads((directory / "params.index.json").read_text())
        method = params.get("method", "lucene")
        if method not in _SPARSE_METHODS:
            raise ValueError(f"BM25 method {method!r} needs bm25s to score")
        self.vocab_dict: dict[str, int] = json.loads(
            (directory / "vocab.index.json").read_text(encoding="utf-8")
        )
        arrays = {
            name: load_npy(directory / f"{name}.csc.index.npy")
            for name in ("data", "indices", "indptr")
        }
        self.num_docs = int(params["num_docs"])
        self.scores: dict[str, Any] = {**arrays, "num_docs": self.num_docs}
        query = directory / QUERY_FILE
        stopwords = None  # an index written before the settings file existed: bm25s's list
        if query.exists():
            settings = json.loads(query.read_text())
            if settings.get("token_pattern") != TOKEN_PATTERN or not settings.get("lower", True):
                raise ValueError("BM25 index saved with another query tokenizer")
            stopwords = frozenset(settings["stopwords"])
        self.analyzer = Analyzer(stopwords)
        self._idf: dict[str, float] = {}
        self.directory = directory

    @property
    def metadata_terms(self) -> set[str] | None:
        """Terms of titles, authors and outlets in no passage (None for an index saved before
        they were recorded: the caller reads the articles instead)."""
        path = self.directory / METADATA_FILE
        if not path.exists():
            return None
        return set(json.loads(path.read_text(encoding="utf-8")))

    def get_scores(self, tokens: list[str]) -> np.ndarray:
        """Summed BM25 score of ``tokens`` (repeats count again, as in bm25s) per passage."""
        out = np.zeros(self.num_docs, dtype=np.float32)
        self.add_scores(out, tokens)
        return out

    def _span(self, term: str) -> tuple[int, int, int] | None:
        """(column, start, end) of a stemmed term's postings; None for a term not indexed."""
        column = self.vocab_dict.get(term)
        if column is None or not term:
            return None
        indptr = self.scores["indptr"]
        return column, int(indptr[column]), int(indptr[column + 1])

    def add_scores(self, out: np.ndarray, tokens: list[str],
                   weight: Callable[[str], float] | None = None) -> None:
        """Add each token's stored scores (times ``weight(token)`` when given) into ``out``."""
        data, indices = self.scores["data"], self.scores["indices"]
        for token in tokens:
            span = self._span(token)
            if span is None:
                continue
            _, start, end = span
            # np.add.at: one pass (numpy 2's fast path), where ``out[ids] += …`` gathers,
            # adds and scatters; ~1.8x faster on the millions of postings of common words.
            values = data[start:end]
            if weight is not None:
                values = values * np.float32(weight(token))
            np.add.at(out, indices[start:end], values)

    def df(self, term: str) -> int:
        """Passages holding a stemmed term (its column's length)."""
        span = self._span(term)
        return 0 if span is None else span[2] - span[1]

    def stored_idf(self, term: str) -> float:
        """The idf its stored scores were computed with (bm25s: float32 of the double log)."""
        df = self.df(term)
        return float(np.float32(math.log(1 + (self.num_docs - df + 0.5) / (df + 0.5))))

    def idf(self, term: str) -> float:
        """Inverse document frequency of a stemmed term (BM25's, smoothed; cached)."""
        value = self._idf.get(term)
        if value is None:
            df = 0
            column = self.vocab_dict.get(term)
            if column is not None:
                data, indices, indptr = (self.scores[n] for n in ("data", "indices", "indptr"))
                start, end = int(indptr[column]), int(indptr[column + 1])
                df = int((data[start:end] > 0).sum())
            value = math.log(1 + (self.num_docs - df + 0.5) / (df + 0.5))
            self._idf[term] = value
        return value


SAMPLED_FROM = 1 << 17  # arrays this long find their top n through a sampled threshold


def best_positive(scores: np.ndarray, n: int) -> np.ndarray:
    """The positions of the ``n`` largest positive ``scores`` (fewer when fewer are
    positive), in no order. A question's words are held by millions of passages at 10M, and
    partitioning all their scores cost more than adding them up; so on a long array a
    threshold is read off a strided sample (a value about 8·n of the scores pass), and only
    the scores at or above it are partitioned. When fewer than ``n`` pass, the plain way:
    exact either way, since every score of the top ``n`` is at least the n-th best."""
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    if len(scores) >= SAMPLED_FROM and len(scores) > 64 * n:
        step = len(scores) // (SAMPLED_FROM // 2)
        sample = scores[::step]
        rank = min(len(sample) - 1, 8 * n // step)
        threshold = float(np.partition(sample, len(sample) - 1 - rank)[len(sample) - 1 - rank])
        if threshold > 0:
            passed = np.flatnonzero(scores >= threshold)
            if len(passed) >= n:
                return _partitioned(passed, scores[passed], n)
    positive = np.flatnonzero(scores > 0)
    return _partitioned(positive, scores[positive], n)


def _partitioned(ids: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    if len(ids) <= n:
        return ids
    return ids[np.argpartition(-values, n - 1)[:n]]


class Vocabulary:
    """The terms of two keyword indexes, as one read-only mapping of membership."""

    def __init__(self, *parts: dict[str, int]):
        self.parts = parts

    def __contains__(self, term: object) -> bool:
        return any(term in part for part in self.parts)

    def get(self, term: str, default: Any = None) -> Any:
        for part in self.parts:
            if term in part:
                return part[term]
        return default

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for part in self.parts:
            for term in part:
                if term not in seen:
                    seen.add(term)
                    yield term

    def __len__(self) -> int:
        return sum(1 for _ in self)


class StackedBm25(_Questions):
    """The keyword index of a version with a delta: the base's passages, then the delta's
    (ids ``base.num_docs`` on). Each part stores its scores with its own idf; at query time a
    term's scores in each part are rescaled to the idf of the whole archive (the two parts'
    passage and document-frequency counts summed), so idf is exactly what one index over all
    passages would use. What differs from a full rebuild: each part keeps its own average
    passage length in the length normalisation (both are averages over the same kind of
    articles), and passages of removed articles still count in the statistics until the
    next full build, as in Lucene until segments merge."""

    def __init__(self, base: Bm25Index, delta: Bm25Index):
        self.base, self.delta = base, delta
        self.analyzer = base.analyzer
        self.num_docs = base.num_docs + delta.num_docs
        self.vocab_dict = Vocabulary(base.vocab_dict, delta.vocab_dict)
        self._idf: dict[str, float] = {}

    def get_scores(self, tokens: list[str]) -> np.ndarray:
        out = np.zeros(self.num_docs, dtype=np.float32)
        for part, view in ((self.base, out[: self.base.num_docs]),
                           (self.delta, out[self.base.num_docs :])):
            part.add_scores(view, tokens, self._rescale(part))
        return out

    def _rescale(self, part: Bm25Index) -> Callable[[str], float]:
        """The factor taking ``part``'s stored scores of a term to the whole archive's idf."""
        return lambda term: self.idf(term) / (part.stored_idf(term) or 1.0)

    @property
    def metadata_terms(self) -> set[str] | None:
        base, delta = self.base.metadata_terms, self.delta.metadata_terms
        if base is None or delta is None:
            return None
        return base | delta

    def df(self, term: str) -> int:
        return self.base.df(term) + self.delta.df(term)

    def idf(self, term: str) -> float:
        value = self._idf.get(term)
        if value is None:
            df = self.df(term)
            value = math.log(1 + (self.num_docs - df + 0.5) / (df + 0.5))
            self._idf[term] = value
        return value


def load(directory: Path) -> Bm25Index:
    """Open a saved index for querying (memory-mapped, no bm25s import)."""
    return Bm25Index(directory)
