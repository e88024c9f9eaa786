"""Speed benchmark for issue 5: `python -m benchmarks.run [--quick]` from the repository root.

Prints, in one run: cold `qa ask` against the naive sentence-transformers path, document
ingest against sentence-transformers fp32, warm query latency and recall@10 at 10k, 100k
and 1M passages, and the peak RSS of every measured process. Every measurement that is
compared runs in a fresh child process (`python -m benchmarks.run --worker ...`) so its
peak RSS is its own. The machine is shared: the load average is printed beside the
numbers; compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The shared benchmark folder beside the checkout; --shared points elsewhere.
SHARED = ROOT.parent / "shared"
QUESTION = "How many rockets landed at the Taji base?"
NAIVE = """
import sys, time, sqlite3
import numpy as np
import faiss
from sentence_transformers import SentenceTransformer
from index.models.spec import DEFAULT
from index.storage.layout import current_version
version = current_version(sys.argv[1])
model = SentenceTransformer(str(DEFAULT.verified()), device="cpu", local_files_only=True)
query = model.encode([sys.argv[2]], normalize_embeddings=True)
index = faiss.IndexFlatIP(query.shape[1])
index.add(np.load(version / "vectors.npy"))
scores, ids = index.search(query, 5)
db = sqlite3.connect(version / "passages.sqlite")
rows = [db.execute("SELECT text FROM passages WHERE id = ?", (int(i),)).fetchone()[0]
        for i in ids[0]]
print(rows[0][:80])
"""


# ---------------------------------------------------------------- child processes


def measured(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Like ``child`` but with the child's own peak RSS (os.wait4)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=err, env=full_env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:6])}... failed:\n{stderr[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mib": usage.ru_maxrss / 1024, "stdout": stdout}


def worker(name: str, **kwargs: Any) -> dict[str, Any]:
    result = measured([sys.executable, "-m", "benchmarks.run", "--worker", name,
                       json.dumps(kwargs)])
    data = json.loads(result["stdout"].strip().splitlines()[-1])
    data["rss_mib"] = result["rss_mib"]
    data["wall"] = result["wall"]
    return data


# ---------------------------------------------------------------- workers (in children)


def w_embed(backend: str, texts: str, index: str, batch: int | None = None) -> dict[str, Any]:
    """Embed the sample with ``backend`` at ``batch`` texts per call (default: the embedder's
    own): ``st-fp32`` or ``st-bf16`` (sentence-transformers, bf16 autocast), ``int8`` or
    ``bf16`` (qa's two document embedders: int8 ONNX or bf16 weights, one single-threaded
    model per core), or ``doc`` (the one a build here would choose)."""
    from index.ingest import embed as qa_embed
    from index.ingest.embed import TorchEmbedder
    from index.models.embedder import count_tokens
    from index.models.spec import DEFAULT

    sample = json.loads(Path(texts).read_text())
    start = time.perf_counter()
    embedder: Any
    if backend.startswith("st-"):
        embedder = TorchEmbedder(bf16=backend == "st-bf16")
    elif backend == "int8":
        embedder = qa_embed._int8_embedder(Path(index), DEFAULT)
    elif backend == "bf16":
        embedder = qa_embed._bf16_embedder(DEFAULT)
    else:
        embedder = qa_embed.document_embedder(Path(index))
    embedder.embed(sample[:8])
    if hasattr(embedder, "start"):  # the worker processes: loading, like the model above
        embedder.start()
    load = time.perf_counter() - start
    start = time.perf_counter()
    batch = batch or embedder.batch_size
    vectors = embedder.embed(sample, batch_size=batch)
    seconds = time.perf_counter() - start
    tokens = sum(min(n, 256) for n in count_tokens(sample))
    np_path = Path(texts).with_suffix(f".{backend}-{batch}.npy")
    import numpy as np

    np.save(np_path, vectors)
    return {"load_s": load, "embed_s": seconds, "chunks": len(sample), "tokens": tokens,
            "precision": getattr(embedder, "precision", "?"), "vectors": str(np_path),
            "batch": batch}


class StageClock:
    """A ``progress`` callback that times each stage from its first report to its last, and
    notes the peak RSS so far at each stage's last report."""

    def __init__(self) -> None:
        self.start: dict[str, float] = {}
        self.seconds: dict[str, float] = {}
        self.rss: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        import resource

        now = time.perf_counter()
        self.start.setdefault(stage, now)
        self.seconds[stage] = now - self.start[stage]
        self.rss[stage] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def w_build(docs: str, index: str) -> dict[str, Any]:
    """The production build (clean, chunk, embed with the default document embedder, store),
    with the time of each stage."""
    from index.ingest.job import BuildOptions
    from index.ingest.pipeline import build_index
    from index.models.embedder import count_tokens

    clock = StageClock()
    start = time.perf_counter()
    report = build_index(Path(docs), Path(index), BuildOptions(progress=clock))
    total = time.perf_counter() - start
    from index.storage.reader import Store

    store = Store(Path(index))
    texts = [p.text for p in store.all_passages()]
    tokens = sum(min(n, 256) for n in count_tokens(texts))
    return {"seconds": total, "documents": report.documents, "passages": report.passages,
            "tokens": tokens, "stages": clock.seconds}


def w_scale(squad_index: str, out: str, n: int, seed: int = 0) -> dict[str, Any]:
    """An index of ``n`` passages of real text recombined from the articles of
    ``squad_index`` (any built index: squad-a's, or news-a's with ``--scale-from``): each
    synthetic article joins the first half of one article's passages to the second half of
    another's (a new pairing for every round over the archive, so articles are distinct), and
    each passage's vector is its real vector + N(0, 0.01²) noise, renormalised. Rows and
    vectors stream to disk (the vectors never all in memory), then the production
    ``write_version`` builds the keyword and vector indexes."""
    import resource

    import numpy as np

    from index.storage.publish import new_version, write_version
    from index.storage.reader import Store
    from index.storage.rows import Build, DocumentRow, PassageRow
    from index.storage.vectors import VectorWriter

    base = Store(Path(squad_index))
    documents = list(base.documents.values())
    by_doc: dict[int, list[Any]] = {}
    for p in base.all_passages():
        by_doc.setdefault(p.doc, []).append(p)
    documents = [d for d in documents if by_doc.get(d.id)]
    real = base.load_vectors()
    rng = np.random.default_rng(seed)
    Path(out).mkdir(parents=True, exist_ok=True)
    build = Build(new_version(Path(out)))
    vectors = VectorWriter(build.folder, n, real.shape[1])
    ids: list[int] = []
    sources: list[int] = []

    def flush() -> None:
        block = np.asarray(real[np.array(sources)], dtype=np.float32)
        block += rng.normal(scale=0.01, size=block.shape).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        vectors[np.array(ids)] = block
        ids.clear()
        sources.clear()

    start = time.perf_counter()
    rounds = 0
    while build.passages < n:
        partner = rng.permutation(len(documents))
        for number, d in enumerate(documents):
            if build.passages >= n:
                break
            other = documents[partner[number]]
            first, second = by_doc[d.id], by_doc[other.id]
            picked = first[: (len(first) + 1) // 2] + second[len(second) // 2 :]
            doc_id = build.documents
            rows: list[PassageRow] = []
            for p in picked[: n - build.passages]:
                i = build.passages + len(rows)
                rows.append(PassageRow(i, doc_id, p.start, p.end, p.kind, p.text, p.sentences,
                                       f"{p.hash[:24]}{rounds:08d}"))
                ids.append(i)
                sources.append(p.id)
            build.add(DocumentRow(doc_id, f"{d.source}+{other.source}#{rounds}", d.path,
                                  d.sha256, d.title, d.date, d.date_inferred, d.author,
                                  d.publisher, d.encoding), rows)
            if len(ids) >= 65_536:
                flush()
        rounds += 1
    if ids:
        flush()
    vectors.flush()
    manifest = dict(base.manifest)
    manifest["counts"] = {"documents": build.documents, "passages": n}
    manifest["files"] = {}
    made = time.perf_counter() - start
    prepared_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    clock = StageClock()
    start = time.perf_counter()
    for name in ("model.onnx", "model.onnx.data", "model.int8.onnx", "model.onnx.sha256"):
        target = Path(out) / name
        if not target.exists() and (Path(squad_index) / name).exists():
            os.link(Path(squad_index) / name, target)
    base.close()
    write_version(Path(out), build, None, manifest, clock)
    return {"prepare_s": made, "prepare_rss_mib": prepared_rss,
            "write_s": time.perf_counter() - start, "stages": clock.seconds,
            "stage_rss_mib": clock.rss}


def w_add(index: str, source_index: str, docs: str, count: int = 1000,
          seed: int = 1) -> dict[str, Any]:
    """``qa index update`` adding ``count`` new articles to ``index``: text files of
    ``source_index``'s articles, each with a new first line (so every passage is new and
    embedded). Wall time by stage; what happened outside the stages (opening the live
    version, linking its base, hashing and publishing the delta) is the rest."""
    import random

    from index.ingest.job import BuildOptions
    from index.ingest.pipeline import update_index
    from index.storage.reader import Store

    source = Store(Path(source_index))
    folder = Path(docs)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    documents = list(source.documents.values())
    random.Random(seed).shuffle(documents)
    for number, d in enumerate(documents[:count]):
        text = source.stored_text(d.id) or Path(d.path).read_text(encoding="utf-8")
        (folder / f"added-{stamp}-{number:04d}.txt").write_text(
            f"Update {stamp} number {number}\n\n{text}", encoding="utf-8")
    source.close()
    clock = StageClock()
    start = time.perf_counter()
    report = update_index(folder, Path(index), BuildOptions(progress=clock))
    total = time.perf_counter() - start
    live = Store(Path(index))
    delta = live.manifest.get("delta")
    live.close()
    return {"total_s": total, "stages": clock.seconds,
            "other_s": total - sum(clock.seconds.values()),
            "embedded": report.embedded, "added": len(report.added), "delta": delta}


def w_query(index: str, questions: str, qvectors: str, n: int) -> dict[str, Any]:
    """Warm latency: full `Engine.ask` (k=5) and the vector search alone, recall@10 of the
    vector index against exact search over the same vectors."""
    import numpy as np

    from index.storage.vectors import NumpyIndex
    from qa.engine import Engine

    qs = [json.loads(line)["question"] for line in Path(questions).read_text().splitlines()]
    qv = np.load(qvectors)
    start = time.perf_counter()
    engine = Engine(Path(index))
    engine.ask(qs[0], k=5)
    first = time.perf_counter() - start
    for q in qs[1:4]:
        engine.ask(q, k=5)
    ask_ms = []
    for q in qs[4 : 4 + n]:
        t = time.perf_counter()
        engine.ask(q, k=5)
        ask_ms.append((time.perf_counter() - t) * 1000)
    embed_ms = []
    for q in qs[4 : 4 + n]:
        t = time.perf_counter()
        engine.embedder.embed_batch([q])
        embed_ms.append((time.perf_counter() - t) * 1000)
    search = _search_stats(engine.store.vectors, qv)
    import resource

    # Peak RSS while serving (before the exact search used for recall maps every vector),
    # and what of the RSS now is the process's own memory rather than mapped index files
    # (page cache, shared and reclaimable).
    serving = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    own = rss_parts()
    # Exact top-10 one question at a time (10M scores a question), over the first 50.
    qv = qv[:50]
    # Over all the stored vectors: a version with a delta holds the base's and the delta's.
    exact = NumpyIndex(qv.shape[1], engine.store.load_vectors())
    truth = np.concatenate([exact.search(q[None], 10)[1] for q in qv])
    _, got = engine.store.vectors.search(qv, 10)
    return {"open_and_first_ask_s": first, "ask_ms": percentiles(ask_ms),
            "embed_query_ms": percentiles(embed_ms), "search_ms": search,
            "recall10": _recall(got, truth), "kind": engine.store.manifest["vector_index"],
            "serving_rss_mib": serving, "serving_anon_mib": own["RssAnon"],
            "serving_file_mib": own["RssFile"]}


def w_million(squad_index: str, out: str, n: int, queries: str, seed: int = 0,
              kind: str = "gaussian") -> dict[str, Any]:
    """Build the 1M point: synthetic vectors (written to disk in slices), the production
    ``build_faiss`` over them, and exact top-10 for the real question vectors.

    ``gaussian``: drawn from a Gaussian with the mean and covariance of squad-a's real passage
    vectors (no cluster structure: a hard case for any ANN index). ``perturbed``: squad-a's
    real passage vectors repeated, each copy + N(0, 0.01²) noise (as the 10k/100k points)."""
    import numpy as np

    from index.storage.reader import Store
    from index.storage.vectors import build_faiss

    real = np.asarray(Store(Path(squad_index)).load_vectors()[:], dtype=np.float64)
    mean, cov = real.mean(axis=0), np.cov(real, rowvar=False)
    rng = np.random.default_rng(seed)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "vectors.npy"
    vectors = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                        shape=(n, real.shape[1]))
    start = time.perf_counter()
    step = 100_000
    for i in range(0, n, step):
        m = min(step, n - i)
        if kind == "perturbed":
            rows = real[np.arange(i, i + m) % len(real)].astype(np.float32)
            block = rows + rng.normal(scale=0.01, size=rows.shape).astype(np.float32)
        else:
            block = rng.multivariate_normal(mean, cov, size=m, method="eigh").astype(
                np.float32)
        vectors[i : i + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    vectors.flush()
    del vectors
    made = time.perf_counter() - start
    mapped = np.load(path, mmap_mode="r")
    start = time.perf_counter()
    index = build_faiss(mapped)
    built = time.perf_counter() - start
    index.save(out_dir / "faiss.index")
    qv = np.load(queries)
    scores = np.full((len(qv), 10), -np.inf, dtype=np.float32)
    ids = np.zeros((len(qv), 10), dtype=np.int64)
    for i in range(0, n, step):  # exact top-10, a slice at a time
        s = qv @ np.asarray(mapped[i : i + step]).T
        both_s = np.concatenate([scores, s], axis=1)
        both_i = np.concatenate([ids, np.arange(i, i + s.shape[1])[None].repeat(len(qv), 0)],
                                axis=1)
        top = np.argsort(-both_s, axis=1)[:, :10]
        scores, ids = np.take_along_axis(both_s, top, 1), np.take_along_axis(both_i, top, 1)
    np.save(out_dir / "truth.npy", ids)
    return {"generate_s": made, "build_s": built, "params": index.params()}


def w_million_query(out: str, queries: str) -> dict[str, Any]:
    import numpy as np

    from index.storage.vectors import FaissIndex

    start = time.perf_counter()
    index = FaissIndex.load(Path(out) / "faiss.index", mmap=True,
                            vectors=np.load(Path(out) / "vectors.npy", mmap_mode="r"))
    opened = time.perf_counter() - start
    qv = np.load(queries)
    search = _search_stats(index, qv)
    _, got = index.search(qv, 10)
    truth = np.load(Path(out) / "truth.npy")
    return {"open_s": opened, "search_ms": search, "recall10": _recall(got, truth),
            "params": index.params()}


def rss_parts() -> dict[str, float]:
    """RssAnon (the process's own memory) and RssFile (mapped files: page cache) in MiB."""
    parts = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("RssAnon", "RssFile"):
            parts[name] = int(value.split()[0]) / 1024
    return parts


def _search_stats(index: Any, qv: Any) -> dict[str, float]:
    for q in qv[:5]:
        index.search(q[None], 10)
    times = []
    for q in qv:
        t = time.perf_counter()
        index.search(q[None], 10)
        times.append((time.perf_counter() - t) * 1000)
    return percentiles(times)


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": statistics.median(ordered),
            "p95": ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))],
            "n": len(ordered)}


def _recall(got: Any, truth: Any) -> float:
    return float(statistics.mean(len(set(g) & set(t)) / len(t) for g, t in zip(got, truth,
                                                                                strict=True)))


WORKERS: dict[str, Any] = {"embed": w_embed, "build": w_build, "scale": w_scale, "query": w_query,
           "add": w_add,
           "million": w_million, "million_query": w_million_query}


# ---------------------------------------------------------------- the run


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load avg {one:.1f} (1 min) {five:.1f} (5 min) on {os.cpu_count()} cores"


def cold(seed_index: Path, runs: int) -> dict[str, Any]:
    ask = [sys.executable, "-m", "cli", "ask", QUESTION, "--json", "-k", "5",
           "--docs", "seeds", "--index", str(seed_index)]
    naive = [sys.executable, "-c", NAIVE, str(seed_index), QUESTION]
    first = measured(ask)  # page cache warm-up, not counted
    if json.loads(first["stdout"])["passages"][0]["citation"]["source"] != "003_a6f98cea0e1f5c95":
        raise RuntimeError("qa ask gave the wrong citation")
    measured(naive)
    walls: dict[str, list[float]] = {"ask": [], "naive": []}
    cpus: dict[str, list[float]] = {"ask": [], "naive": []}
    rss: dict[str, float] = {"ask": 0.0, "naive": 0.0}
    for _ in range(runs):  # interleaved so both see the same machine load
        for name, args in (("ask", ask), ("naive", naive)):
            r = measured(args)
            walls[name].append(r["wall"])
            cpus[name].append(r["cpu"])
            rss[name] = max(rss[name], r["rss_mib"])
    return {"walls": walls, "rss": rss,
            "median": {k: statistics.median(v) for k, v in walls.items()},
            "cpu": {k: statistics.median(v) for k, v in cpus.items()}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 cold runs, 128 ingest passages, 10k only, no 1M point")
    parser.add_argument("--runs", type=int, default=None, help="cold runs (default 7)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds of each ingest embedder (default 3)")
    parser.add_argument("--sample", type=int, default=None,
                        help="passages embedded by both ingest paths (default 192)")
    parser.add_argument("--sizes", default=None,
                        help="comma-separated real-text index sizes (default 10000,100000)")
    parser.add_argument("--million", type=int, default=None,
                        help="size of the synthetic point (default 1000000; 0 to skip)")
    parser.add_argument("--million-kind", choices=("gaussian", "perturbed"),
                        default="gaussian", help="vectors of the synthetic point (see docs)")
    parser.add_argument("--ingest-index", type=Path, default=None,
                        help="take the ingest sample from this index's passages (e.g. a news-a "
                        "index: real news, up to 256 word pieces) instead of squad-a's")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the built indexes here (default: a temporary folder)")
    parser.add_argument("--sections", default="cold,ingest,queries",
                        help="comma-separated subset of cold,ingest,queries,scale (scale: the "
                        "queries section end to end at --sizes, default 1000000, no synthetic "
                        "FAISS-only point)")
    parser.add_argument("--shared", type=Path, default=SHARED,
                        help="the shared data folder holding bench/squad-a (default ../shared)")
    parser.add_argument("--scale-from", type=Path, default=None,
                        help="scale section: recombine the articles of this built index "
                        "(e.g. one of ../shared/bench/news-a/docs) instead of squad-a's")
    parser.add_argument("--scale-questions", type=Path, default=None,
                        help="scale section: the questions asked (default: squad-a's, or "
                        "news-a's with a --scale-from index)")
    parser.add_argument("--add", type=int, default=1000,
                        help="scale section: articles added by `qa index update` after the "
                        "queries (default 1000; 0 to skip)")
    parser.add_argument("--skip-queries", action="store_true",
                        help="scale section: only build (if needed) and add")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    squad = args.shared / "bench" / "squad-a"
    if args.worker:
        name, kwargs = args.worker
        print(json.dumps(WORKERS[name](**json.loads(kwargs))))
        return
    runs = args.runs or (3 if args.quick else 7)
    sample = args.sample or (128 if args.quick else 192)
    sizes = [int(s) for s in (args.sizes or ("10000" if args.quick else "10000,100000"))
             .split(",") if s]
    million = args.million if args.million is not None else (0 if args.quick else 1_000_000)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="qa-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"# qa speed benchmark — {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(f"command: python -m benchmarks.run {' '.join(argv or sys.argv[1:])}")
    print(f"{load()}; workdir {work}\n", flush=True)

    # 1. the seed index and the squad-a index, built the production way
    seed_index = work / "seeds-index"
    if not (seed_index / "CURRENT").exists():
        r = measured([sys.executable, "-m", "cli", "index", "build", "--docs", "seeds",
                      "--index", str(seed_index)])
        print(f"seed index built in {r['wall']:.1f} s (includes the one-off ONNX export)")
    squad_index = work / "squad-index"
    if not (squad_index / "CURRENT").exists():
        build = worker("build", docs=str(squad / "docs"), index=str(squad_index))
    else:
        build = None

    sections = set(args.sections.split(","))
    if "cold" in sections:
        report_cold(seed_index, runs)
    if "ingest" in sections:
        report_ingest(work, args.ingest_index or squad_index, sample, build,
                      rounds=1 if args.quick else args.rounds)
    if "queries" in sections:
        report_queries(work, squad_index, squad / "questions.jsonl", sizes, million,
                       args.million_kind)
    if "scale" in sections:
        news = args.shared / "bench" / "news-a" / "questions.jsonl"
        questions = args.scale_questions or (news if args.scale_from else
                                             squad / "questions.jsonl")
        report_queries(work, args.scale_from or squad_index, questions,
                       [int(s) for s in (args.sizes or "1000000").split(",") if s], 0,
                       prefix="news-" if args.scale_from else "", add=args.add,
                       queries=not args.skip_queries)
    print(f"\ntotal benchmark time {time.perf_counter() - started:.0f} s")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


def _disk(index: Path) -> int:
    """Bytes of the live version's files (the shared query model not counted)."""
    version = index / (index / "CURRENT").read_text().strip()
    return sum(p.stat().st_size for p in version.rglob("*") if p.is_file())


def report_cold(seed_index: Path, runs: int) -> None:
    c = cold(seed_index, runs)
    ratio = c["median"]["naive"] / c["median"]["ask"]
    print("## Cold start (fresh process, seed index, question → cited passages)")
    print(f"qa ask (`python -m cli ask Q --json -k 5`): median {c['median']['ask']:.2f} s "
          f"(runs {', '.join(f'{w:.2f}' for w in c['walls']['ask'])}), peak RSS "
          f"{c['rss']['ask']:.0f} MiB")
    print(f"naive (import sentence-transformers, load, embed, faiss, sqlite): median "
          f"{c['median']['naive']:.2f} s (runs {', '.join(f'{w:.2f}' for w in c['walls']['naive'])}"
          f"), peak RSS {c['rss']['naive']:.0f} MiB")
    print(f"ratio naive/qa ask: {ratio:.1f}x   [{load()}]")
    print(f"CPU time (user+sys, median; less sensitive to the load than wall time): qa ask "
          f"{c['cpu']['ask']:.2f} s, naive {c['cpu']['naive']:.2f} s, ratio "
          f"{c['cpu']['naive'] / c['cpu']['ask']:.1f}x\n", flush=True)



def report_ingest(work: Path, squad_index: Path, sample: int, build: Any,
                  rounds: int = 3) -> None:
    """The same passages through sentence-transformers and each of qa's document embedders,
    each in its own process, ``rounds`` times interleaved (a shared VM's speed drifts within
    minutes); rates are the median of the rounds."""
    from index.models.cpu import cpu_has_bf16
    from index.storage.reader import Store

    texts = [p.text for p in Store(squad_index).all_passages()]
    what = "squad-a" if squad_index.name == "squad-index" else squad_index.name
    prefixes = json.dumps(texts[:: max(1, len(texts) // sample)][:sample])
    texts_file = work / "ingest-sample.json"
    texts_file.write_text(prefixes)
    def embed(backend: str, batch: int | None) -> dict[str, Any]:
        return worker("embed", backend=backend, texts=str(texts_file), index=str(squad_index),
                      batch=batch)

    # bf16 where the CPU has it (emulated elsewhere: ~5x slower than fp32).
    plan: dict[str, tuple[str, int | None]] = {"st": ("st-fp32", 32), "ours": ("doc", None),
                                               "int8": ("int8", None)}
    if cpu_has_bf16():
        plan.update({"bf16w": ("bf16", None), "bf16": ("st-bf16", 32)})
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in plan}
    for _ in range(rounds):
        for name, (backend, batch) in plan.items():
            runs[name].append(embed(backend, batch))
    # fp32 at qa's own batch size, so the ratio is not the batch size alone (one round).
    runs["st-small"] = [embed("st-fp32", runs["ours"][0]["batch"])]
    import numpy as np

    def rate(name: str) -> float:
        return float(np.median([r["chunks"] / r["embed_s"] for r in runs[name]]))

    st, ours = runs["st"][0], runs["ours"][0]
    reference = np.load(st["vectors"])
    print(f"## Ingest ({st['chunks']} {what} passages, {st['tokens']} tokens; median of "
          f"{rounds} interleaved rounds, range in brackets)")
    labels = {"st": "sentence-transformers fp32", "ours": f"qa default ({ours['precision']})",
              "int8": "qa int8 ONNX, pool", "bf16w": "qa bf16 weights, pool",
              "bf16": "sentence-transformers bf16", "st-small": "sentence-transformers fp32"}
    for name in ("st", "ours", "int8", "bf16w", "bf16", "st-small"):
        if name not in runs:
            continue
        r = runs[name][0]
        rates = [x["chunks"] / x["embed_s"] for x in runs[name]]
        cos = (reference * np.load(r["vectors"])).sum(axis=1)
        print(f"{labels[name]:28} batch {r['batch']:2} {rate(name):6.1f} chunks/s "
              f"[{min(rates):.1f}–{max(rates):.1f}] {rate(name) * r['tokens'] / r['chunks']:8.0f}"
              f" tokens/s  (load {r['load_s']:.1f} s, peak RSS {r['rss_mib']:.0f} MiB; cosine "
              f"to the first min {cos.min():.4f} mean {cos.mean():.4f})")
    print(f"ratio qa default / sentence-transformers fp32 (its default batch 32): "
          f"{rate('ours') / rate('st'):.2f}x; at qa's batch "
          f"{rate('ours') / rate('st-small'):.2f}x   [{load()}]")
    if build:
        per_doc = build["stages"].get("reading", 0) / max(1, build["documents"])
        print(f"full build of squad-a ({build['documents']} articles, {build['passages']} "
              f"passages): {build['seconds']:.1f} s, {build['passages'] / build['seconds']:.1f}"
              f" chunks/s end to end, peak RSS {build['rss_mib']:.0f} MiB; stages "
              + ", ".join(f"{k} {v:.1f} s" for k, v in build["stages"].items())
              + f" (clean+chunk {per_doc * 1000:.0f} ms per 34 kB article)")
    print(flush=True)



def _report_warm(n: int, target: Path, qfile: Path, qvec: Path) -> None:
    q = worker("query", index=str(target), questions=str(qfile), qvectors=str(qvec),
               n=60 if n <= 100_000 else 30)
    print(f"{n:>9,} passages [{q['kind']['kind']}]: vector search p50 "
          f"{q['search_ms']['p50']:.2f} ms p95 {q['search_ms']['p95']:.2f} ms, recall@10 "
          f"{q['recall10']:.3f}; query embedding p50 {q['embed_query_ms']['p50']:.1f} ms; "
          f"full ask (k=5, highlights) p50 {q['ask_ms']['p50']:.0f} ms p95 "
          f"{q['ask_ms']['p95']:.0f} ms; peak RSS serving {q['serving_rss_mib']:.0f} MiB "
          f"(then {q['serving_anon_mib']:.0f} MiB own memory + "
          f"{q['serving_file_mib']:.0f} MiB mapped index files) "
          f"({q['rss_mib']:.0f} MiB with the exact search for recall)   [{load()}]",
          flush=True)
    ask = [sys.executable, "-m", "cli", "ask", QUESTION, "--json", "-k", "5",
           "--index", str(target)]
    measured(ask)  # the page cache warm-up, not counted
    colds = [measured(ask) for _ in range(3)]
    print(f"{n:>9,} passages: cold `qa ask` (new process, page cache warm) median "
          f"{statistics.median(c['wall'] for c in colds):.2f} s, peak RSS "
          f"{max(c['rss_mib'] for c in colds):.0f} MiB; on disk "
          f"{_disk(target) / n:.0f} bytes a passage ({_disk(target) / 2**30:.2f} GiB)",
          flush=True)


def report_queries(work: Path, squad_index: Path, questions: Path, sizes: list[int],
                   million: int, kind: str = "gaussian", prefix: str = "",
                   add: int = 0, queries: bool = True) -> None:
    import numpy as np

    qfile = work / f"{prefix}questions.jsonl"
    lines = questions.read_text().splitlines()
    qfile.write_text("\n".join(lines[:: max(1, len(lines) // 250)][:250]) + "\n")
    qvec = work / f"{prefix}questions.npy"
    if not qvec.exists():
        from index.models.embedder import OnnxEmbedder

        qs = [json.loads(line)["question"] for line in qfile.read_text().splitlines()]
        np.save(qvec, OnnxEmbedder(squad_index / "model.onnx").embed(qs))
    print(f"## Warm queries (one process, index loaded once; questions of {questions})")
    print(f"real text: the articles of {squad_index} recombined into distinct articles, "
          "vectors = real vectors + N(0, 0.01²) noise, renormalised; full BM25 and sqlite")
    for n in sizes:
        target = work / f"{prefix}scale-{n}"
        if not (target / "CURRENT").exists():
            made = worker("scale", squad_index=str(squad_index), out=str(target), n=n)
            stages, rss = made["stages"], made["stage_rss_mib"]
            print(f"{n:>9,} passages: rows and vectors prepared in {made['prepare_s']:.1f} s "
                  f"(peak RSS {made['prepare_rss_mib']:.0f} MiB), index written in "
                  f"{made['write_s']:.1f} s, peak RSS {made['rss_mib']:.0f} MiB (" + ", ".join(
                      f"{k} {v:.1f} s, peak RSS by its end {rss[k]:.0f} MiB"
                      for k, v in stages.items()) + ")", flush=True)
        if queries:
            _report_warm(n, target, qfile, qvec)
        if add:
            a = worker("add", index=str(target), source_index=str(squad_index),
                       docs=str(work / f"{prefix}added-{n}"), count=add)
            print(f"{n:>9,} passages: `qa index update` adding {a['added']:,} articles "
                  f"({a['embedded']:,} passages embedded) took {a['total_s']:.1f} s: " +
                  ", ".join(f"{k} {v:.1f} s" for k, v in a["stages"].items()) +
                  f", the rest {a['other_s']:.1f} s; peak RSS {a['rss_mib']:.0f} MiB; "
                  f"delta {json.dumps(a['delta'])}   [{load()}]", flush=True)
    if million:
        out = work / (f"synthetic-{million}" if kind == "gaussian" else f"{kind}-{million}")
        what = ("Gaussian with squad-a's mean and covariance" if kind == "gaussian" else
                "squad-a vectors repeated + N(0, 0.01²) noise")
        if not (out / "truth.npy").exists():
            m = worker("million", squad_index=str(squad_index), out=str(out), n=million,
                       queries=str(qvec), kind=kind)
            print(f"{million:>9,} synthetic vectors ({what}): generated "
                  f"{m['generate_s']:.0f} s, {m['params']} built in "
                  f"{m['build_s']:.0f} s, build peak RSS {m['rss_mib']:.0f} MiB")
        mq = worker("million_query", out=str(out), queries=str(qvec))
        print(f"{million:>9,} passages, {kind} [{mq['params']['kind']}, nprobe "
              f"{mq['params'].get('nprobe')}]: vector search p50 {mq['search_ms']['p50']:.2f} "
              f"ms p95 {mq['search_ms']['p95']:.2f} ms, recall@10 {mq['recall10']:.3f}; opened "
              f"(mmap) in {mq['open_s'] * 1000:.0f} ms; peak RSS {mq['rss_mib']:.0f} MiB   "
              f"[{load()}]")


if __name__ == "__main__":
    main()
