"""Warm `qa ask` latency in one process: `python -m benchmarks.warm --index INDEX`.

Asks the same questions several times over one loaded index and prints p50/p95 of each pass:
the first pass pays for pages not yet read into the page cache, the
later ones show what a long-running server sees, as far as the page cache keeps the index.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True, help="the index to ask")
    parser.add_argument("--questions", type=Path,
                        default=ROOT.parent / "shared" / "bench" / "news-a" / "questions.jsonl",
                        help="a qa eval file (default: news-a's questions)")
    parser.add_argument("--count", type=int, default=60, help="questions asked (default 60)")
    parser.add_argument("--passes", type=int, default=3, help="passes over them (default 3)")
    args = parser.parse_args(argv)

    from benchmarks.run import percentiles, rss_parts
    from qa.engine import Engine

    lines = args.questions.read_text().splitlines()[: args.count]
    questions = [json.loads(line)["question"] for line in lines]
    engine = Engine(args.index)
    for number in range(1, args.passes + 1):
        times = []
        for question in questions:
            start = time.perf_counter()
            engine.ask(question, k=5)
            times.append((time.perf_counter() - start) * 1000)
        pcts = percentiles(times)
        print(f"pass {number}: {len(times)} questions, p50 {pcts['p50']:.0f} ms, "
              f"p95 {pcts['p95']:.0f} ms", flush=True)
    own = rss_parts()
    print(f"serving memory: own (RssAnon) {own['RssAnon']:.0f} MiB, mapped index pages "
          f"(RssFile, reclaimable page cache) {own['RssFile']:.0f} MiB")
    engine.close()


if __name__ == "__main__":
    main()
