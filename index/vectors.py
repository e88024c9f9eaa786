"""Vector indexes: inner product over L2-normalised vectors. FAISS in production, a brute-force
numpy index as the reference the FAISS backends are tested against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class VectorIndex:
    """Maps row ids 0..n-1 to vectors; ``search`` returns (scores, ids), best first."""

    kind = "base"

    def add(self, vectors: np.ndarray) -> None:
        raise NotImplementedError

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def save(self, path: Path) -> None:
        raise NotImplementedError

    @property
    def count(self) -> int:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {"kind": self.kind}


class NumpyIndex(VectorIndex):
    kind = "numpy"

    def __init__(self, dimension: int, vectors: np.ndarray | None = None):
        self.dimension = dimension
        self.vectors = (
            vectors if vectors is not None else np.zeros((0, dimension), dtype=np.float32)
        )

    def add(self, vectors: np.ndarray) -> None:
        self.vectors = np.vstack([self.vectors, np.asarray(vectors, dtype=np.float32)])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.atleast_2d(queries) @ self.vectors.T
        k = min(k, self.count)
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, ids, axis=1), ids

    def save(self, path: Path) -> None:
        np.save(path, self.vectors)

    @classmethod
    def load(cls, path: Path) -> NumpyIndex:
        vectors = np.load(path, mmap_mode="r")
        return cls(vectors.shape[1], vectors)

    @property
    def count(self) -> int:
        return int(self.vectors.shape[0])


class FaissIndex(VectorIndex):
    """Exact ``IndexFlatIP`` for small collections, HNSW above ``HNSW_THRESHOLD`` vectors."""

    kind = "faiss"
    HNSW_THRESHOLD = 50_000
    HNSW_M = 32
    EF_CONSTRUCTION = 80
    EF_SEARCH = 128

    def __init__(self, dimension: int, index: Any = None, expected: int = 0):
        import faiss

        self.dimension = dimension
        if index is None:
            if expected >= self.HNSW_THRESHOLD:
                index = faiss.IndexHNSWFlat(dimension, self.HNSW_M, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = self.EF_CONSTRUCTION
            else:
                index = faiss.IndexFlatIP(dimension)
        if hasattr(index, "hnsw"):
            index.hnsw.efSearch = self.EF_SEARCH
        self.index = index

    def add(self, vectors: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.count)
        if k == 0:
            empty = np.zeros((len(np.atleast_2d(queries)), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        scores, ids = self.index.search(
            np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32), k
        )
        return scores, ids

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, mmap: bool = False) -> FaissIndex:
        import faiss

        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        index = faiss.read_index(str(path), flags)
        return cls(index.d, index)

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    def params(self) -> dict[str, Any]:
        if hasattr(self.index, "hnsw"):
            return {"kind": "faiss-hnsw", "M": self.HNSW_M, "efSearch": self.index.hnsw.efSearch}
        return {"kind": "faiss-flat"}
