"""The model is named by the index: a build with another sentence-transformers model (here a
two-layer BERT made from a config, with the MiniLM tokenizer) records it in the manifest, and
the engine loads what the manifest names, so indexes of two models answer in one process; an
index whose model files are missing or altered says so in one line; an index from before
models were recorded opens as the default model."""

import json
import shutil

import numpy as np
import pytest
from conftest import SEEDS
from typer.testing import CliRunner

from cli import app
from index.errors import ModelError
from index.ingest.job import BuildOptions
from index.ingest.pipeline import build_index
from index.models.spec import DEFAULT, describe, package_folder
from index.storage.layout import current_version
from index.storage.reader import Store
from qa.engine import Engine

TAJI = "How many rockets landed at the Taji base?"
runner = CliRunner()
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A sentence-transformers folder: a randomly initialised two-layer BERT (hidden size
    32, CLS pooling, a 128-piece window) with the default model's tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=512)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json"):
        shutil.copyfile(package_folder() / name, folder / name)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"}]))
    (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": True,
        "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False}))
    return folder


@pytest.fixture(scope="session")
def tiny_index(tiny_model, tmp_path_factory):
    """(docs, index): the seeds indexed with the tiny model (read-only for tests)."""
    root = tmp_path_factory.mktemp("tiny-index")
    docs = root / "docs"
    shutil.copytree(SEEDS, docs)
    build_index(docs, root / "index", BuildOptions(model=describe(tiny_model)))
    return docs, root / "index"


def test_a_folder_model_is_described_from_its_own_configuration(tiny_model):
    spec = describe(tiny_model)
    assert spec.name == str(tiny_model.resolve()) and not spec.default
    assert (spec.dimension, spec.window, spec.pooling, spec.passage_budget) == (32, 128, "cls", 72)
    files = dict(spec.files)
    assert {"model.safetensors", "config.json", "tokenizer.json",
            "1_Pooling/config.json"} <= files.keys()
    assert spec.key.startswith(spec.name + "@") and spec.export_name.endswith("-cls")


def test_two_indexes_built_with_two_models_answer_in_one_process(real_index, tiny_index):
    (_, default_index), (_, tiny) = real_index, tiny_index
    manifest = Store(tiny).manifest
    assert manifest["model"]["dimension"] == 32 and manifest["model"]["pooling"] == "cls"
    assert manifest["chunking"]["max_tokens"] == 72 and manifest["model"]["files"]
    minilm, small = Engine(default_index), Engine(tiny)
    try:
        alone = minilm.ask(TAJI).to_dict()
        assert small.model.dimension == 32 and minilm.model.same_model(DEFAULT)
        assert small.embed_question(TAJI).shape == (32,)
        assert minilm.embed_question(TAJI).shape == (384,)
        answer = small.ask(TAJI)
        assert answer.passages and "18 rockets" in " ".join(p.text for p in answer.passages)
        # Passages of the tiny model's index fit its budget, the default's are longer.
        tokens = small._tokenizer()
        from index.models.embedder import load_tokenizer

        pieces = load_tokenizer(tokens)
        longest = max(len(pieces.encode(p.text).ids)
                      for p in Store(tiny).all_passages())
        assert longest <= 72 + 2
        # Each engine answers as it does alone, whatever the other answered between.
        assert minilm.ask(TAJI).to_dict() == alone
        assert np.allclose(small.embed_question(TAJI),
                           Engine(tiny).embed_question(TAJI), atol=1e-6)
    finally:
        minilm.close()
        small.close()


def test_the_cli_builds_with_a_model_and_says_in_one_line_when_its_files_change(
        tiny_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    docs = tmp_path / "docs"
    shutil.copytree(SEEDS, docs)
    where = ["--docs", str(docs), "--index", str(tmp_path / "index")]
    built = runner.invoke(app, ["index", "build", *where, "--model", str(model)])
    assert built.exit_code == 0, built.stderr
    status = runner.invoke(app, ["index", "status", *where, "--json"])
    assert json.loads(status.stdout)["model"] == str(model.resolve())
    asked = runner.invoke(app, ["ask", TAJI, *where, "--json"])
    assert asked.exit_code == 0 and json.loads(asked.stdout)["passages"], asked.stderr

    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 1
    weights.write_bytes(bytes(data))
    for command in (["ask", TAJI], ["index", "update"], ["index", "status"]):
        result = runner.invoke(app, [*command, *where])
        assert result.exit_code == 1, (command, result.stderr)
        assert "has changed since the index was built" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr

    shutil.rmtree(model)
    for command in (["ask", TAJI], ["index", "update"]):
        result = runner.invoke(app, [*command, *where])
        assert result.exit_code == 1 and "is missing" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_a_model_that_is_not_a_sentence_encoder_is_refused_in_one_line(tmp_path):
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    with pytest.raises(ModelError, match="no weights"):
        describe(tmp_path)
    result = runner.invoke(app, ["index", "build", "--docs", str(SEEDS), "--index",
                                 str(tmp_path / "index"), "--model", str(tmp_path / "absent")])
    assert result.exit_code == 1 and "cannot find the model" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_index_from_before_models_were_recorded_opens_as_the_default_model(real_index,
                                                                           tmp_path):
    _, index = real_index
    old = tmp_path / "index"
    shutil.copytree(index, old)
    path = current_version(old) / "manifest.json"
    manifest = json.loads(path.read_text())
    keep = ("name", "dimension", "sha256", "normalized", "max_tokens", "precision", "onnx")
    manifest["model"] = {k: v for k, v in manifest["model"].items() if k in keep}
    path.write_text(json.dumps(manifest))
    before, after = Engine(index), Engine(old)
    try:
        assert after.model == DEFAULT
        assert after.ask(TAJI).to_dict() == before.ask(TAJI).to_dict()
    finally:
        before.close()
        after.close()
