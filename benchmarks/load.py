"""Load benchmark: `qa serve` under wrk at 1, 4, 16 and 64 connections.

Starts `qa serve` over an index (default: the squad-a articles of the shared folder), then for
each connection count runs wrk for --seconds against POST /ask with questions from the set,
while another thread times GET /health. Prints req/s, latency percentiles, non-2xx (503 when
the queue is full) and socket errors per step, /health's worst time, and the ratio the issue
asks about: p99 at 16 connections over p50 at 1.

    HF_HUB_OFFLINE=1 python -m benchmarks.load --seconds 20
    HF_HUB_OFFLINE=1 python -m benchmarks.load --workers 1 --queue 1000   # one at a time

Results and the command go in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"

LUA = """
local questions = {QUESTIONS}
local n = 0
request = function()
  n = n + 1
  local body = '{"question": ' .. questions[(n % #questions) + 1] .. ', "k": 5}'
  return wrk.format("POST", "/ask", {["Content-Type"] = "application/json"}, body)
end
"""


def parse_wrk(text: str) -> dict[str, float]:
    """req/s, latency percentiles (ms), non-2xx and socket errors from wrk --latency."""

    def ms(value: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
        return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]

    out: dict[str, float] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1])}  # type: ignore[index]
    for pct in ("50", "90", "99"):
        found = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.MULTILINE)
        out[f"p{pct}"] = ms(found[1]) if found else float("nan")
    out["requests"] = float(re.search(r"(\d+) requests in", text)[1])  # type: ignore[index]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non2xx"] = float(non2xx[1]) if non2xx else 0.0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       text)
    out["socket_errors"] = float(sum(int(g) for g in errors.groups())) if errors else 0.0
    return out


def probe(url: str, stop: threading.Event, times: list[float]) -> None:
    """GET /health every 0.2 s until ``stop``, recording how long each took (ms)."""
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            began = time.perf_counter()
            client.get("/health").raise_for_status()
            times.append((time.perf_counter() - began) * 1000)
            time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--docs", type=Path, default=None,
                        help="articles to serve (default: the shared squad-a docs)")
    parser.add_argument("--questions", type=Path, default=None)
    parser.add_argument("--connections", default="1,4,16,64")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--queue", type=int, default=16)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--repo", type=Path, default=ROOT,
                        help="checkout whose `python -m cli serve` to run (compare versions)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    squad = args.shared / "bench" / "squad-a"
    docs = args.docs or squad / "docs"
    lines = (args.questions or squad / "questions.jsonl").read_text().splitlines()
    questions = [json.loads(line)["question"] for line in lines[:: max(1, len(lines) // 200)]]
    work = args.work or Path(tempfile.mkdtemp(prefix="qa-load-"))
    work.mkdir(parents=True, exist_ok=True)
    script = work / "ask.lua"
    script.write_text(LUA.replace("{QUESTIONS}", "{" + ", ".join(
        json.dumps(json.dumps(q)) for q in questions) + "}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update(HF_HUB_OFFLINE="1", QA_HOME=str(work / "home"))
    log = work / "serve.log"
    tuning = ["--workers", str(args.workers), "--queue", str(args.queue)]
    if "--workers" not in subprocess.run([sys.executable, "-m", "cli", "serve", "--help"],
                                         cwd=args.repo, env=env, capture_output=True,
                                         text=True).stdout:
        tuning = []  # a version without them: one question at a time, no queue bound
    with open(log, "w") as err:
        server = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--port", "0", "--docs", str(docs),
             "--index", str(work / "index"), *tuning], cwd=args.repo, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 600
        while not (found := re.search(r"API at (http://\S+) ", log.read_text())):
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"qa serve did not start:\n{log.read_text()}")
            time.sleep(0.2)
        url = found[1]
        print(f"# qa serve under wrk — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        print(f"command: python -m benchmarks.load {' '.join(sys.argv[1:])}")
        print(f"docs {docs} ({len(questions)} questions), --workers {args.workers} "
              f"--queue {args.queue}, {os.cpu_count()} cores, {args.seconds} s per step\n")
        print("| connections | answered/s | responses/s | p50 ms | p90 ms | p99 ms | non-2xx "
              "(503) | socket errors | /health worst ms |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        results = {}
        for connections in [int(c) for c in args.connections.split(",")]:
            health: list[float] = []
            stop = threading.Event()
            prober = threading.Thread(target=probe, args=(url, stop, health), daemon=True)
            prober.start()
            done = subprocess.run(
                ["wrk", "--latency", "-t", str(min(connections, 4)), "-c", str(connections),
                 "-d", f"{args.seconds}s", "--timeout", "60s", "-s", str(script), url],
                capture_output=True, text=True)
            stop.set()
            prober.join()
            r = parse_wrk(done.stdout)
            results[connections] = r
            answered = r["answered"] = (r["requests"] - r["non2xx"]) / args.seconds
            print(f"| {connections} | {answered:.1f} | {r['rps']:.1f} | {r['p50']:.0f} | "
                  f"{r['p90']:.0f} | "
                  f"{r['p99']:.0f} | {r['non2xx']:.0f} of {r['requests']:.0f} | "
                  f"{r['socket_errors']:.0f} | {max(health, default=float('nan')):.0f} |",
                  flush=True)
        if 1 in results and 16 in results:
            print(f"\np99 at 16 connections / p50 at 1: "
                  f"{results[16]['p99'] / results[1]['p50']:.1f}x")
        if 1 in results and max(results) > 1:
            best = max(results, key=lambda c: results[c]["answered"])
            print(f"questions answered per second, best ({best} connections) / at 1: "
                  f"{results[best]['answered'] / results[1]['answered']:.2f}x")
    finally:
        server.terminate()
        server.wait(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
