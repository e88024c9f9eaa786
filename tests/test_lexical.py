"""The numpy BM25 reader must score exactly as bm25s does over the same saved index."""

import sys

import bm25s
import numpy as np
import pytest
from conftest import DATA

from index.storage import lexical

QUERIES = [
    "How many rockets landed at the Taji base?",
    "harbor budget committee",
    "Which NFL team represented the AFC?",
    "the the the",  # only stopwords
    "Zürich naïve café 東京",
    "cookies cookies cookie",  # repeated terms count again
    "",
    "xyzzy plugh",  # unknown words
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    texts = []
    for path in sorted(DATA.glob("*.txt")):
        texts += [p for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    directory = tmp_path_factory.mktemp("bm25")
    lexical.build(texts, directory)
    return texts, directory


def test_analyzer_matches_bm25s_tokenize():
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    analyzer = lexical.Analyzer()
    for query in QUERIES:
        expected = bm25s.tokenize([query], stopwords="en", stemmer=stemmer, return_ids=False,
                                  show_progress=False)[0]
        assert analyzer.tokenize([query])[0] == [t for t in expected if t]
        assert list(analyzer.terms(query)) == [t for t in expected if t]


def test_numpy_scores_equal_bm25s_scores(saved):
    texts, directory = saved
    ours = lexical.load(directory)
    theirs = bm25s.BM25.load(str(directory), mmap=True, show_progress=False)
    assert isinstance(ours, lexical.Bm25Index) and ours.num_docs == len(texts)
    assert ours.vocab_dict == theirs.vocab_dict
    nonzero = 0
    for query in QUERIES + texts[:20]:
        got = ours.search(query)
        tokens = [t for t in ours.analyzer.tokenize([query])[0] if t in theirs.vocab_dict]
        expected = (theirs.get_scores(tokens) if tokens else np.zeros(len(texts)))
        assert got.dtype == np.float32 and got.shape == (len(texts),)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
        nonzero += bool(got.any())
    assert nonzero >= 20


def test_query_path_does_not_import_bm25s(saved, tmp_path):
    import subprocess

    _, directory = saved
    script = (
        "import sys; from index.storage import lexical; "
        f"r = lexical.load({str(directory)!r}); s = r.search('harbor budget'); "
        "assert s.any(); print(sorted(m for m in ('bm25s', 'scipy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=DATA.parent.parent, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_idf_counts_the_passages_holding_a_term(saved):
    import math

    texts, directory = saved
    index = lexical.load(directory)
    term = index.analyzer.terms("harbor")[0]
    df = sum(term in index.analyzer.terms(text) for text in texts)
    assert df > 0
    n = len(texts)
    assert index.idf(term) == pytest.approx(math.log(1 + (n - df + 0.5) / (df + 0.5)))
    assert index.idf("zzzunknown") == pytest.approx(math.log(1 + (n + 0.5) / 0.5))


def test_unknown_method_is_refused(saved, tmp_path):
    import json
    import shutil

    _, directory = saved
    copy = tmp_path / "bm25"
    shutil.copytree(directory, copy)
    params = json.loads((copy / "params.index.json").read_text())
    params["method"] = "bm25+"
    (copy / "params.index.json").write_text(json.dumps(params))
    with pytest.raises(ValueError, match="bm25s"):
        lexical.load(copy)


def test_streamed_build_is_bm25s_index_bit_for_bit(saved, tmp_path):
    """The streaming builder writes the scores bm25s.BM25().index computes, exactly."""
    texts, directory = saved
    texts = [*texts, "", "the of and", "a b c"]  # empty, only stop words, only 1-letter words
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en",
                                   stemmer=lexical.Analyzer()._stemmer, show_progress=False),
                    show_progress=False)
    retriever.save(str(tmp_path / "bm25s"), show_progress=False)
    lexical.build(iter(texts), tmp_path / "ours")
    theirs, ours = lexical.load(tmp_path / "bm25s"), lexical.load(tmp_path / "ours")
    assert ours.num_docs == theirs.num_docs == len(texts)
    assert set(ours.vocab_dict) == set(theirs.vocab_dict)
    assert len(ours.scores["indptr"]) == len(theirs.scores["indptr"])
    for term, column in theirs.vocab_dict.items():
        if not term:  # bm25s's empty token has no column
            continue
        spans = [(index.scores["indptr"][c], index.scores["indptr"][c + 1])
                 for index, c in ((theirs, column), (ours, ours.vocab_dict[term]))]
        for name in ("data", "indices"):
            (a, b), (c, d) = spans
            assert np.array_equal(theirs.scores[name][a:b], ours.scores[name][c:d]), term
    for query in QUERIES + texts[:20]:
        assert np.array_equal(ours.search(query), theirs.search(query))


def test_the_top_n_is_exactly_the_full_scorings(tmp_path, monkeypatch):
    """``best_positive`` finds the best n through a sampled threshold on long score arrays;
    on real keyword scores (one index and a base + delta, any question, filter and n) the
    passages it picks must be the n best of scoring every passage."""
    rng = np.random.default_rng(3)
    # Zipf-like words: a few in most passages, many rare.
    words = [f"w{i}x" for i in range(300)]
    weights = 1.0 / np.arange(1, 301)
    weights /= weights.sum()
    texts = [" ".join(rng.choice(words, int(rng.integers(3, 30)), p=weights))
             for _ in range(3000)]
    lexical.build(texts, tmp_path / "all")
    lexical.build(texts[:2500], tmp_path / "base")
    lexical.build(texts[2500:], tmp_path / "delta")
    whole = lexical.load(tmp_path / "all")
    stacked = lexical.StackedBm25(lexical.load(tmp_path / "base"),
                                  lexical.load(tmp_path / "delta"))
    monkeypatch.setattr(lexical, "SAMPLED_FROM", 256)  # the sampled way on 3,000 passages
    for index in (whole, stacked):
        for trial in range(150):
            query = " ".join(rng.choice(words, int(rng.integers(1, 7)), p=weights))
            if trial % 5 == 0:
                query += " " + words[int(rng.integers(150, 300))]  # a rare one
            n = int(rng.integers(1, 60))
            allowed = None if trial % 3 else rng.random(3000) < rng.choice([0.9, 0.3, 0.02])
            scores = index.search(query)
            if allowed is not None:
                scores = scores * allowed
            expected = sorted(scores[scores > 0].tolist())[-n:]
            found = lexical.best_positive(scores, n)
            assert len(set(found.tolist())) == len(found)
            np.testing.assert_allclose(sorted(scores[found].tolist()), expected, rtol=2e-6)


@pytest.mark.parametrize("positive", [0, 3, 40, 5_000, 150_000])
def test_best_positive_takes_the_n_largest_positive_scores(positive):
    rng = np.random.default_rng(positive)
    scores = np.zeros(300_000, dtype=np.float32)
    where = rng.choice(len(scores), positive, replace=False)
    scores[where] = rng.integers(1, 50, positive).astype(np.float32)  # many ties
    got = lexical.best_positive(scores, 40)
    assert len(got) == min(40, positive) == len(set(got.tolist()))
    assert (scores[got] > 0).all()
    assert sorted(scores[got].tolist()) == sorted(scores[where].tolist())[-40:]
    assert lexical.best_positive(scores, 0).size == 0


def test_stem_cache_gives_pystemmer_stems_past_its_cap_and_across_threads():
    from concurrent.futures import ThreadPoolExecutor

    import Stemmer

    words = [w for path in sorted(DATA.glob("*.txt"))
             for w in lexical.Analyzer()._words(path.read_text(encoding="utf-8").lower())]
    expected = Stemmer.Stemmer("english").stemWords(words)
    analyzer = lexical.Analyzer()
    analyzer.STEMS = 50  # the cap is reached within the first chunk
    chunks = [words[i : i + 37] for i in range(0, len(words), 37)]
    with ThreadPoolExecutor(4) as pool:
        got = [s for stems in pool.map(analyzer.stem, chunks * 2) for s in stems]
    assert got == expected * 2
    assert 50 <= len(analyzer._stems) < 50 + 37  # filled to the cap, then left alone
