"""Index one very large text file and report time, passages and peak memory (RSS).

    HF_HUB_OFFLINE=1 python scripts/big_file.py --mb 50
    HF_HUB_OFFLINE=1 python scripts/big_file.py --mb 2 --embedder real

The file is article prose (paragraphs of the squad-a bench articles, numbered so that no two
passages are identical), written to a temp folder. Everything is the real pipeline — loading,
cleaning, metadata, chunking with the model's tokenizer, sqlite, FAISS, BM25 — except that by
default the vectors come from a hashing stand-in of the model's dimension: the real model's
memory does not grow with the file (it embeds fixed-size batches into a preallocated array),
and a file is cut at 1,000,000 characters anyway (``index.ingest.load.MAX_CHARS``, with a warning).
`--embedder real` uses the real model. The script leaves its temp folder (named in its first
line) for inspection.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class HashingEmbedder:
    """Bag-of-words hashing vectors of the real model's size: fast and deterministic. Its name
    stands in for the model, so that no ONNX query model is exported (that loads torch,
    a fixed ~700 MB that does not depend on the file; the real build loads torch anyway)."""

    name = "hashing-stand-in"

    def __init__(self) -> None:
        from index.models.spec import DEFAULT

        self.dimension = DEFAULT.dimension

    def embed(self, texts, batch_size=256, progress=None):  # type: ignore[no-untyped-def]
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, zlib.crc32(word.encode()) % self.dimension] += 1.0
            out[row] /= np.linalg.norm(out[row]) or 1.0
            if progress and (row + 1) % batch_size == 0:
                progress(batch_size)
        if progress and len(texts) % batch_size:
            progress(len(texts) % batch_size)
        return out


def write_big_file(path: Path, megabytes: float, corpus: Path) -> int:
    paragraphs = [
        p.strip() for f in sorted(corpus.glob("*.txt"))
        for p in f.read_text(encoding="utf-8").split("\n\n") if len(p.split()) > 20
    ]
    target = int(megabytes * 1_000_000)
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write("A Very Large Archive Dump\n\n")
        i = 0
        while written < target:
            block = f"Entry {i}. {paragraphs[i % len(paragraphs)]}\n\n"
            written += f.write(block)
            i += 1
    return path.stat().st_size


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=50)
    parser.add_argument("--embedder", choices=["hashing", "real"], default="hashing")
    parser.add_argument("--corpus", type=Path,
                        default=ROOT.parent / "shared" / "bench" / "squad-a" / "docs")
    args = parser.parse_args()

    from index.ingest.job import BuildOptions
    from index.ingest.pipeline import build_index

    work = Path(tempfile.mkdtemp(prefix="big-file-"))
    (work / "docs").mkdir()
    size = write_big_file(work / "docs" / "dump.txt", args.mb, args.corpus)
    print(f"file: {size / 1e6:.1f} MB at {work / 'docs' / 'dump.txt'}", flush=True)
    base = peak_rss_mb()
    stages: dict[str, tuple[int, int, float, float, int]] = {}
    start = time.monotonic()

    def progress(stage: str, done: int, total: int) -> None:
        now = time.monotonic() - start
        first, peak, reports = stages.get(stage, (0, 0, now, peak_rss_mb(), 0))[2:]
        stages[stage] = (done, total, first, peak, reports + 1)

    warnings: list[str] = []
    embedder = HashingEmbedder() if args.embedder == "hashing" else None
    report = build_index(work / "docs", work / "index",
                         BuildOptions(embedder=embedder, warn=warnings.append, progress=progress))
    took = time.monotonic() - start
    for w in warnings:
        print(f"warning: {w}")
    for stage, (done, total, first, peak, reports) in stages.items():
        print(f"progress {stage:>14}: {done}/{total} in {reports} reports, first at "
              f"{first:.1f}s (peak RSS so far {peak:.0f} MB)")
    print(f"passages: {report.passages}, embedded: {report.embedded}, time: {took:.1f}s")
    print(f"peak RSS: {peak_rss_mb():.0f} MB (before indexing: {base:.0f} MB), "
          f"embedder: {args.embedder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
