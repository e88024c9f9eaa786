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
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .vectors import load_npy

TOKEN_PATTERN = r"(?u)\b\w\w+\b"
QUERY_FILE = "query_tokenizer.json"
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
        self._stemmer = Stemmer.Stemmer("english")
        # PyStemmer objects are not thread-safe; servers answer on several threads.
        self._lock = threading.Lock()
        self.terms = lru_cache(maxsize=cache)(self.analyze)

    def stem(self, words: list[str]) -> list[str]:
        """Snowball stems of ``words`` (no stop-word filtering)."""
        with self._lock:
            return list(self._stemmer.stemWords(words))

    def analyze(self, text: str) -> tuple[str, ...]:
        """The terms of ``text`` (uncached: for whole articles; ``terms`` caches)."""
        return tuple(self.stem([w for w in self._words(text.lower()) if w not in self.stopwords]))

    def tokenize(self, texts: list[str]) -> list[list[str]]:
        """Terms per text, as ``bm25s.tokenize(texts, stopwords="en", stemmer=...)``."""
        return [list(self.analyze(text)) for text in texts]

    def settings(self) -> dict[str, Any]:
        return {"token_pattern": TOKEN_PATTERN, "lower": True, "stemmer": "english",
                "stopwords": sorted(self.stopwords)}


def build(texts: list[str], directory: Path) -> None:
    """Index ``texts`` with bm25s and save it (plus the query analyzer's settings)."""
    import logging

    import bm25s

    # bm25s logs each build at DEBUG; keep it quiet if a library configured the root logger.
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    analyzer = Analyzer()
    retriever = bm25s.BM25()
    tokens = bm25s.tokenize(texts, stopwords="en", stemmer=analyzer._stemmer, show_progress=False)
    retriever.index(tokens, show_progress=False)
    retriever.save(str(directory), show_progress=False)
    (Path(directory) / QUERY_FILE).write_text(json.dumps(analyzer.settings()))


class Bm25Index:
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

    def get_scores(self, tokens: list[str]) -> np.ndarray:
        """Summed BM25 score of ``tokens`` (repeats count again, as in bm25s) per passage."""
        data, indices, indptr = (self.scores[n] for n in ("data", "indices", "indptr"))
        out = np.zeros(self.num_docs, dtype=np.float32)
        for token in tokens:
            column = self.vocab_dict.get(token)
            if column is None or not token:
                continue
            start, end = int(indptr[column]), int(indptr[column + 1])
            # One passage appears at most once per column, so plain fancy-index adds are exact.
            out[indices[start:end]] += data[start:end]
        return out

    def search(self, query: str) -> np.ndarray:
        """BM25 score of every passage for ``query`` (zeros where no term matches)."""
        return self.get_scores(list(self.analyzer.terms(query)))

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


def load(directory: Path) -> Bm25Index:
    """Open a saved index for querying (memory-mapped, no bm25s import)."""
    return Bm25Index(directory)
