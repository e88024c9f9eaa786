"""Hybrid retrieval: dense (FAISS) and keyword (BM25) candidates, fused into one ranking."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from index import lexical
from index.store import Store

RRF_K = 60


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    dense: float
    keyword: float


def dense_candidates(store: Store, query: np.ndarray, n: int) -> dict[int, float]:
    scores, ids = store.vectors.search(query.reshape(1, -1), n)
    return {int(i): float(s) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0}


def keyword_candidates(store: Store, question: str, n: int) -> dict[int, float]:
    scores = lexical.scores(store.bm25, question)
    if not scores.any():
        return {}
    n = min(n, len(scores))
    top = np.argpartition(-scores, n - 1)[:n]
    return {int(i): float(scores[i]) for i in top if scores[i] > 0}


def hybrid_search(store: Store, question: str, query: np.ndarray, n: int = 50) -> list[Hit]:
    """Candidates from both retrievers, ordered by reciprocal-rank fusion."""
    dense = dense_candidates(store, query, n)
    keyword = keyword_candidates(store, question, n)
    fused: dict[int, float] = {}
    for ranking in (dense, keyword):
        for rank, i in enumerate(sorted(ranking, key=ranking.__getitem__, reverse=True)):
            fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank + 1)
    missing = [i for i in fused if i not in dense]
    if missing:
        vectors = store.load_vectors()
        for i in missing:
            dense[i] = float(vectors[i] @ query)
    top_keyword = max(keyword.values(), default=0.0) or 1.0
    hits = [
        Hit(i, score, dense[i], keyword.get(i, 0.0) / top_keyword) for i, score in fused.items()
    ]
    hits.sort(key=lambda h: (-h.score, -h.dense))
    return hits
