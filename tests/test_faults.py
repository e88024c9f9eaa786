"""Faults on disk: a full disk, damaged model files, files garbled in place. Each ends in one
clear line and a non-zero exit, with the previous version intact."""

import shutil
import subprocess

import pytest
from conftest import SEEDS, FakeCli, fake_build

from index.storage.layout import current_version


@pytest.fixture
def small_disk(tmp_path):
    """A folder on a tmpfs of a few hundred kB (needs permission to mount; skipped if not)."""

    def mount(size_kb):
        disk = tmp_path / f"disk{size_kb}"
        disk.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs",
                               str(disk)], capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(disk)
        return disk

    mounted: list = []
    yield mount
    for disk in mounted:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _one_line_error(result, *words):
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()  # progress bars may come first
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:], result.stderr
    assert "Traceback" not in result.output
    for word in words:
        assert word in errors[0]


def test_a_full_disk_during_an_update_leaves_the_previous_version(tmp_path, small_disk):
    docs = tmp_path / "docs"
    shutil.copytree(SEEDS, docs)
    index = small_disk(700) / "index"
    fake_build(docs, index)
    before = current_version(index)
    paragraphs = [f"In meeting number {i} the harbor council of district {i * 7} discussed how "
                  f"ferry route {i * 13} should run, and {i % 97} members voted for it."
                  for i in range(6000)]
    (docs / "huge.txt").write_text("Huge Story\n\nMarch 1, 2021\n\n" + "\n\n".join(paragraphs))
    run = FakeCli(docs, index)
    _one_line_error(run(["index", "update"]), "could not write the index", "previous index")
    assert current_version(index) == before
    assert not list(index.glob(".tmp-*"))
    assert run(["ask", "How many rockets landed at the Taji base?"]).exit_code == 0


def test_a_first_build_on_a_disk_too_small_is_one_line(tmp_path, small_disk):
    docs = tmp_path / "docs"
    shutil.copytree(SEEDS, docs)
    index = small_disk(64) / "index"
    _one_line_error(FakeCli(docs, index)(["index", "build"]), "could not write the index")


def _garble(path):
    """Overwrite a file in place with garbage of the same size."""
    size = path.stat().st_size
    path.write_bytes(bytes((i * 31 + 7) % 256 for i in range(size)))


def test_a_garbled_version_file_of_the_right_size_is_found_by_status(seeds):
    docs, index = seeds
    run = FakeCli(docs, index)
    assert run(["index", "status"]).exit_code == 0
    _garble(current_version(index) / "faiss.index")  # not read at query time: flat index
    _one_line_error(run(["index", "status"]), "faiss.index does not match its recorded sha256")
    assert run(["index", "status", "--quick"]).exit_code == 0  # sizes alone cannot tell
    assert run(["index", "build"]).exit_code == 0
    assert run(["index", "status"]).exit_code == 0


@pytest.fixture
def real_copy(real_index, tmp_path):
    docs, index = real_index
    shutil.copytree(index, tmp_path / "index")
    return docs, tmp_path / "index"


@pytest.mark.slow
@pytest.mark.parametrize("garbled", ["model.onnx.data", "model.onnx.sha256"])
def test_a_damaged_query_model_is_reported_and_rebuilt(real_copy, garbled):
    from typer.testing import CliRunner

    import cli

    docs, index = real_copy
    where = ["--docs", str(docs), "--index", str(index)]
    runner = CliRunner()
    _garble(index / garbled)
    _one_line_error(runner.invoke(cli.app, ["index", "status", *where]), "query model")
    if garbled.endswith(".data"):  # a stamp garbled alone does not stop answering
        _one_line_error(runner.invoke(cli.app, ["ask", "Who is McKenzie?", *where]),
                        "query model", "qa index build")
    assert runner.invoke(cli.app, ["index", "build", *where]).exit_code == 0
    assert runner.invoke(cli.app, ["index", "status", *where]).exit_code == 0
    answer = runner.invoke(cli.app, ["ask", "How many rockets landed at the Taji base?", *where])
    assert answer.exit_code == 0 and "18 rockets" in answer.stdout
