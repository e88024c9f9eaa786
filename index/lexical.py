"""BM25 keyword index, persisted beside the vector index.

bm25s builds the index and owns its on-disk format (a CSC matrix of precomputed per-term,
per-passage scores, plus a vocabulary). Querying does not need bm25s: ``load`` memory-maps the
saved arrays and ``scores`` sums a query's columns with numpy, which keeps bm25s and scipy
(~0.3 s of imports) off the cold query path. The query tokenizer reproduces
``bm25s.tokenize`` (lower-case, ``\\b\\w\\w+\\b`` words, stopwords dropped, then Snowball
stemming); the stopword list is saved with the index so the two cannot drift apart.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from .vectors import load_npy

TOKEN_PATTERN = r"(?u)\b\w\w+\b"
QUERY_FILE = "query_tokenizer.json"
# bm25s methods whose scores are all in the matrix (the others add a non-occurrence term).
_SPARSE_METHODS = {"robertson", "lucene", "atire"}


@cache
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


@cache
def _split(pattern: str) -> Any:
    return re.compile(pattern).findall


def _bm25s_stopwords() -> list[str]:
    from bm25s.tokenization import _infer_stopwords

    return list(_infer_stopwords("en"))


def tokenize(texts: list[str], stopwords: frozenset[str] | None = None) -> list[list[str]]:
    """Stemmed tokens per text, as ``bm25s.tokenize(texts, stopwords="en", stemmer=...)``."""
    stop = stopwords if stopwords is not None else frozenset(_bm25s_stopwords())
    split = _split(TOKEN_PATTERN)
    stem = _stemmer().stemWords
    return [stem([t for t in split(text.lower()) if t not in stop]) for text in texts]


def build(texts: list[str], directory: Path) -> None:
    """Index ``texts`` with bm25s and save it (plus the query tokenizer's settings)."""
    import logging

    import bm25s

    # bm25s logs each build at DEBUG; keep it quiet if a library configured the root logger.
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    retriever = bm25s.BM25()
    tokens = bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(), show_progress=False)
    retriever.index(tokens, show_progress=False)
    retriever.save(str(directory), show_progress=False)
    settings = {"token_pattern": TOKEN_PATTERN, "lower": True, "stemmer": "english",
                "stopwords": sorted(_bm25s_stopwords())}
    (Path(directory) / QUERY_FILE).write_text(json.dumps(settings))


class Bm25Index:
    """A saved bm25s index, memory-mapped; scores queries with numpy alone.

    ``vocab_dict`` and ``scores`` (``data``/``indices``/``indptr``/``num_docs``) mirror the
    attributes of ``bm25s.BM25`` so code written against either keeps working.
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
        if query.exists():
            settings = json.loads(query.read_text())
            if settings.get("token_pattern") != TOKEN_PATTERN or not settings.get("lower", True):
                raise ValueError("BM25 index saved with another query tokenizer")
            self.stopwords = frozenset(settings["stopwords"])
        else:  # an index written before the settings file existed
            self.stopwords = frozenset(_bm25s_stopwords())

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


def load(directory: Path) -> Bm25Index:
    """Open a saved index for querying (memory-mapped, no bm25s import)."""
    return Bm25Index(directory)


def scores(retriever: Any, query: str) -> np.ndarray:
    """BM25 score of every passage for ``query`` (zeros where no term matches).

    ``retriever`` is a ``Bm25Index`` from ``load`` or a ``bm25s.BM25``.
    """
    stopwords = getattr(retriever, "stopwords", None)
    tokens = tokenize([query], stopwords)[0]
    known = [t for t in tokens if t in retriever.vocab_dict]
    if not known:
        return np.zeros(retriever.scores["num_docs"], dtype=np.float32)
    return np.asarray(retriever.get_scores(known), dtype=np.float32)
