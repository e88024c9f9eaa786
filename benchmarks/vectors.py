"""Stored re-scoring vectors: float32 against float16 and int8 with a scale per row.

    python -m benchmarks.vectors [--index DIR] [--rows N]

Takes real passage vectors (an index's, or random unit vectors) and prints, for each way of
storing them: bytes per passage, the time of one exact scan (a question's scores over every
row, as a filtered question or a small index does) and of re-scoring 2,000 IVF candidates,
and the largest and mean error of a cosine against float32.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from index.storage.vectors import VectorWriter, dot, open_vectors


def _ms(f: Callable[[], object], runs: int = 20) -> float:
    f()
    start = time.perf_counter()
    for _ in range(runs):
        f()
    return (time.perf_counter() - start) / runs * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, help="an index folder whose vectors to use")
    parser.add_argument("--rows", type=int, default=43_834)
    args = parser.parse_args(argv)
    if args.index:  # its live version's vectors, of any format
        version = args.index / (args.index / "CURRENT").read_text().strip()
        full = np.asarray(open_vectors(version)[:], dtype=np.float32)
    else:
        rng = np.random.default_rng(0)
        full = rng.standard_normal((args.rows, 384)).astype(np.float32)
        full = np.asarray(full / np.linalg.norm(full, axis=1, keepdims=True), np.float32)
    picked = full[np.random.default_rng(1).choice(len(full), 50, replace=False)]
    noisy = picked + 0.05 * np.random.default_rng(2).standard_normal(picked.shape)
    queries = np.asarray(noisy / np.linalg.norm(noisy, axis=1, keepdims=True), np.float32)
    rows = np.sort(np.random.default_rng(3).choice(len(full), 2_000, replace=False))
    truth = queries @ full.T
    folder = Path(tempfile.mkdtemp(prefix="qa-vectors-"))
    writer = VectorWriter(folder, *full.shape)
    writer[:] = full
    writer.flush()
    del writer
    stored: dict[str, Any] = {"float32": full, "float16": full.astype(np.float16),
                              "int8 + scale": open_vectors(folder)}
    print(f"{len(full):,} vectors of {full.shape[1]} dimensions")
    print("storage       bytes/passage  scan ms  re-score 2,000 ms  max |error|  mean |error|")
    for name, vectors in stored.items():
        size = {"float32": 4 * full.shape[1], "float16": 2 * full.shape[1]}.get(
            name, full.shape[1] + 4)

        def scores_of(q: np.ndarray, subset: np.ndarray | None = None,
                      v: Any = vectors, half: bool = name == "float16") -> np.ndarray:
            if half:  # numpy's own widening of float16
                return (v if subset is None else v[subset]).astype(np.float32) @ q
            return dot(v, q, subset)

        def scan() -> np.ndarray:
            return scores_of(queries[0])

        def rescore() -> np.ndarray:
            return scores_of(queries[0], rows)

        scores = np.stack([scores_of(q) for q in queries])
        error = np.abs(scores - truth)
        print(f"{name:13} {size:>13,}  {_ms(scan):7.2f}  {_ms(rescore):17.2f}  "
              f"{error.max():11.5f}  {error.mean():12.6f}")


if __name__ == "__main__":
    main()
