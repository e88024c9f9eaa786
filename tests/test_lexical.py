"""The numpy BM25 reader must score exactly as bm25s does over the same saved index."""

import sys

import bm25s
import numpy as np
import pytest
from conftest import DATA

from index import lexical

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
        "import sys; from index import lexical; "
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
