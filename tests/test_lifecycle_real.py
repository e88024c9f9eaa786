"""Lifecycle checks that need the real model: the query model file and long questions."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_long_question_through_the_real_query_model(real_index):
    docs, index = real_index
    question = "How many rockets landed at the Taji base? " + "Tell me everything. " * 500
    # --show-weak: the filler may make the evidence look weak; retrieval must still find it.
    result = runner.invoke(app, ["ask", question, "--json", "-k", "3", "--show-weak", "--docs",
                                 str(docs), "--index", str(index)])
    assert result.exit_code == 0, result.stderr
    assert "longer than the model reads (256 word pieces)" in result.stderr
    answer = json.loads(result.stdout)
    assert answer["question"].startswith("How many rockets landed at the Taji base?")
    # Filler dilutes the question: the answer's article must still be among the top 3.
    assert "003_a6f98cea0e1f5c95" in [p["citation"]["source"] for p in answer["passages"]]


@pytest.mark.parametrize("how", ["garble", "truncate"])
def test_corrupt_query_model_is_a_one_line_error(real_index, tmp_path, how):
    docs, index = real_index
    copy = tmp_path / "index"
    shutil.copytree(index, copy)
    onnx = copy / "model.onnx"
    size = onnx.stat().st_size
    with open(onnx, "r+b") as f:
        if how == "garble":
            f.write(bytes(range(256)) * 64)  # same size, garbage header
        else:
            f.truncate(size // 3)
    result = runner.invoke(app, ["ask", "Who fired the rockets?", "--docs", str(docs),
                                 "--index", str(copy)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "build" in result.stderr and ("damaged" in result.stderr
                                         or "query model" in result.stderr)


def test_every_docs_folder_shares_one_export_of_the_query_model(real_index, tmp_path):
    import os

    from qa.app import cache_root

    indexes = []
    for name in ("a", "b"):
        docs = tmp_path / name
        shutil.copytree(real_index[0], docs)
        result = runner.invoke(app, ["index", "build", "--docs", str(docs)])
        assert result.exit_code == 0, result.stderr
        indexes.append(next((cache_root() / "indexes").glob(f"{name}-*")))
    shared = next((cache_root() / "models").iterdir())
    for file in ("model.onnx", "model.onnx.data", "model.onnx.sha256"):
        inodes = {os.stat(place / file).st_ino for place in (shared, *indexes)}
        assert len(inodes) == 1, file  # one copy on disk, linked into both indexes
    answer = runner.invoke(app, ["ask", "How many rockets landed at the Taji base?", "--docs",
                                 str(tmp_path / "b")])
    assert answer.exit_code == 0 and "18 rockets" in answer.stdout
