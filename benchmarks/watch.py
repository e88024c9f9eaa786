"""Standing questions, measured: `python -m benchmarks.watch cost|news-a`.

``cost --index INDEX``: 200 standing questions (news-a's, then news-train's) checked against
an update of 1,000 articles: the index's 1,000 newest articles are marked unseen in a
scratch watch store (what a check sees after an update that added them: it reads only the
version and the store), then one check is timed, then a second with nothing new. The
watches have no baselines, so no finding is dropped as a repeat before its confirmation
(the costlier case). The index itself is only read.

``news-a --work DIR``: an index of news-a's first 12 quiz weeks (its articles published up
to week 12's last quiz date) built in DIR, each of the 128 quiz questions added as a
standing question (its baseline: the 12-week archive), an update adding week 13's articles,
one check as of week 13's quiz date (after a dry run without the whole-archive confirmation,
for comparison). Reports how many of week 13's questions get a finding,
how many of those hold the quiz's answer, and how many earlier weeks' questions are
re-reported (and whether what is re-reported holds their old answer).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT.parent / "shared" / "bench"


def _questions(count: int) -> list[str]:
    lines = (BENCH / "news-a" / "questions.jsonl").read_text().splitlines()
    lines += (BENCH / "news-train" / "questions.jsonl").read_text().splitlines()
    return [json.loads(line)["question"] for line in lines[:count]]


def cost(index: Path, count: int, update: int) -> dict[str, Any]:
    from index.storage.watch_store import WatchStore
    from qa.engine import Engine
    from qa.watch import Watches, article_fingerprints, check

    engine = Engine(index)
    scratch = Path(tempfile.mkdtemp(prefix="watch-bench-"))
    watches = Watches(WatchStore(scratch / "watches.sqlite"))
    try:
        started = time.perf_counter()
        # No baselines: they would be read off an archive that already holds the "new"
        # articles and hide their findings; without, every candidate is confirmed (the
        # costlier case).
        for question in _questions(count):
            watches.add(question)
        added = time.perf_counter() - started
        prints, sources = article_fingerprints(engine)
        newest = sorted(engine.store.documents.values(), key=lambda d: d.date or "")[-update:]
        fresh = {d.source for d in newest}
        seen = [p for p, s in zip(prints.tolist(), sources, strict=True) if s not in fresh]
        import numpy as np

        watches.store.set_state(checked="before the update",
                                seen=np.array(sorted(seen), dtype=np.int64).tobytes())
        started = time.perf_counter()
        result = check(engine, watches)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        again = check(engine, watches)
        idle = time.perf_counter() - started
        manifest = engine.store.manifest["counts"]
        return {"index": str(index), "documents": manifest["documents"],
                "passages": manifest["passages"], "standing_questions": result.watches,
                "new_articles": result.articles,
                "new_passages": int(engine.store.passage_mask(
                    articles=frozenset(fresh)).sum()),
                "check_seconds": round(seconds, 2), "findings": len(result.findings),
                "no_new_articles_seconds": round(idle, 4), "skipped": again.skipped,
                "adding_seconds": round(added, 2),
                "load_average": [round(x, 1) for x in os.getloadavg()]}
    finally:
        watches.close()
        engine.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _weeks() -> list[list[str]]:
    """news-a's quiz dates grouped by week, in order (two dates can share a week)."""
    dates = sorted({json.loads(line)["date"] for line in
                    (BENCH / "news-a" / "questions.jsonl").read_text().splitlines()})
    weeks: list[list[str]] = []
    for date in dates:
        day = dt.date.fromisoformat(date)
        if weeks and (day - dt.date.fromisoformat(weeks[-1][-1])).days <= 3:
            weeks[-1].append(date)
        else:
            weeks.append([date])
    return weeks


def _holds(text: str, answers: list[str]) -> bool:
    folded = " ".join(text.split()).casefold()
    return any(" ".join(a.split()).casefold() in folded for a in answers)


def news_a(work: Path, build: bool = True) -> dict[str, Any]:
    from index.ingest.pipeline import build_index, update_index
    from qa.engine import Engine
    from qa.watch import Watches, check

    weeks = _weeks()
    assert len(weeks) == 13, weeks
    cut, last = weeks[11][-1], weeks[12][-1]  # week 12's last quiz date; week 13's
    articles = [json.loads(line) for line in
                (BENCH / "news-a" / "archive.jsonl").read_text().splitlines()]
    later = {a["id"] for a in articles if (a["published"] or "") > cut}
    source_docs = BENCH / "news-a" / "docs"
    base_docs, base_index = work / "docs-12", work / "index-12"
    if build:
        shutil.rmtree(work, ignore_errors=True)
        base_docs.mkdir(parents=True)
        for path in source_docs.iterdir():
            if path.stem not in later:
                shutil.copy2(path, base_docs / path.name)
        started = time.perf_counter()
        build_index(base_docs, base_index)
        print(f"built the 12-week index in {time.perf_counter() - started:.0f} s", flush=True)
    # Each run starts from a copy of the 12-week index and its docs plus week 13's.
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    docs, index = run / "docs", run / "index"
    shutil.copytree(base_docs, docs)
    shutil.copytree(base_index, index)
    questions = [json.loads(line) for line in
                 (BENCH / "news-a" / "questions.jsonl").read_text().splitlines()]
    week13 = set(weeks[12])
    watches = Watches.of_index(index)
    engine = Engine(index)
    started = time.perf_counter()
    for q in questions:
        watches.add(q["question"], engine=engine, via=q["id"], as_of=cut)
    added = time.perf_counter() - started
    engine.close()
    by_id = {w.via: w for w in watches.all()}
    for path in source_docs.iterdir():
        if path.stem in later:
            shutil.copy2(path, docs / path.name)
    started = time.perf_counter()
    update_index(docs, index)
    updated = time.perf_counter() - started
    engine = Engine(index)
    unconfirmed = check(engine, watches, as_of=last, dry_run=True, confirm=False)
    result = check(engine, watches, as_of=last)
    engine.close()
    found = {f.watch.id: f for f in result.findings}
    loose = {f.watch.id: f.answer.passages[0] for f in unconfirmed.findings}
    rows = []
    for q in questions:
        watch = by_id[q["id"]]
        finding = found.get(watch.id)
        passage = finding.answer.passages[0] if finding else None
        rows.append({
            "id": q["id"], "week13": q["date"] in week13, "question": q["question"],
            "answers": q["answers"], "finding": passage.citation.source if passage else None,
            "holds_answer": bool(passage and _holds(passage.text, q["answers"])),
            "answerable": any(_holds(a["text"], q["answers"]) for a in articles
                              if a["id"] in later),
            "highlight": passage.highlight.text if passage and passage.highlight else None,
            "unconfirmed": loose[watch.id].citation.source if watch.id in loose else None,
            "unconfirmed_holds": watch.id in loose and _holds(loose[watch.id].text,
                                                              q["answers"]),
        })
    watches.close()
    new = [r for r in rows if r["week13"]]
    old = [r for r in rows if not r["week13"]]
    return {
        "week13_articles": len(later), "adding_seconds": round(added, 1),
        "update_seconds": round(updated, 1),
        "check_seconds": round(result.seconds, 2), "articles_checked": result.articles,
        "week13": {"questions": len(new), "answerable_from_week13": sum(r["answerable"]
                                                                       for r in new),
                   "with_finding": sum(bool(r["finding"]) for r in new),
                   "finding_holds_answer": sum(r["holds_answer"] for r in new),
                   "unconfirmed_with_finding": sum(bool(r["unconfirmed"]) for r in new),
                   "unconfirmed_holds_answer": sum(r["unconfirmed_holds"] for r in new)},
        "earlier": {"questions": len(old), "re_reported": sum(bool(r["finding"]) for r in old),
                    "re_reported_holding_answer": sum(r["holds_answer"] for r in old),
                    "answerable_from_week13": sum(r["answerable"] for r in old),
                    "unconfirmed_re_reported": sum(bool(r["unconfirmed"]) for r in old)},
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("cost", help="200 standing questions over 1,000 new articles")
    one.add_argument("--index", type=Path, required=True)
    one.add_argument("--questions", type=int, default=200)
    one.add_argument("--update", type=int, default=1000, help="new articles (default 1,000)")
    two = commands.add_parser("news-a", help="news-a's week 13 as an update")
    two.add_argument("--work", type=Path, required=True, help="a scratch folder")
    two.add_argument("--no-build", action="store_true",
                     help="reuse the 12-week index a first run built there")
    two.add_argument("--out", type=Path, help="write the whole result (per question) here")
    args = parser.parse_args(argv)
    if args.command == "cost":
        print(json.dumps(cost(args.index, args.questions, args.update), indent=2))
        return
    result = news_a(args.work, build=not args.no_build)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
