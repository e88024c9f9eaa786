"""Vector indexes: inner product over L2-normalised vectors. FAISS in production, a brute-force
numpy index as the reference the FAISS backends are tested against."""

from __future__ import annotations

import errno
import mmap as _mmap
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

# numpy reads a .npy header with ast.literal_eval, and CPython 3.11's AST constructor keeps
# its recursion depth in state shared by threads: two threads loading at once can fail with
# "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905; seen here
# when a reader thread opened the index while the same process wrote a new version).
_NPY_HEADER = threading.Lock()


def create_npy(path: Path, shape: tuple[int, ...], dtype: Any = np.float32) -> np.memmap:
    """A new ``.npy`` file mapped for writing, its blocks reserved on disk first. Without the
    reservation the file is sparse and a full disk shows up later as SIGBUS on a page write
    (the process dies with no message); reserved, it is ENOSPC (an OSError) right here."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    fallocate = getattr(os, "posix_fallocate", None)  # not on macOS: the sparse file stays
    if fallocate is not None:
        fd = os.open(path, os.O_RDWR)
        try:
            fallocate(fd, 0, os.fstat(fd).st_size)
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # e.g. some network FS
                del out
                raise
        finally:
            os.close(fd)
    return out


SCALES = "scales.npy"  # beside vectors.npy: one float32 scale per int8 row
_BLOCK = 1024  # rows widened to float32 at a time (1.5 MB: the block stays in cache)


class Quantized:
    """Stored vectors: int8 codes with one float32 scale per row (row i ≈ codes[i]·scales[i]),
    both memory-mapped. A passage takes 388 bytes instead of 1,536 (3.9 GB instead of 15 GB at
    10M passages) and cosines stay within ~2e-3 of float32's; numpy widens int8 to float32
    fast, so a scan is faster than over float32 (float16's widening is ~10x slower here,
    docs/BENCHMARKS.md). Indexing returns float32 rows; ``dot`` scores in float32."""

    ndim = 2

    def __init__(self, codes: np.ndarray, scales: np.ndarray):
        if codes.ndim != 2 or codes.dtype != np.int8 or scales.shape != (len(codes),):
            raise ValueError("int8 codes and one scale per row expected")
        self.codes, self.scales = codes, scales

    @property
    def shape(self) -> tuple[int, int]:
        return self.codes.shape  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, key: Any) -> np.ndarray:
        codes = np.asarray(self.codes[key])
        scales = np.asarray(self.scales[key], dtype=np.float32)
        return codes.astype(np.float32) * scales[..., None]

    def take(self, rows: Any) -> tuple[np.ndarray, np.ndarray]:
        """(codes, scales) of ``rows``, as stored."""
        return np.asarray(self.codes[rows]), np.asarray(self.scales[rows])

    def dot(self, query: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        query = np.asarray(query, dtype=np.float32)
        n = len(self) if rows is None else len(rows)
        out = np.empty(n, dtype=np.float32)
        for start in range(0, n, _BLOCK):
            end = min(start + _BLOCK, n)
            pick = slice(start, end) if rows is None else rows[start:end]
            out[start:end] = (self.codes[pick].astype(np.float32) @ query) * self.scales[pick]
        return out


def quantize(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 codes, float32 scales) of float rows: each row's largest component maps to ±127."""
    block = np.atleast_2d(np.asarray(block, dtype=np.float32))
    scales = np.abs(block).max(axis=1) / 127.0
    scales[scales == 0] = 1.0
    codes = np.clip(np.rint(block / scales[:, None]), -127, 127).astype(np.int8)
    return codes, scales.astype(np.float32)


class Stacked:
    """The stored vectors of a version with a delta: its base's rows, then the delta's (passage
    ids ``len(base)`` on), read as one matrix; ``dot`` and ``take`` split the rows."""

    ndim = 2

    def __init__(self, base: np.ndarray | Quantized, delta: Quantized):
        self.base, self.delta = base, delta
        self.offset = len(base)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.offset + len(self.delta), self.delta.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def _split(self, rows: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows)
        rows = np.atleast_1d(rows)
        low = rows < self.offset
        return rows, low, ~low

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, int | np.integer):
            return self[np.array([key])][0]
        rows, low, high = self._split(key)
        out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        if low.any():
            out[low] = np.asarray(self.base[rows[low]], dtype=np.float32)
        if high.any():
            out[high] = self.delta[rows[high] - self.offset]
        return out

    def take(self, rows: Any) -> tuple[np.ndarray, np.ndarray]:
        rows, low, high = self._split(rows)
        codes = np.empty((len(rows), self.shape[1]), dtype=np.int8)
        scales = np.empty(len(rows), dtype=np.float32)
        if low.any():
            if isinstance(self.base, Quantized):
                codes[low], scales[low] = self.base.take(rows[low])
            else:  # float32 rows of an older base
                codes[low], scales[low] = quantize(self.base[rows[low]])
        if high.any():
            codes[high], scales[high] = self.delta.take(rows[high] - self.offset)
        return codes, scales

    def dot(self, query: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        if rows is None:
            return np.concatenate([dot(self.base, query), self.delta.dot(query)])
        rows, low, high = self._split(rows)
        out = np.empty(len(rows), dtype=np.float32)
        if low.any():
            out[low] = dot(self.base, query, rows[low])
        if high.any():
            out[high] = self.delta.dot(query, rows[high] - self.offset)
        return out


class VectorWriter:
    """A new version's ``vectors.npy`` (int8) and ``scales.npy``, written a block at a time:
    ``writer[ids] = float rows`` quantises them. ``first``: the id of row 0 (a delta's rows
    follow its base's ids)."""

    def __init__(self, folder: Path, count: int, dimension: int, first: int = 0):
        self.codes = create_npy(Path(folder) / "vectors.npy", (count, dimension), np.int8)
        self.scales = create_npy(Path(folder) / SCALES, (count,), np.float32)
        self.first = first

    def _rows(self, ids: Any) -> Any:
        if not self.first:
            return ids
        return ids - self.first if isinstance(ids, int | np.integer) else \
            np.asarray(ids) - self.first

    def __setitem__(self, ids: Any, block: np.ndarray) -> None:
        codes, scales = quantize(block)
        if isinstance(ids, int | np.integer):  # one row
            codes, scales = codes[0], scales[0]
        rows = self._rows(ids)
        self.codes[rows] = codes
        self.scales[rows] = scales

    def copy(self, ids: list[int], old: np.ndarray | Quantized | Stacked,
             old_ids: list[int]) -> None:
        """Rows ``ids`` become rows ``old_ids`` of an earlier version's vectors (codes copied
        as they are; float32 ones quantised)."""
        if not ids:
            return
        if isinstance(old, Quantized | Stacked):
            rows = self._rows(ids)
            self.codes[rows], self.scales[rows] = old.take(old_ids)
        else:
            self[ids] = old[old_ids]

    def flush(self) -> None:
        self.codes.flush()
        self.scales.flush()


def open_vectors(folder: Path, mmap: bool = True, scattered: bool = False
                 ) -> np.ndarray | Quantized:
    """A version's stored vectors (memory-mapped unless not ``mmap``; ``scattered``: see
    ``load_npy``): int8 with scales, or the float32 matrix of an index written before
    format 4."""
    folder = Path(folder)
    codes = load_npy(folder / "vectors.npy", mmap=mmap, scattered=scattered)
    if (folder / SCALES).exists():
        return Quantized(codes, load_npy(folder / SCALES, mmap=mmap, scattered=scattered))
    if codes.ndim != 2 or codes.dtype != np.float32:
        raise ValueError(f"{folder / 'vectors.npy'} is not a float32 matrix")
    return codes


def dot(vectors: np.ndarray | Quantized | Stacked, query: np.ndarray,
        rows: np.ndarray | None = None) -> np.ndarray:
    """``vectors[rows] @ query`` (all rows when None) in float32, a block at a time."""
    if isinstance(vectors, Quantized | Stacked):
        return vectors.dot(query, rows)
    query = np.asarray(query, dtype=np.float32)
    if rows is None:
        return np.einsum("ij,j->i", vectors, query)
    return np.asarray(vectors[rows], dtype=np.float32) @ query


def load_npy(path: Path, mmap: bool = True, scattered: bool = False) -> np.ndarray:
    """``np.load`` of a .npy file (memory-mapped read-only by default), one thread at a time.
    ``scattered``: its rows will be read a few at a time at random places (a question
    re-scoring its candidates), so the kernel reads no pages ahead: on a cold page cache each
    fault would otherwise read ~128 KB around a 384-byte row."""
    with _NPY_HEADER:
        array = np.load(path, mmap_mode="r" if mmap else None)
    mapping = getattr(array, "_mmap", None)
    if scattered and mapping is not None and hasattr(_mmap, "MADV_RANDOM"):
        mapping.madvise(_mmap.MADV_RANDOM)
    return array


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
    """Exact search with one matrix product. Also serves small indexes at query time straight
    from the memory-mapped ``vectors.npy``: the same results as ``IndexFlatIP`` without
    importing faiss (a noticeable share of a cold start)."""

    kind = "numpy"

    def __init__(self, dimension: int, vectors: np.ndarray | None = None):
        self.dimension = dimension
        self.vectors = (
            vectors if vectors is not None else np.zeros((0, dimension), dtype=np.float32)
        )

    def add(self, vectors: np.ndarray) -> None:
        self.vectors = np.vstack([self.vectors, np.asarray(vectors, dtype=np.float32)])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if len(queries) <= 4 or isinstance(self.vectors, Quantized):
            # A few queries are matrix-vector products, bound by memory bandwidth: numpy's
            # single-threaded einsum loop beats a multi-threaded BLAS call, whose thread
            # hand-offs cost more than the product (docs/BENCHMARKS.md).
            scores = np.stack([dot(self.vectors, q) for q in queries])
        else:
            scores = queries @ self.vectors.T
        k = min(k, self.count)
        if k < self.count:  # select the top k before sorting only them
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
            ids = np.take_along_axis(top, order, axis=1)
        else:
            ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, ids, axis=1), ids.astype(np.int64)

    def save(self, path: Path) -> None:
        np.save(path, self.vectors)

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> NumpyIndex:
        """Over a version's stored vectors (``open_vectors``)."""
        vectors = open_vectors(folder, mmap=mmap)
        return cls(vectors.shape[1], vectors)  # type: ignore[arg-type]

    @property
    def count(self) -> int:
        return int(self.vectors.shape[0])


class FaissIndex(VectorIndex):
    """Exact ``IndexFlatIP`` for small collections; above ``IVF_THRESHOLD`` an IVF index of
    4-bit product-quantised codes (``IVF{nlist},PQ{d/4}x4fs``, faiss's SIMD "fast scan")
    whose candidates are re-scored exactly against the float vectors.

    Why: the codes are 48 bytes a passage (1.5 kB as floats), so the scan can probe a quarter
    of the lists in a few milliseconds at 1M passages, and the exact re-scoring of a few
    thousand candidates from the memory-mapped ``vectors.npy`` restores the ranking that
    4-bit codes blur. At 1M it reached IVF-Flat's recall in a fraction of its time, and HNSW
    builds slowly and cannot be memory-mapped by faiss (docs/BENCHMARKS.md). Scores are exact inner
    products, as with the flat index. Indexes written by earlier versions (``IVF-Flat``) are
    still read and searched as they are.
    """

    kind = "faiss"
    # Exact search grows linearly with the archive while the IVF index stays flat; below
    # this size exact search is fast enough and exact (docs/BENCHMARKS.md).
    IVF_THRESHOLD = 20_000
    # Faiss needs at least 39 training points per list; 64 gives stabler centroids.
    TRAIN_PER_LIST = 64
    # Lists probed: nlist / 4 for the product-quantised index (its scan is cheap),
    # nlist / 16 for the IVF-Flat indexes of earlier versions.
    NPROBE_FRACTION = 4
    FLAT_NPROBE_FRACTION = 16
    # Candidates re-scored exactly: at least REFINE_MIN, and REFINE_PER_RESULT per result.
    REFINE_MIN = 2_000
    REFINE_PER_RESULT = 40

    def __init__(
        self, dimension: int, index: Any = None, expected: int = 0,
        vectors: np.ndarray | Quantized | None = None,
    ):
        import faiss

        self.dimension = dimension
        if index is None:
            if expected >= self.IVF_THRESHOLD:
                index = faiss.index_factory(
                    dimension, self.factory_for(dimension, expected),
                    faiss.METRIC_INNER_PRODUCT,
                )
                faiss.extract_index_ivf(index).cp.seed = 1234
            else:
                index = faiss.IndexFlatIP(dimension)
        self._index: Any = None  # a faiss index, or a Future of one (``opening``)
        self._rows = 0  # with ``opening``: the rows the index must hold
        self._damaged: Exception = RuntimeError("the vector index cannot be read")
        self.index = self._probing(index)
        # The float vectors the candidates of a quantised index are re-scored against.
        self.vectors = vectors
        self.trained_on = 0  # vectors the IVF training saw (build_faiss sets it)

    @classmethod
    def _probing(cls, index: Any) -> Any:
        """``index`` with this class's probe count set (IVF indexes)."""
        if hasattr(index, "nprobe"):
            quantised = "PQ" in type(index).__name__
            index.nprobe = cls.nprobe_for(
                index.nlist, cls.NPROBE_FRACTION if quantised else cls.FLAT_NPROBE_FRACTION)
        return index

    @property
    def index(self) -> Any:
        """The faiss index; one still being read (``opening``) is waited for here."""
        index = self._index
        if isinstance(index, Future):
            try:
                index = index.result()
            except Exception as error:  # faiss raises RuntimeError on a file it cannot read
                raise self._damaged from error
            if index.ntotal != self._rows:
                raise self._damaged
            self._index = index
        return index

    @index.setter
    def index(self, index: Any) -> None:
        self._index = index

    @staticmethod
    def factory_for(dimension: int, n: int) -> str:
        nlist = FaissIndex.nlist_for(n)
        if dimension % 4:  # 4 dimensions per code (384 -> 96 codes of 4 bits)
            return f"IVF{nlist},Flat"
        return f"IVF{nlist},PQ{dimension // 4}x4fs"

    @staticmethod
    def nlist_for(n: int) -> int:
        """Inverted lists for ``n`` vectors: about 2·sqrt(n), a power of two (512 at 100k,
        2048 at 1M), so each list holds a few hundred vectors."""
        target = 2 * max(n, 1) ** 0.5
        return int(2 ** max(4, round(float(np.log2(target)))))

    @classmethod
    def nprobe_for(cls, nlist: int, fraction: int | None = None) -> int:
        return max(8, nlist // (fraction or cls.NPROBE_FRACTION))

    @property
    def quantised(self) -> bool:
        return "PQ" in type(self.index).__name__

    @property
    def needs_training(self) -> bool:
        return not self.index.is_trained

    def train(self, sample: np.ndarray) -> None:
        """Learn the IVF centroids (and the product quantiser) from ``sample``."""
        self.index.train(np.ascontiguousarray(sample, dtype=np.float32))

    def training_size(self) -> int:
        return int(getattr(self.index, "nlist", 0)) * self.TRAIN_PER_LIST

    def add(self, vectors: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` per query; with ``allowed`` (a boolean per row) only among those
        rows: the inverted lists skip the others as they are scanned (a faiss ID selector),
        so a filtered question costs what an unfiltered one does."""
        import faiss

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, self.count)
        if k == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        params = None
        if allowed is not None:
            # ``bits`` and ``selector`` are locals so that they outlive the searches below
            # (faiss keeps only raw pointers to them).
            bits = np.packbits(np.asarray(allowed, dtype=bool), bitorder="little")
            selector = faiss.IDSelectorBitmap(self.count, faiss.swig_ptr(bits))
            params = faiss.SearchParametersIVF()
            params.sel = selector
            params.nprobe = int(getattr(self.index, "nprobe", 1))
        if not self.quantised:
            return self.index.search(queries, k, params=params)
        if self.vectors is None:
            raise RuntimeError("a quantised index needs its float vectors to re-score")
        depth = min(self.count, max(self.REFINE_MIN, self.REFINE_PER_RESULT * k))
        _, candidates = self.index.search(queries, depth, params=params)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, (query, found) in enumerate(zip(queries, candidates, strict=True)):
            found = np.sort(found[found >= 0])  # in file order: sequential-ish page reads
            exact = NumpyIndex(self.dimension, np.asarray(self.vectors[found]))
            s, i = exact.search(query, k)
            scores[row, : s.shape[1]] = s[0]
            ids[row, : i.shape[1]] = found[i[0]]
        return scores, ids

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, mmap: bool = False,
             vectors: np.ndarray | Quantized | None = None) -> FaissIndex:
        """Read an index; with ``mmap`` an IVF-Flat index's lists stay on disk (page cache)
        instead of being copied into memory. A quantised index re-scores against ``vectors``
        (the memory-mapped ``vectors.npy``). Flat indexes are served by ``NumpyIndex`` over
        the mapped ``vectors.npy`` instead; faiss's flat mmap flag cannot be combined with
        the IVF one."""
        index = cls._read(path, mmap)
        return cls(index.d, index, vectors=vectors)

    @staticmethod
    def _read(path: Path, mmap: bool) -> Any:
        import faiss

        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        return faiss.read_index(str(path), flags)

    @classmethod
    def opening(cls, path: Path, vectors: np.ndarray | Quantized, damaged: Exception,
                mmap: bool = True) -> FaissIndex:
        """``load`` in a background thread, returning at once: faiss reads a fast-scan IVF
        index's lists whole (~0.5 s at 10M passages, the largest part of opening one), which
        a new process's first question overlaps with loading its encoders and its keyword
        search; its first vector search waits for the rest. Until then ``count`` is the rows
        of ``vectors`` (one per indexed vector); a file faiss cannot read, or that holds
        another count, raises ``damaged`` at that first search."""
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-faiss-read")
        # faiss releases the GIL while it reads, so the question's own work goes on meanwhile.
        future = reader.submit(lambda: cls._probing(cls._read(path, mmap)))
        reader.shutdown(wait=False)  # the thread ends with the read
        opened = cls(vectors.shape[1], future, vectors=vectors)
        opened._rows, opened._damaged = len(vectors), damaged
        return opened

    @property
    def count(self) -> int:
        if isinstance(self._index, Future):
            return self._rows
        return int(self.index.ntotal)

    def params(self) -> dict[str, Any]:
        if not hasattr(self.index, "nprobe"):
            return {"kind": "faiss-flat"}
        params = {"kind": "faiss-ivf-flat", "nlist": int(self.index.nlist),
                  "nprobe": int(self.index.nprobe)}
        if self.quantised:
            params.update(kind="faiss-ivf-pq-refine", codes=int(self.index.pq.M),
                          refine_min=self.REFINE_MIN, refine_per_result=self.REFINE_PER_RESULT)
        return params


class StackedIndex(VectorIndex):
    """A version with a delta: its base's index over ids ``0..offset-1``, the delta's (flat,
    or IVF on the base's training once large) over the ids after; ``search`` merges the two
    best lists."""

    kind = "stacked"

    def __init__(self, base: VectorIndex, delta: VectorIndex):
        self.base, self.delta = base, delta
        self.offset = base.count

    def parts(self) -> list[tuple[VectorIndex, int]]:
        """Each part with the id of its row 0."""
        return [(self.base, 0), (self.delta, self.offset)]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(queries)
        scores, ids = [], []
        for part, first in self.parts():
            s, i = part.search(queries, k)
            scores.append(s)
            ids.append(np.where(i >= 0, i + first, -1))
        score, found = np.concatenate(scores, axis=1), np.concatenate(ids, axis=1)
        score = np.where(found >= 0, score, -np.inf)
        order = np.argsort(-score, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(score, order, axis=1), np.take_along_axis(found, order, axis=1)

    @property
    def count(self) -> int:
        return self.base.count + self.delta.count

    def params(self) -> dict[str, Any]:
        return self.base.params()


# An IVF index trained on n vectors is stale once the archive has grown to STALE_AFTER·n: its
# lists are then long and uneven, and each probe scans more than it should.
STALE_AFTER = 2.0


def build_faiss(
    vectors: np.ndarray | Quantized, step: int = 20_000, progress: Any = None, seed: int = 0,
    trained: Path | None = None, trained_on: int = 0,
) -> FaissIndex:
    """A ``FaissIndex`` over ``vectors`` (may be memory-mapped), added in slices so memory
    stays bounded. IVF centroids and codebooks are trained on a random sample first, or taken
    from the index file ``trained`` (an earlier version's, trained on ``trained_on`` vectors):
    an update then only adds its vectors, even once the training is stale (``STALE_AFTER``;
    `qa index status` says so and `qa index build --retrain` trains afresh).
    ``trained_on`` says how many vectors the training saw (the manifest records it)."""
    import faiss

    n = len(vectors)
    index = FaissIndex(vectors.shape[1], expected=n, vectors=vectors)
    reused = None
    if index.needs_training and trained is not None and Path(trained).exists() and trained_on:
        old = faiss.read_index(str(trained))
        if type(old) is type(index.index) and old.d == index.dimension and old.is_trained:
            old.reset()  # the training stays, the vectors go
            reused = FaissIndex(index.dimension, old, vectors=vectors)
    if reused is not None:
        index = reused
        index.trained_on = trained_on
    elif index.needs_training:
        rng = np.random.default_rng(seed)
        size = min(n, index.training_size())
        rows = np.sort(rng.choice(n, size, replace=False))
        index.train(np.asarray(vectors[rows], dtype=np.float32))
        index.trained_on = n
    for i in range(0, n, step):
        index.add(vectors[i : i + step])
        if progress is not None:
            progress(min(i + step, n), n)
    return index
