"""Hybrid retrieval: dense (FAISS) and keyword (BM25) candidates, fused into one ranking.

Each stage is a ranking of its own so ``qa eval --stage`` can measure what it adds:
``dense`` (cosine only), ``bm25`` (keyword only), ``fused`` (the two combined). The final
ordering on top of ``fused`` lives in ``qa.rerank``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from index import lexical
from index.store import Store

RRF_K = 60
# Weight of the keyword score in the blend; the dense cosine gets 1 - BLEND. Tuned on squad-a
# (see docs/EVALUATION.md).
BLEND = 0.3


@dataclass
class Hit:
    id: int
    score: float  # the ordering score of the stage that produced this list
    dense: float  # cosine similarity of question and passage
    keyword: float  # BM25 score divided by the best BM25 score for this question (0..1)
    fused: float = 0.0


def dense_candidates(
    store: Store, query: np.ndarray, n: int, allowed: np.ndarray | None = None
) -> dict[int, float]:
    if allowed is not None:
        if not len(allowed):
            return {}
        vectors = store.load_vectors()
        scores = np.asarray(vectors[allowed] @ query)
        top = np.argsort(-scores)[:n]
        return {int(allowed[i]): float(scores[i]) for i in top}
    scores, ids = store.vectors.search(query.reshape(1, -1), n)
    return {int(i): float(s) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0}


def keyword_scores(store: Store, question: str, allowed: np.ndarray | None = None) -> np.ndarray:
    scores = lexical.scores(store.bm25, question)
    if allowed is not None:
        mask = np.zeros(len(scores), dtype=bool)
        mask[allowed] = True
        scores = np.where(mask, scores, 0.0)
    return scores


def _top(scores: np.ndarray, n: int) -> dict[int, float]:
    if not scores.any():
        return {}
    n = min(n, len(scores))
    top = np.argpartition(-scores, n - 1)[:n]
    return {int(i): float(scores[i]) for i in top if scores[i] > 0}


def keyword_candidates(store: Store, question: str, n: int) -> dict[int, float]:
    return _top(keyword_scores(store, question), n)


def candidates(
    store: Store,
    question: str,
    query: np.ndarray,
    n: int = 50,
    allowed: np.ndarray | None = None,
) -> list[Hit]:
    """The union of the top ``n`` dense and top ``n`` BM25 passages, with both scores each."""
    dense = dense_candidates(store, query, n, allowed)
    bm25 = keyword_scores(store, question, allowed)
    keyword = _top(bm25, n)
    ids = list(dict.fromkeys([*dense, *keyword]))
    missing = [i for i in ids if i not in dense]
    if missing:
        vectors = store.load_vectors()
        scores = np.asarray(vectors[np.array(missing)] @ query)
        dense.update(zip(missing, scores.tolist(), strict=True))
    best = float(bm25.max()) if len(bm25) else 0.0
    best = best or 1.0
    return [Hit(i, 0.0, dense[i], float(bm25[i]) / best) for i in ids]


def order(hits: Sequence[Hit], key: str) -> list[Hit]:
    """Hits sorted by one stage: "dense", "bm25", "rrf" or "blend" (sets ``score``)."""
    hits = list(hits)
    if key == "dense":
        for h in hits:
            h.score = h.dense
    elif key == "bm25":
        for h in hits:
            h.score = h.keyword
    elif key == "rrf":
        fused = rrf(hits)
        for h in hits:
            h.score = fused[h.id]
    elif key == "blend":
        for h in hits:
            h.score = blend(h.dense, h.keyword)
    else:
        raise ValueError(f"unknown ranking {key!r}")
    hits.sort(key=lambda h: (-h.score, -h.dense, h.id))
    return hits


def blend(dense: float, keyword: float, weight: float = BLEND) -> float:
    return (1 - weight) * dense + weight * keyword


def rrf(hits: Sequence[Hit], k: int = RRF_K) -> dict[int, float]:
    fused = {h.id: 0.0 for h in hits}
    for attr in ("dense", "keyword"):
        ranked = sorted(hits, key=lambda h: (-getattr(h, attr), h.id))
        for rank, h in enumerate(ranked):
            if getattr(h, attr) > 0:
                fused[h.id] += 1.0 / (k + rank + 1)
    return fused


def hybrid_search(store: Store, question: str, query: np.ndarray, n: int = 50) -> list[Hit]:
    """Candidates from both retrievers, ordered by the fused score."""
    hits = candidates(store, question, query, n)
    for h in order(hits, "blend"):
        h.fused = h.score
    return order(hits, "blend")
