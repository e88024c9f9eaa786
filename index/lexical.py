"""BM25 keyword index (bm25s), persisted beside the vector index."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np


@cache
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


def tokenize(texts: list[str]) -> list[list[str]]:
    import bm25s

    return bm25s.tokenize(
        texts, stopwords="en", stemmer=_stemmer(), return_ids=False, show_progress=False
    )


def build(texts: list[str], directory: Path) -> None:
    import bm25s

    retriever = bm25s.BM25()
    tokens = bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(), show_progress=False)
    retriever.index(tokens, show_progress=False)
    retriever.save(str(directory), show_progress=False)


def load(directory: Path) -> Any:
    import bm25s

    return bm25s.BM25.load(str(directory), mmap=True, show_progress=False)


def scores(retriever: Any, query: str) -> np.ndarray:
    """BM25 score of every passage for ``query`` (zeros where no term matches)."""
    tokens = tokenize([query])[0]
    known = [t for t in tokens if t in retriever.vocab_dict]
    if not known:
        return np.zeros(retriever.scores["num_docs"], dtype=np.float32)
    return np.asarray(retriever.get_scores(known), dtype=np.float32)
