"""Peak memory of indexing a large news export (issue 14: "a 200 MB export, streamed, bounded
memory"). `python -m benchmarks.export [--mb 10 50 200] [--real-mb 0]` from the repository root.

Makes JSON Lines exports of the given sizes from news-a's real articles (copy k of an article
gets its own site and id and its paragraphs in another order, so no copy is a duplicate), then
builds an index of each in a fresh child process and prints its time, its peak RSS and the
peak of the anonymous part (what the process holds itself, not pages of the files it maps).
The embedding model is replaced by a stand-in that returns random unit vectors, so a 200 MB
export builds in minutes rather than hours: everything else (reading, cleaning, dedupe, real
tokenizer counts, chunking, passage store, BM25, FAISS) is the real pipeline. With
`--real-mb N` one export of N MB is also built with the real model, to show what the model
adds.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"

WORKER = """
import json, resource, sys, threading, time
import numpy as np
from index.ingest.job import BuildOptions
from index.ingest.pipeline import build_index

class StandIn:
    name, dimension = "stand-in", 384
    def embed(self, texts, batch_size=32, progress=None):
        rng = np.random.default_rng(len(texts))
        out = rng.standard_normal((len(texts), self.dimension)).astype(np.float32)
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        if progress:
            progress(len(texts))
        return out

anonymous = [0]  # peak of RssAnon: memory the process itself holds (no mapped file pages)


def sample():
    while True:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                anonymous[0] = max(anonymous[0], int(line.split()[1]))
        time.sleep(0.1)


threading.Thread(target=sample, daemon=True).start()
start = time.perf_counter()
embedder = None if sys.argv[3] == "real" else StandIn()
report = build_index(sys.argv[1], sys.argv[2], BuildOptions(embedder=embedder))
print(json.dumps({"documents": report.documents, "passages": report.passages,
                  "seconds": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "peak_anon_mb": anonymous[0] / 1024}))
"""


def make_export(archive: Path, out: Path, megabytes: float) -> int:
    """Write about ``megabytes`` of JSON Lines made from ``archive``; returns the records."""
    records = [json.loads(line) for line in archive.open(encoding="utf-8")]
    rng = random.Random(7)
    limit, written, count, copy = megabytes * 1_000_000, 0, 0, 0
    with out.open("w", encoding="utf-8") as f:
        while written < limit:
            for record in records:
                paragraphs = record["text"].split("\n\n")
                if copy:
                    rng.shuffle(paragraphs)
                line = json.dumps({
                    **record, "id": f"{record['id']}-{copy}", "text": "\n\n".join(paragraphs),
                    "url": f"https://copy{copy}.example/{record['id']}",
                }) + "\n"
                f.write(line)
                written += len(line.encode())
                count += 1
                if written >= limit:
                    break
            copy += 1
    return count


def measure(export: Path, model: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-c", WORKER, str(export), str(Path(tmp) / "index"), model],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, nargs="+", default=[10, 50, 200])
    parser.add_argument("--real-mb", type=float, default=0,
                        help="also build an export of this size with the real model")
    parser.add_argument("--shared", type=Path, default=SHARED)
    args = parser.parse_args()
    archive = args.shared / "bench" / "news-a" / "archive.jsonl"
    runs = [(mb, "stand-in") for mb in args.mb]
    if args.real_mb:
        runs += [(args.real_mb, "stand-in"), (args.real_mb, "real")]
    print(f"{'export MB':>9} {'model':>8} {'records':>8} {'passages':>9} {'seconds':>8} "
          f"{'peak RSS MB':>11} {'of it anonymous':>15}")
    with tempfile.TemporaryDirectory() as tmp:
        for mb, model in runs:
            export = Path(tmp) / f"export-{mb:g}.jsonl"
            records = make_export(archive, export, mb) if not export.exists() else 0
            result = measure(export, model)
            print(f"{export.stat().st_size / 1e6:9.0f} {model:>8} {records or '':>8} "
                  f"{result['passages']:9,} {result['seconds']:8.0f} "
                  f"{result['peak_rss_mb']:11,.0f} {result['peak_anon_mb']:15,.0f}", flush=True)


if __name__ == "__main__":
    main()
