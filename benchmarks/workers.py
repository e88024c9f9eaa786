"""`qa serve --workers N`: requests per second and the cores the server's processes use, at 1,
2, 4 and 8 concurrent clients, for each --workers given (default 1 and 2), on the seed index.

Every server is started first and stays up; the steps then run in rounds, each round asking
every server in turn (the order reversed every other round), so a drift of the VM's speed
falls on all of them alike; the table gives each figure's median over the rounds. A client
is a thread with its own keep-alive connection asking seed questions in turn, one at a time.
Cores used is the CPU time (user + system) of the server process and its answering processes
over a step, divided by the step's wall time, read from /proc (Linux). The clients run in
this process, so they compete for the same cores.

    HF_HUB_OFFLINE=1 python -m benchmarks.workers --seconds 10 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "How many rockets landed at the Taji base?",
    "Who is McKenzie?",
    "What is the Quds Force?",
    "What did Khamenei say?",
    "Who was killed in the attack on Taji?",
    "What did Esper say about the response?",
]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` so far (processes that are gone count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def start(workers: int, docs: Path, index: Path, env: dict[str, str], log: Path
          ) -> tuple[subprocess.Popen[bytes], str]:
    with open(log, "w") as err:
        server = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--port", "0", "--workers", str(workers),
             "--docs", str(docs), "--index", str(index)], cwd=ROOT, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 600
    while not (found := re.search(r"API at (http://\S+) ", log.read_text())):
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"qa serve did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return server, found[1]


def step(url: str, clients: int, seconds: float, pids: list[int]) -> dict[str, float]:
    """``clients`` threads asking for ``seconds``: req/s, cores used, latency p50."""
    stop = threading.Event()
    times: list[list[float]] = [[] for _ in range(clients)]
    errors = [0]

    def client(n: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            asked = n
            while not stop.is_set():
                began = time.perf_counter()
                reply = http.post("/ask", json={"question": QUESTIONS[asked % len(QUESTIONS)]})
                if reply.status_code == 200:
                    times[n].append(time.perf_counter() - began)
                else:
                    errors[0] += 1
                asked += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    cpu, wall = cpu_seconds(pids), time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    cpu, wall = cpu_seconds(pids) - cpu, time.perf_counter() - wall
    done = [t for per in times for t in per]
    return {"rps": len(done) / wall, "cores": cpu / wall, "errors": errors[0],
            "p50": 1000 * statistics.median(done) if done else float("nan")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="--workers values to compare")
    parser.add_argument("--clients", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--docs", type=Path, default=ROOT / "seeds")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qa-workers-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update(HF_HUB_OFFLINE="1", QA_HOME=str(work / "home"))
    docs, index = work / "docs", work / "index"
    shutil.copytree(args.docs, docs)
    subprocess.run([sys.executable, "-m", "cli", "index", "build", "--docs", str(docs),
                    "--index", str(index)], cwd=ROOT, env=env, check=True,
                   stderr=subprocess.DEVNULL)
    counts = [int(w) for w in args.workers.split(",")]
    servers = {}
    try:
        for workers in counts:
            server, url = start(workers, docs, index, env, work / f"serve-{workers}.log")
            servers[workers] = (server, url, [server.pid, *children(server.pid)])
            step(url, 2, 3, servers[workers][2])  # warm: every process has answered
        print(f"# qa serve --workers — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
              f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; median of "
              f"{args.rounds} rounds of {args.seconds:g} s")
        print("| clients | " + " | ".join(f"--workers {w}: req/s | cores | p50 ms"
                                         for w in counts) + " |")
        print("| --- |" + " --- | --- | --- |" * len(counts))
        for clients in [int(c) for c in args.clients.split(",")]:
            runs: dict[int, list[dict[str, float]]] = {w: [] for w in counts}
            for n in range(args.rounds):
                for workers in counts if n % 2 == 0 else counts[::-1]:
                    _, url, pids = servers[workers]
                    runs[workers].append(step(url, clients, args.seconds, pids))
            cells = []
            for workers in counts:
                rps, cores, p50 = (statistics.median(r[key] for r in runs[workers])
                                   for key in ("rps", "cores", "p50"))
                cells.append(f"{rps:.1f} | {cores:.2f} | {p50:.0f}")
            print(f"| {clients} | " + " | ".join(cells) + " |", flush=True)
    finally:
        for server, _, _ in servers.values():
            server.terminate()
            server.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
