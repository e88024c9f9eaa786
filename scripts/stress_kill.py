"""kill -9 real `qa index build` / `qa index update` runs at random moments and check, after
every kill, that the index still loads and answers, that no stale lock blocks the next writer
and that leftovers of killed writers do not pile up.

    HF_HUB_OFFLINE=1 python scripts/stress_kill.py --kills 20

Runs from the repository root (it invokes `python -m cli`), with the real model. The docs are
the seed articles plus copies of ../shared/bench/squad-a/docs (override with --corpus), so
each run lasts long enough to be killed anywhere: while importing, reading, embedding, writing
the new version, or switching CURRENT. Exit status 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTION = "How many rockets landed at the Taji base?"


def cli(*args: str, **kw: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True, **kw,  # type: ignore[call-overload]
    )


def run_to_end(*args: str) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    start = time.monotonic()
    proc = cli(*args)
    out, err = proc.communicate()
    return time.monotonic() - start, subprocess.CompletedProcess(args, proc.returncode, out, err)


def mutate(docs: Path, corpus: list[Path], rng: random.Random, round_no: int) -> str:
    """Change the docs so the next update has work: edit, add and delete some files."""
    files = sorted(docs.glob("*.txt"))
    edited = rng.sample(files, k=min(4, len(files)))
    for path in edited:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"\n\nUpdate {round_no}: officials said on Tuesday that the review of "
                    f"case {rng.randrange(10**6)} would continue into next month.\n")
    source = rng.choice(corpus)
    (docs / f"added_{round_no:03d}.txt").write_bytes(source.read_bytes())
    added = sorted(docs.glob("added_*.txt"))
    removed = ""
    if len(added) > 3:
        added[0].unlink()
        removed = f", deleted {added[0].name}"
    return f"edited {len(edited)}, added added_{round_no:03d}.txt{removed}"


def check(index: Path, docs: Path) -> dict[str, object]:
    """The index after a kill: lock free, Store loads, `qa ask --json` answers."""
    from index.storage.layout import current_version, writer_lock
    from index.storage.reader import Store

    with writer_lock(index):  # raises IndexLocked if a dead writer's lock were still held
        pass
    store = Store(index)
    passages = store.passage_count
    version = current_version(index).name
    store.close()
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "ask", QUESTION, "--json", "-k", "3", "--docs", str(docs),
         "--index", str(index)], cwd=ROOT, capture_output=True, timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"ask failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    answer = json.loads(proc.stdout.decode().splitlines()[-1])
    if not answer["passages"]:
        raise RuntimeError("ask returned no passages")
    return {
        "version": version, "passages": passages,
        "top": answer["passages"][0]["citation"]["source"],
        "ask_s": round(time.monotonic() - start, 1),
        "tmp_dirs": len(list(index.glob(".tmp-*"))),
        "tmp_files": len(list(index.glob(".*.tmp"))),
        "versions": len(list(index.glob("v-*"))),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--copies", type=int, default=1, help="copies of the corpus to index")
    parser.add_argument("--corpus", type=Path,
                        default=ROOT.parent / "shared" / "bench" / "squad-a" / "docs",
                        help="articles to index (default: ../shared's squad-a)")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: temp)")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--build-every", type=int, default=6,
                        help="every Nth round kills a full build instead of an update (0: never)")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        parser.error(f"--corpus {args.corpus} is not a folder")
    rng = random.Random(args.seed)
    work = args.work or Path(tempfile.mkdtemp(prefix="stress-kill-"))
    docs, index = work / "docs", work / "index"
    shutil.rmtree(work / "docs", ignore_errors=True)
    shutil.rmtree(work / "index", ignore_errors=True)
    shutil.copytree(ROOT / "seeds", docs)
    corpus = sorted(args.corpus.glob("*.txt"))
    for copy in range(args.copies):
        for path in corpus:
            (docs / f"c{copy}_{path.name}").write_bytes(path.read_bytes())
    print(f"docs: {len(list(docs.glob('*.txt')))} files in {docs}; index: {index}", flush=True)

    took, done = run_to_end("index", "build", "--docs", str(docs), "--index", str(index))
    if done.returncode != 0:
        print(done.stderr.decode(), file=sys.stderr)
        return 1
    durations = {"build": took}
    mutate(docs, corpus, rng, 0)
    took, done = run_to_end("index", "update", "--docs", str(docs), "--index", str(index))
    durations["update"] = took
    print(f"full build {durations['build']:.1f}s, update {durations['update']:.1f}s", flush=True)
    print(json.dumps({"after": "first build + update", **check(index, docs)}), flush=True)

    kills = finished = failures = 0
    round_no = 0
    while kills < args.kills:
        round_no += 1
        command = "build" if args.build_every and round_no % args.build_every == 0 else "update"
        change = mutate(docs, corpus, rng, round_no)
        before = (index / "CURRENT").read_text()
        leftovers = set(index.glob(".tmp-*"))  # a killed writer's, removed by the next one
        started = time.monotonic()
        proc = cli("index", command, "--docs", str(docs), "--index", str(index))
        if round_no % 2:
            # Anywhere in the run: importing, reading, embedding, writing.
            delay = rng.uniform(0.0, durations[command] * 1.05)
            phase = "anywhere"
        else:
            # While the new version is written: wait for its .tmp- directory to appear, then
            # kill within the next moments (sqlite, FAISS, BM25, fsync, rename, CURRENT, prune).
            while proc.poll() is None and not set(index.glob(".tmp-*")) - leftovers:
                time.sleep(0.005)
            delay = time.monotonic() - started + rng.uniform(0.0, 1.0)
            phase = "writing"
        try:
            proc.wait(timeout=max(0.0, delay - (time.monotonic() - started)))
            outcome = f"finished before the kill (exit {proc.returncode})"
            finished += 1
            durations[command] = time.monotonic() - started
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            outcome = f"killed -9 at {time.monotonic() - started:.1f}s ({phase})"
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
        switched = (index / "CURRENT").read_text() != before
        try:
            result = check(index, docs)
            status = "ok"
        except Exception as error:  # report every failure and go on
            result, status = {"error": f"{type(error).__name__}: {error}"}, "FAILED"
            failures += 1
        print(json.dumps({"round": round_no, "command": command, "docs": change,
                          "outcome": outcome, "switched": switched, "status": status, **result}),
              flush=True)

    # The next writer after all those kills must run, finish and clean up.
    took, done = run_to_end("index", "update", "--docs", str(docs), "--index", str(index))
    final = check(index, docs)
    clean = final["tmp_dirs"] == 0 and final["tmp_files"] == 0 and final["versions"] <= 2
    print(json.dumps({"after": "final update", "exit": done.returncode, "clean": clean, **final}))
    print(f"\n{kills} kills (+{finished} runs that finished first), {failures} failed checks; "
          f"final update exit {done.returncode}, leftovers cleaned: {clean}")
    return 0 if failures == 0 and done.returncode == 0 and clean else 1


if __name__ == "__main__":
    sys.exit(main())
