"""Hybrid retrieval: dense (FAISS) and keyword (BM25) candidates, fused into one ranking.

Each ordering is a stage of its own so ``qa eval --stage`` can measure what it adds: ``dense``
(cosine only), ``bm25`` (keyword only), ``fused`` (the two blended) and ``rrf``
(reciprocal-rank fusion, the alternative). The final ordering lives in ``qa.ranking``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from index.storage.lexical import best_positive
from index.storage.reader import Store
from index.storage.rows import DocumentRow, PassageRow
from index.storage.vectors import FaissIndex, StackedIndex, VectorIndex, dot

from .ranking import Candidate, RankingConfig

STAGES = ("dense", "bm25", "rrf", "fused", "final")


def retrieve(
    store: Store,
    question: str,
    query: np.ndarray | Callable[[], np.ndarray],
    n: int,
    allowed: np.ndarray | None,
    config: RankingConfig,
) -> list[Candidate]:
    """The union of the top ``n`` dense and top ``n`` BM25 passages (of the passages
    ``allowed`` marks, a boolean per passage id, when given), with both scores each, ordered
    by the fused score. ``query`` is the question's vector or a call that gives it, made after
    the keyword search and the reading of its passages' rows, articles and leads (the model
    may still be running)."""
    if allowed is None:
        allowed = store.live  # None unless an update removed articles of the base
    # Keywords first: a new process's vector index may still be reading (``FaissIndex.opening``).
    bm25 = store.bm25.search(question)
    if allowed is not None:
        bm25 *= allowed
    keyword = {int(i): float(bm25[i]) for i in best_positive(bm25, n)}
    rows: dict[int, PassageRow] = {}
    documents: dict[int, DocumentRow] = {}
    leads: set[int] = set()
    if callable(query):
        # While the model may still be embedding the question: the keyword passages' rows,
        # articles and leads (the dense-only ones are read after the vector search).
        leads = _read(store, list(keyword), rows, documents)
        query = query()
    dense = _dense(store, query, n, allowed)
    ids = list(dict.fromkeys([*dense, *keyword]))
    missing = [i for i in ids if i not in dense]
    if missing:
        scores = dot(store.load_vectors(), query, np.array(missing))
        dense.update(zip(missing, scores.tolist(), strict=True))
    best = max(keyword.values(), default=0.0) or 1.0  # the best keyword score of all
    leads |= _read(store, [i for i in ids if i not in rows], rows, documents)
    candidates = [
        Candidate(rows[i], documents[rows[i].doc], dense[i], float(bm25[i]) / best,
                  lead=i in leads)
        for i in ids if i in rows
    ]
    ordered = order(candidates, config.fusion, config)
    for c in ordered:
        c.fused = c.score
    return ordered


def _read(
    store: Store, ids: list[int], rows: dict[int, PassageRow],
    documents: dict[int, DocumentRow],
) -> set[int]:
    """Read the rows of passages ``ids`` and their articles into ``rows`` and ``documents``;
    return which of them are the lead of a dated news article."""
    found = store.passages(ids)
    rows.update((row.id, row) for row in found)
    for doc in {row.doc for row in found} - documents.keys():
        documents[doc] = store.document(doc)
    news = [row for row in found
            if documents[row.doc].date is not None and not documents[row.doc].date_inferred]
    return store.leads(news)


def _dense(
    store: Store, query: np.ndarray, n: int, allowed: np.ndarray | None = None
) -> dict[int, float]:
    index = store.vectors
    # The stored vectors serve filtered questions only (an exact pass over the allowed ones).
    vectors = store.load_vectors() if allowed is not None else None
    if not isinstance(index, StackedIndex):
        return _dense_in(index, vectors, query, n, allowed)
    # A version with a delta: each part searched on its own, the best n of both kept.
    found: dict[int, float] = {}
    parts = (vectors.base, vectors.delta) if vectors is not None else (None, None)
    for (part, first), part_vectors in zip(index.parts(), parts, strict=True):
        mask = None if allowed is None else allowed[first : first + part.count]
        got = _dense_in(part, part_vectors, query, n, mask)
        found.update((i + first, s) for i, s in got.items())
    return dict(sorted(found.items(), key=lambda item: -item[1])[:n])


def _dense_in(
    index: VectorIndex, vectors: Any, query: np.ndarray, n: int, allowed: np.ndarray | None,
) -> dict[int, float]:
    """The best ``n`` rows of one vector index (of those ``allowed`` marks, when given; then
    ``vectors`` are its stored vectors)."""
    if allowed is not None:
        ids = np.flatnonzero(allowed)
        if not len(ids):
            return {}
        if isinstance(index, FaissIndex) and index.quantised and \
                len(ids) > FaissIndex.IVF_THRESHOLD:
            # Many allowed passages of a large archive: the IVF index skips the others.
            scores, found = index.search(query.reshape(1, -1), n, allowed=allowed)
            return {int(i): float(s) for i, s in zip(found[0], scores[0], strict=True)
                    if i >= 0}
        # Exact over the allowed passages: few of them (a gather), or a small archive (one
        # pass over its mapped vectors; a gather of most of them would copy them first).
        if len(ids) * 4 >= len(allowed):
            scores = dot(vectors, query)[ids]
        else:
            scores = dot(vectors, query, ids)
        top = np.argsort(-scores)[:n]
        return {int(ids[i]): float(scores[i]) for i in top}
    scores, ids = index.search(query.reshape(1, -1), n)
    return {int(i): float(s) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0}


def order(candidates: Sequence[Candidate], key: str, config: RankingConfig) -> list[Candidate]:
    """Candidates sorted by one stage: "dense", "bm25", "rrf", "blend" or "fused" (the
    configured fusion); sets each one's ``score``."""
    ordered = list(candidates)
    if key == "fused":
        key = config.fusion
    if key == "dense":
        for c in ordered:
            c.score = c.dense
    elif key == "bm25":
        for c in ordered:
            c.score = c.keyword
    elif key == "rrf":
        fused = rrf(ordered, config.rrf_k)
        for c in ordered:
            c.score = fused[c.id]
    elif key == "blend":
        for c in ordered:
            c.score = blend(c.dense, c.keyword, config.blend)
    else:
        raise ValueError(f"unknown ranking {key!r}")
    ordered.sort(key=lambda c: (-c.score, -c.dense, c.id))
    return ordered


def blend(dense: float, keyword: float, weight: float) -> float:
    return (1 - weight) * dense + weight * keyword


def rrf(candidates: Sequence[Candidate], k: int) -> dict[int, float]:
    fused = {c.id: 0.0 for c in candidates}
    for attr in ("dense", "keyword"):
        ranked = sorted(candidates, key=lambda c: (-getattr(c, attr), c.id))
        for rank, c in enumerate(ranked):
            if getattr(c, attr) > 0:
                fused[c.id] += 1.0 / (k + rank + 1)
    return fused
