"""Keyword index at scale (issue 16): the bm25s format qa writes (streamed build, numpy query)
against SQLite FTS5 and tantivy, on the same synthetic passages.

`python -m benchmarks.keyword [--passages 1000000] [--shared ../shared]`

Passages are made from real news text: news-a's articles are split into sentences and each
synthetic passage takes 4–6 random sentences, so the vocabulary and term statistics are real
news. Each engine builds in its own child process (peak RSS is its own) and answers news-a's
and squad-a's questions (top 50, as retrieval asks): build seconds, peak RSS, disk, query p50
and p95, and the time to add 1,000 articles (5,000 passages) to the built index (bm25s:
rebuild whole; FTS5 and tantivy: insert and commit).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"

WORKER = r"""
import json, re, resource, sys, time
from pathlib import Path
import numpy as np
engine, folder, passages_file, questions_file = sys.argv[1:5]
folder = Path(folder)
texts = [line.rstrip("\n") for line in open(passages_file, encoding="utf-8")]
extra = texts[:5000]  # the "1,000 new articles": 5,000 more passages
questions = [json.loads(l)["question"] for l in open(questions_file)]
from index.storage.lexical import Analyzer
analyzer = Analyzer()

def disk(path):
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())

start = time.perf_counter()
if engine == "bm25s":
    from index.storage import lexical
    lexical.build(iter(texts), folder / "bm25")
    index = lexical.load(folder / "bm25")
    def search(q):
        scores = index.search(q)
        n = min(50, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        return top[np.argsort(-scores[top])]
    def add():
        lexical.build(iter(texts + extra), folder / "bm25b")
elif engine == "fts5":
    import sqlite3
    db = sqlite3.connect(folder / "fts.sqlite")
    db.execute("CREATE VIRTUAL TABLE p USING fts5(text, tokenize='porter unicode61')")
    with db:
        db.executemany("INSERT INTO p(rowid, text) VALUES (?, ?)", enumerate(texts))
    def search(q):
        terms = [t for t in re.findall(r"\w\w+", q.lower()) if t not in analyzer.stopwords]
        if not terms:
            return []
        match = " OR ".join('"' + t + '"' for t in terms)
        return [r[0] for r in db.execute(
            "SELECT rowid FROM p WHERE p MATCH ? ORDER BY bm25(p) LIMIT 50", (match,))]
    def add():
        with db:
            db.executemany("INSERT INTO p(rowid, text) VALUES (?, ?)",
                           enumerate(extra, start=len(texts)))
else:
    import tantivy
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("text", stored=False, tokenizer_name="en_stem")
    builder.add_integer_field("id", stored=True, indexed=False, fast=True)
    schema = builder.build()
    index = tantivy.Index(schema, path=str(folder))
    writer = index.writer(heap_size=256_000_000, num_threads=1)
    for i, text in enumerate(texts):
        writer.add_document(tantivy.Document(text=text, id=i))
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    searcher = index.searcher()
    def search(q):
        terms = [t for t in re.findall(r"\w\w+", q.lower()) if t not in analyzer.stopwords]
        if not terms:
            return []
        query = index.parse_query(" OR ".join(terms), ["text"])
        return [searcher.doc(a)["id"][0] for _, a in searcher.search(query, 50).hits]
    def add():
        w = index.writer(heap_size=128_000_000, num_threads=1)
        for i, text in enumerate(extra, start=len(texts)):
            w.add_document(tantivy.Document(text=text, id=i))
        w.commit()
        w.wait_merging_threads()
build = time.perf_counter() - start
size = disk(folder)
search(questions[0])
times = []
for q in questions:
    t = time.perf_counter()
    search(q)
    times.append((time.perf_counter() - t) * 1000)
start = time.perf_counter()
add()
added = time.perf_counter() - start
print(json.dumps({"build_s": build, "add_s": added, "p50_ms": float(np.percentile(times, 50)),
                  "p95_ms": float(np.percentile(times, 95)), "disk_mb": size / 1e6,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_passages(shared: Path, n: int, out: Path) -> None:
    sentences = []
    for line in (shared / "bench/news-a/archive.jsonl").open(encoding="utf-8"):
        text = json.loads(line)["text"]
        sentences += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text)
                      if 40 <= len(s.strip()) <= 400]
    rng = random.Random(16)
    with out.open("w", encoding="utf-8") as f:
        for _ in range(n):
            f.write(" ".join(rng.sample(sentences, rng.randint(4, 6))).replace("\n", " ") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--engines", nargs="+", default=["bm25s", "fts5", "tantivy"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        passages = Path(tmp) / "passages.txt"
        began = time.perf_counter()
        make_passages(args.shared, args.passages, passages)
        questions = Path(tmp) / "questions.jsonl"
        with questions.open("w") as f:
            for name in ("news-a", "squad-a"):
                lines = (args.shared / f"bench/{name}/questions.jsonl").read_text().splitlines()
                f.write("\n".join(lines[:200]) + "\n")
        print(f"{args.passages:,} passages made in {time.perf_counter() - began:.0f} s",
              flush=True)
        print(f"{'engine':8} {'build s':>8} {'peak RSS MB':>11} {'disk MB':>8} {'p50 ms':>7} "
              f"{'p95 ms':>7} {'add 1,000 articles s':>21}", flush=True)
        for engine in args.engines:
            folder = Path(tmp) / engine
            folder.mkdir()
            done = subprocess.run([sys.executable, "-c", WORKER, engine, str(folder),
                                   str(passages), str(questions)], cwd=ROOT,
                                  capture_output=True, text=True)
            if done.returncode:
                print(f"{engine:8} failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{engine:8} {r['build_s']:8.0f} {r['peak_rss_mb']:11,.0f} "
                  f"{r['disk_mb']:8,.0f} {r['p50_ms']:7.1f} {r['p95_ms']:7.1f} "
                  f"{r['add_s']:21.1f}", flush=True)
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
