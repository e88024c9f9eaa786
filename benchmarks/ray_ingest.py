"""Ray ingest throughput: `qa index build --ray` on a local cluster of 1 and 2 one-CPU nodes.

    python -m benchmarks.ray_ingest [--docs 600] [--no-local] [--shards]

Builds the first N news-a articles (real news passages, up to 256 word pieces) three ways: on
this machine without Ray (the default int8 encoder, one process per core), and through Ray
with one, then two, local nodes of one CPU each (`ray start`). Prints, for each, the
embedding stage's passages/s, the whole build's time, the embedding's start-up (from the
stage's start to the first block back: Ray Data's plan, actor processes, the model) and its
steady rate after that, then the two-node/one-node ratios. With ``--shards`` each cluster
also builds through Parquet shards (``--shards DIR``: the nodes write the vectors to a
folder, the head reads them back) right after its object-store build.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NEWS = Path(__file__).resolve().parents[2] / "shared" / "bench" / "news-a" / "docs"


def _ray(*args: str) -> None:
    subprocess.run([str(Path(sys.executable).with_name("ray")), *args], check=True,
                   capture_output=True)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build(docs: Path, index: Path, ray: str | None, shards: Path | None = None
          ) -> dict[str, Any]:
    from index.ingest.job import BuildOptions
    from index.ingest.pipeline import build_index

    marks: list[tuple[float, int]] = []  # (time, passages done) of each embedding report

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "embedding":
            marks.append((time.perf_counter(), done))

    start = time.perf_counter()
    report = build_index(docs, index, BuildOptions(progress=progress, ray=ray, shards=shards))
    total = time.perf_counter() - start
    (begin, _), (first, first_done), (end, _) = marks[0], marks[1], marks[-1]
    return {"passages": report.passages, "embed_s": round(end - begin, 1),
            "passages_per_s": round(report.embedded / (end - begin), 1),
            "startup_s": round(first - begin, 1),
            "steady_per_s": round((report.embedded - first_done) / (end - first), 1),
            "build_s": round(total, 1), "nodes": report.nodes}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=600, help="news-a articles to build")
    parser.add_argument("--no-local", action="store_true", help="skip the build without Ray")
    parser.add_argument("--shards", action="store_true",
                        help="also build through Parquet shards on each cluster")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="qa-ray-bench-"))
    docs = work / "docs"
    docs.mkdir()
    for path in sorted(NEWS.iterdir())[: args.docs]:
        shutil.copy(path, docs / path.name)
    results: dict[str, Any] = {}
    try:
        if not args.no_local:
            results["local"] = build(docs, work / "local", None)
            print("local (no Ray):", json.dumps(results["local"]), flush=True)
        for nodes in (1, 2):
            import ray

            port = _port()
            _ray("start", "--head", "--port", str(port), "--num-cpus", "1",
                 "--include-dashboard=false", "--disable-usage-stats")
            for _ in range(nodes - 1):
                _ray("start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1",
                     "--disable-usage-stats")
            address = f"127.0.0.1:{port}"
            try:
                results[f"ray{nodes}"] = build(docs, work / f"ray{nodes}", address)
                print(f"ray, {nodes} node(s):", json.dumps(results[f"ray{nodes}"]), flush=True)
                if args.shards:
                    results[f"shards{nodes}"] = build(docs, work / f"shards{nodes}", address,
                                                      work / f"shards{nodes}-parquet")
                    print(f"ray through shards, {nodes} node(s):",
                          json.dumps(results[f"shards{nodes}"]), flush=True)
            finally:
                ray.shutdown()
                _ray("stop", "--force")
        for kind in ("ray", "shards") if args.shards else ("ray",):
            one, two = results[f"{kind}1"], results[f"{kind}2"]
            ratio = two["passages_per_s"] / one["passages_per_s"]
            steady = two["steady_per_s"] / one["steady_per_s"]
            print(f"{'through shards, ' if kind == 'shards' else ''}two nodes / one node: "
                  f"embedding {ratio:.2f}x (after start-up {steady:.2f}x), "
                  f"whole build {one['build_s'] / two['build_s']:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
