"""The cold query path: what `qa --help` and `qa ask` import (no timings: see benchmarks/)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from index.storage.vectors import FaissIndex, NumpyIndex, build_faiss

HEAVY = ("numpy", "faiss", "onnxruntime", "tokenizers", "torch", "sentence_transformers",
         "transformers", "bm25s", "scipy", "pydantic")


def test_help_imports_no_heavy_module():
    script = (
        "import sys\nsys.argv = ['qa', '--help']\nimport cli\n"
        "try:\n    cli.app()\nexcept SystemExit:\n    pass\n"
        f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    assert result.stdout.strip().endswith("LOADED []")


@pytest.mark.slow
def test_ask_answers_with_torch_bm25s_and_faiss_unimportable(real_index, tmp_path):
    docs, index = real_index
    blocked = tmp_path / "blocked"
    for name in ("torch", "sentence_transformers", "transformers", "onnx", "bm25s", "scipy",
                 "faiss", "pydantic"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocked), str(ROOT)]),
           "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "cli", "ask", "How many rockets landed at the Taji base?",
         "--json", "-k", "3", "--docs", str(docs), "--index", str(index)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["passages"][0]["citation"]["source"] == "003_a6f98cea0e1f5c95"
    assert "18 rockets" in answer["passages"][0]["text"]


def _clustered(n, d, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(200, d)).astype(np.float32)
    x = centres[rng.integers(0, 200, n)] + 0.6 * rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _recall(approx, exact):
    return np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact)])


def test_ivf_above_threshold_with_high_recall_and_exact_scores(tmp_path):
    n, d = FaissIndex.IVF_THRESHOLD + 5_000, 32
    vectors = _clustered(n, d)
    queries = _clustered(100, d, seed=1)
    index = build_faiss(vectors, step=7_000)
    params = index.params()
    assert params["kind"] == "faiss-ivf-pq-refine" and params["nlist"] == FaissIndex.nlist_for(n)
    assert params["codes"] == d // 4 and params["nprobe"] == FaissIndex.nprobe_for(params["nlist"])
    assert index.count == n
    exact_scores, exact = NumpyIndex(d, vectors).search(queries, 10)
    scores, approx = index.search(queries, 10)
    assert _recall(approx, exact) >= 0.98, _recall(approx, exact)
    # Re-scored candidates carry exact inner products, best first.
    np.testing.assert_allclose(scores, np.einsum("qkd,qd->qk", vectors[approx], queries),
                               atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    index.save(tmp_path / "faiss.index")
    mapped = FaissIndex.load(tmp_path / "faiss.index", mmap=True, vectors=vectors)
    assert mapped.params() == params
    assert (mapped.search(queries, 10)[1] == approx).all()
    with pytest.raises(RuntimeError, match="float vectors"):
        FaissIndex.load(tmp_path / "faiss.index").search(queries, 10)
    # Opened in the background: the same index once read, its count known before.
    opened = FaissIndex.opening(tmp_path / "faiss.index", vectors, ValueError("damaged"))
    assert opened.count == n
    assert (opened.search(queries, 10)[1] == approx).all() and opened.params() == params


def test_an_index_read_in_the_background_that_is_damaged_fails_at_its_first_search(tmp_path):
    n, d = FaissIndex.IVF_THRESHOLD + 1_000, 32
    vectors = _clustered(n, d)
    build_faiss(vectors).save(tmp_path / "faiss.index")
    # Holding other rows than the stored vectors: damaged, not a wrong answer.
    fewer = FaissIndex.opening(tmp_path / "faiss.index", vectors[:-1], ValueError("rows"))
    assert fewer.count == n - 1
    with pytest.raises(ValueError, match="rows"):
        fewer.search(vectors[:2], 5)
    # Garbled in place (the size a manifest checks is unchanged).
    data = bytearray((tmp_path / "faiss.index").read_bytes())
    data[:64] = bytes(64)
    (tmp_path / "faiss.index").write_bytes(bytes(data))
    garbled = FaissIndex.opening(tmp_path / "faiss.index", vectors, ValueError("garbled"))
    with pytest.raises(ValueError, match="garbled"):
        garbled.search(vectors[:2], 5)


def test_more_results_than_the_refine_floor_keep_their_recall():
    n, d = FaissIndex.IVF_THRESHOLD + 5_000, 32
    vectors = _clustered(n, d)
    queries = _clustered(20, d, seed=2)
    index = build_faiss(vectors)
    k = FaissIndex.REFINE_MIN // FaissIndex.REFINE_PER_RESULT + 25  # depth grows past the floor
    _, exact = NumpyIndex(d, vectors).search(queries, k)
    _, approx = index.search(queries, k)
    assert approx.shape == (20, k) and (approx >= 0).all()
    assert _recall(approx, exact) >= 0.95


def test_ivf_flat_indexes_of_earlier_versions_are_still_searched(tmp_path):
    import faiss

    n, d = FaissIndex.IVF_THRESHOLD + 1_000, 32
    vectors = _clustered(n, d)
    old = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, 128, faiss.METRIC_INNER_PRODUCT)
    old.train(vectors[:8_192])
    old.add(vectors)
    faiss.write_index(old, str(tmp_path / "faiss.index"))
    loaded = FaissIndex.load(tmp_path / "faiss.index", mmap=True)
    assert loaded.params() == {"kind": "faiss-ivf-flat", "nlist": 128, "nprobe": 8}
    _, exact = NumpyIndex(d, vectors).search(vectors[:50], 10)
    assert _recall(loaded.search(vectors[:50], 10)[1], exact) >= 0.9


def test_small_collections_stay_exact():
    vectors = _clustered(1_000, 16)
    index = build_faiss(vectors)
    assert index.params() == {"kind": "faiss-flat"}
    scores, ids = index.search(vectors[:5], 3)
    s2, i2 = NumpyIndex(16, vectors).search(vectors[:5], 3)
    assert (ids == i2).all() and (ids[:, 0] == np.arange(5)).all()
    np.testing.assert_allclose(scores, s2, atol=1e-5)


@pytest.mark.parametrize(("n", "nlist"), [(20_000, 256), (100_000, 512), (1_000_000, 2048)])
def test_nlist_grows_with_the_collection(n, nlist):
    assert FaissIndex.nlist_for(n) == nlist
    assert FaissIndex.nprobe_for(nlist) == max(8, nlist // 4)


def test_numpy_index_partial_sort_matches_full_sort():
    vectors = _clustered(3_000, 24)
    index = NumpyIndex(24, vectors)
    scores, ids = index.search(vectors[:7] * 0.9, 50)
    full = vectors[:7] * 0.9 @ vectors.T
    expected = np.argsort(-full, axis=1, kind="stable")[:, :50]
    assert (ids == expected).all() and ids.dtype == np.int64
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, axis=1), rtol=1e-6)


def test_numpy_index_single_query_path_matches_matrix_product():
    vectors = _clustered(2_000, 24)
    index = NumpyIndex(24, vectors)
    for q in vectors[:3] * 0.7:
        scores, ids = index.search(q, 20)  # one query: the einsum path
        batch_scores, batch_ids = index.search(np.vstack([q] * 6), 20)  # BLAS path
        assert (ids[0] == batch_ids[0]).all()
        np.testing.assert_allclose(scores[0], batch_scores[0], rtol=1e-5, atol=1e-6)


def test_a_store_above_the_threshold_searches_its_quantised_index(tmp_path):
    from index.storage.manifest import FORMAT_VERSION
    from index.storage.publish import new_version, write_version
    from index.storage.reader import Store
    from index.storage.rows import Build, DocumentRow, PassageRow

    n, d = FaissIndex.IVF_THRESHOLD + 500, 32
    vectors = _clustered(n, d, seed=3)
    build = Build(new_version(tmp_path))
    build.add(DocumentRow(0, "a", "a.txt", "0" * 64, None, None, False, None, None),
              [PassageRow(i, 0, 10 * i, 10 * i + 9, "body", f"passage {i:05d}", (), f"h{i}")
               for i in range(n)])
    manifest = {"format_version": FORMAT_VERSION, "counts": {"documents": 1, "passages": n}}
    write_version(tmp_path, build, vectors, manifest)
    store = Store(tmp_path)
    assert store.manifest["vector_index"]["kind"] == "faiss-ivf-pq-refine"
    scores, ids = store.vectors.search(vectors[[7, 20_400]], 3)
    assert ids[:, 0].tolist() == [7, 20_400]
    assert store.load_vectors().codes.dtype == np.int8  # re-scored from int8, in float32
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=5e-3)  # int8 codes, 32 dimensions
    store.close()


def test_int8_vectors_with_scales_score_like_float32(tmp_path):
    from index.storage import vectors as vec

    rng = np.random.default_rng(5)
    full = rng.standard_normal((vec._BLOCK * 2 + 100, 384)).astype(np.float32)
    full /= np.linalg.norm(full, axis=1, keepdims=True)
    writer = vec.VectorWriter(tmp_path, *full.shape)
    writer[:] = full[::-1]
    writer[: len(full) // 2] = full[: len(full) // 2]  # slices, index lists and single rows
    writer[list(range(len(full) // 2, len(full)))] = full[len(full) // 2 :]
    writer[7] = full[7]
    writer.flush()
    del writer
    stored = vec.open_vectors(tmp_path)
    assert isinstance(stored, vec.Quantized) and stored.codes.dtype == np.int8
    assert (tmp_path / "vectors.npy").stat().st_size < full.nbytes / 3.9
    q = full[3]
    np.testing.assert_allclose(vec.dot(stored, q), full @ q, atol=3e-3)
    rows = np.array([len(full) - 1, 3, 0, vec._BLOCK])
    np.testing.assert_allclose(vec.dot(stored, q, rows), full[rows] @ q, atol=3e-3)
    np.testing.assert_allclose(stored[rows], full[rows], atol=3e-3)
    _, ids = NumpyIndex(384, stored).search(q, 3)
    assert ids[0, 0] == 3
    # Copying rows of an earlier version keeps their codes exactly.
    (tmp_path / "next").mkdir()
    again = vec.VectorWriter(tmp_path / "next", 3, 384)
    again.copy([0, 2], stored, [5, 9])
    again[1] = full[1]
    again.flush()
    copied = vec.open_vectors(tmp_path / "next")
    assert (copied.codes[[0, 2]] == stored.codes[[5, 9]]).all()
    assert (copied.scales[[0, 2]] == stored.scales[[5, 9]]).all()
    # An index of format 3 (float32) reads as it is.
    old = tmp_path / "old"
    old.mkdir()
    np.save(old / "vectors.npy", full)
    np.testing.assert_allclose(vec.dot(vec.open_vectors(old), q), full @ q, atol=1e-6)


def test_a_filtered_search_of_a_quantised_index_returns_only_allowed_rows():
    n, d = FaissIndex.IVF_THRESHOLD + 5_000, 32
    vectors = _clustered(n, d, seed=11)
    index = build_faiss(vectors)
    assert index.quantised
    allowed = np.zeros(n, dtype=bool)
    allowed[::3] = True
    queries = vectors[[3, 4, 5, 6000]]
    scores, ids = index.search(queries, 10, allowed=allowed)
    assert (ids >= 0).all() and allowed[ids].all()
    assert ids[0, 0] == 3 and ids[3, 0] == 6000  # allowed rows find themselves
    assert ids[1, 0] != 4 and ids[2, 0] != 5  # rows not allowed never come back
    # Against exact search over the allowed rows only.
    exact = NumpyIndex(d, vectors[allowed])
    _, truth = exact.search(queries, 10)
    truth = np.flatnonzero(allowed)[truth]
    assert _recall(ids, truth) >= 0.8
    np.testing.assert_allclose(scores, (queries[:, None, :] * vectors[ids]).sum(-1), atol=5e-3)
