"""Fit the ranking weights by coordinate ascent on MRR, cross-validated by article groups.

`python -m benchmarks.fit [--shared ../shared] [--folds 5] [--out fitted.toml]`

1. Every answerable question of squad-a and news-a (news-a as of each question's date) is
   retrieved once with the shipped config; for each candidate passage the features of the
   weighted score (``qa.ranking.score.LEXICAL`` and ``SEMANTIC``) are recorded, and whether it
   answers (a listed source, holding an answer: ``qa eval``'s rule). Sentence similarities
   are computed for the ``--embed`` best candidates (the shipped ranking embeds fewer, chosen
   by the lexical score; a candidate past them uses its passage cosine, as the ranking does).
2. Coordinate ascent: each weight in turn is moved over a grid around its value, keeping a
   move only when MRR (of the first answering candidate by Σ weight·feature) rises; rounds
   repeat until nothing moves.
3. Cross-validation by article groups: questions are grouped by their first gold article, so
   no article's questions are on both sides; each fold is fitted on the others and scored on
   itself. The figures printed are held-out (fold) and whole-set MRR and hit@1 for the shipped
   and the fitted weights; the whole-set fit is written to ``--out`` as a ``qa eval
   --ranking`` file. Ship it only when the held-out figures say so, and confirm with `qa eval`
   (the re-scoring here leaves out grouping, bylines and the recency pass's tie breaks).
4. With ``--lambdamart`` (needs ``pip install lightgbm``), the alternative the issue names:
   LightGBM's LambdaMART over the same features plus the shipped linear score, trained and
   scored on the same folds, printed beside the linear weights' held-out figures. It is a
   comparison only: nothing it learns is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def collect(index: Path, questions: Path, embed: int, docs: Path | None = None
            ) -> list[dict[str, Any]]:
    """Per answerable question: its group, feature matrix and which candidates answer."""
    from qa.engine import Engine, clean_question
    from qa.evaluate import _fold, _stem, load_questions
    from qa.filters import Filters
    from qa.ranking import analyse, features, score
    from qa.ranking import embed_sentences as embed_top

    engine = Engine(index)
    config = engine.ranking
    rows = []
    archive = engine._archive()
    for q in load_questions(questions):
        if not q.answerable:
            continue
        text, _ = clean_question(q.question)
        filters = Filters(as_of=q.date) if q.date else None
        query = engine.embed_question(text)
        pool = engine.retrieve(text, query, 10, filters)
        if not pool:
            continue
        profile = analyse(text, engine.analyzer, q.date, config.half_life)
        pool = [features.sentence_evidence(profile, archive.idf, engine.analyzer, c, config)
                for c in pool]
        for c in pool:
            c.score = score.weighted(c, profile, config, score.LEXICAL)
        ranked = sorted(pool, key=lambda c: (-c.score, c.id))
        embed_top([c for c in ranked if c.kind != "byline"][:embed], query, archive.embed,
                  config)
        matrix = np.array([[f(c, profile) for _, f in score.LEXICAL + score.SEMANTIC]
                           for c in ranked], dtype=np.float64)
        answers = [_fold(a) for a in q.answers]
        sources = set(q.sources)
        good = np.array([_stem(c.document.source) in sources
                         and any(a in _fold(c.row.text) for a in answers) for c in ranked])
        rows.append({"id": q.id, "group": sorted(q.sources)[0], "x": matrix, "y": good,
                     "ids": np.array([c.id for c in ranked])})
    engine.close()
    return rows


def metrics(rows: list[dict[str, Any]], weights: np.ndarray) -> tuple[float, float]:
    """(MRR, hit@1) of ranking each question's candidates by ``x @ weights``."""
    return ranked_metrics(rows, lambda row: row["x"] @ weights)


def ranked_metrics(rows: list[dict[str, Any]], score: Any) -> tuple[float, float]:
    """(MRR, hit@1) of ranking each question's candidates by ``score(row)``, a score per
    candidate (ties go to the lower passage id)."""
    if not rows:
        return 0.0, 0.0
    reciprocal = hits = 0.0
    for row in rows:
        scores = np.asarray(score(row), dtype=np.float64)
        order = np.lexsort((row["ids"], -scores))
        good = np.flatnonzero(row["y"][order])
        if len(good):
            reciprocal += 1.0 / (good[0] + 1)
            hits += good[0] == 0
    return reciprocal / len(rows), hits / len(rows)


def ascend(rows: list[dict[str, Any]], start: np.ndarray, names: list[str],
           fixed: set[str], rounds: int = 4) -> np.ndarray:
    """Coordinate ascent on MRR from ``start`` (weights named in ``fixed`` stay)."""
    weights = start.copy()
    best = metrics(rows, weights)[0]
    steps = [-0.3, -0.2, -0.1, -0.05, 0.05, 0.1, 0.2, 0.3]
    for _ in range(rounds):
        moved = False
        for i, name in enumerate(names):
            if name in fixed:
                continue
            for step in steps:
                trial = weights.copy()
                trial[i] = round(trial[i] + step, 3)
                value = metrics(rows, trial)[0]
                if value > best + 1e-9:
                    best, weights, moved = value, trial, True
        if not moved:
            break
    return weights


def pooled(results: list[tuple[int, tuple[float, float]]]) -> tuple[float, float]:
    """(MRR, hit@1) over folds given as (questions, (MRR, hit@1)) each."""
    n = sum(k for k, _ in results)
    return (sum(k * m[0] for k, m in results) / n, sum(k * m[1] for k, m in results) / n)


def lambdamart(sets: dict[str, list[dict[str, Any]]], start: np.ndarray, fold_of: Any,
               folds: int) -> None:
    """Held-out MRR and hit@1 of LambdaMART (trained on both sets' other folds) per set."""
    import lightgbm

    def features(row: dict[str, Any]) -> np.ndarray:
        return np.hstack([row["x"], (row["x"] @ start)[:, None]])

    held: dict[str, list[tuple[int, tuple[float, float]]]] = {name: [] for name in sets}
    for fold in range(folds):
        train = [r for rs in sets.values() for r in rs if fold_of(r) != fold and r["y"].any()]
        model = lightgbm.LGBMRanker(
            objective="lambdarank", n_estimators=150, num_leaves=15, learning_rate=0.05,
            min_child_samples=50, subsample=0.8, subsample_freq=1, colsample_bytree=0.8,
            lambdarank_truncation_level=10, verbose=-1,
        ).fit(np.vstack([features(r) for r in train]),
              np.concatenate([r["y"].astype(int) for r in train]),
              group=[len(r["y"]) for r in train])
        for name, rs in sets.items():
            test = [r for r in rs if fold_of(r) == fold]
            held[name].append((len(test), ranked_metrics(
                test, lambda row, model=model: model.predict(features(row)))))
    for name, results in held.items():
        mrr, hit = pooled(results)
        print(f"{name:8} LambdaMART held-out MRR {mrr:.4f} hit@1 {hit:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--squad-index", type=Path, required=True)
    parser.add_argument("--news-index", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--embed", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("fitted.toml"))
    parser.add_argument("--lambdamart", action="store_true",
                        help="also cross-validate LightGBM's LambdaMART on the same folds")
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the collected features here (pickle) and reuse them")
    args = parser.parse_args()

    from qa.ranking import RankingConfig, score

    names = [name for name, _ in score.LEXICAL + score.SEMANTIC]
    shipped = RankingConfig()
    start = np.array([getattr(shipped, n) for n in names], dtype=np.float64)
    began = time.perf_counter()
    if args.cache and args.cache.exists():
        import pickle

        sets = pickle.loads(args.cache.read_bytes())
    else:
        sets = {
            "squad-a": collect(args.squad_index, args.shared / "bench/squad-a/questions.jsonl",
                               args.embed),
            "news-a": collect(args.news_index, args.shared / "bench/news-a/questions.jsonl",
                              args.embed),
        }
        if args.cache:
            import pickle

            args.cache.write_bytes(pickle.dumps(sets))
    print(f"features of {sum(len(r) for r in sets.values()):,} questions in "
          f"{time.perf_counter() - began:.0f} s")
    rows = [r for rs in sets.values() for r in rs]
    fixed = {"fused"}  # the scale: every other weight is relative to the fused score

    def fold_of(row: dict[str, Any]) -> int:
        return int(hashlib.sha256(row["group"].encode()).hexdigest(), 16) % args.folds

    held: dict[str, dict[str, list[Any]]] = {
        name: {"shipped": [], "fitted": []} for name in sets}
    for fold in range(args.folds):
        train = [r for r in rows if fold_of(r) != fold]
        fitted = ascend(train, start, names, fixed)
        for name, rs in sets.items():
            test = [r for r in rs if fold_of(r) == fold]
            held[name]["shipped"].append((len(test), metrics(test, start)))
            held[name]["fitted"].append((len(test), metrics(test, fitted)))
    whole = ascend(rows, start, names, fixed)
    print(f"{'set':8} {'weights':8} {'held-out MRR':>12} {'hit@1':>6} {'whole MRR':>10} "
          f"{'hit@1':>6}")
    for name, rs in sets.items():
        for kind, weights in (("shipped", start), ("fitted", whole)):
            mrr, hit = pooled(held[name][kind])
            wmrr, whit = metrics(rs, weights)
            print(f"{name:8} {kind:8} {mrr:12.4f} {hit:6.3f} {wmrr:10.4f} {whit:6.3f}")
    if args.lambdamart:
        lambdamart(sets, start, fold_of, args.folds)
    values: dict[str, Any] = {n: float(w) for n, w in zip(names, whole, strict=True)}
    fitted_config = replace(shipped, **values)
    changed = {n: v for n, v in asdict(fitted_config).items() if v != getattr(shipped, n)}
    args.out.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in changed.items()))
    print(f"fitted weights (changed): {changed} → {args.out}")


if __name__ == "__main__":
    main()
