"""`qa index build --ray` on a real local Ray cluster: two one-CPU nodes on this machine."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from index.storage.reader import Store

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")
runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "seeds"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a worker node, one CPU each, on loopback; stopped afterwards."""
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    subprocess.run([_ray_cli(), "start", "--head", "--port", str(port), "--temp-dir", str(temp),
                    "--include-dashboard=false", *common], check=True, capture_output=True)
    subprocess.run([_ray_cli(), "start", "--address", f"127.0.0.1:{port}", *common],
                   check=True, capture_output=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        subprocess.run([_ray_cli(), "stop", "--force"], capture_output=True)


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    """Enough real sentences (~600 passages, five blocks) for both nodes to get work: the
    seed articles' sentences recombined into 200 distinct articles."""
    import random
    import re

    sentences = []
    for path in sorted(SEEDS.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        sentences += [s for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 6]
    rng = random.Random(7)
    folder = tmp_path_factory.mktemp("docs")
    for n in range(200):
        chosen = rng.sample(sentences, 14)
        body = "\n\n".join(" ".join(chosen[i : i + 2]) for i in range(0, 14, 2))
        (folder / f"article-{n:03d}.txt").write_text(f"Dispatch {n}\n\n{body}\n",
                                                    encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def local(docs, tmp_path_factory):
    index = tmp_path_factory.mktemp("local") / "index"
    result = runner.invoke(app, ["index", "build", "--docs", str(docs), "--index", str(index)])
    assert result.exit_code == 0, result.stderr
    return index


def _passages(index: Path) -> tuple[list[tuple], np.ndarray]:
    store = Store(index)
    try:
        rows = store.db.execute(
            "SELECT d.source, p.start, p.end, p.text FROM passages p JOIN documents d "
            "ON d.id = p.doc ORDER BY p.id").fetchall()
        return [tuple(r) for r in rows], store.load_vectors()[:]
    finally:
        store.close()


def _same_index(ray_index: Path, local_index: Path) -> None:
    rows, vectors = _passages(ray_index)
    expected, expected_vectors = _passages(local_index)
    assert rows == expected
    cosines = (vectors * expected_vectors).sum(axis=1)
    assert cosines.min() >= 0.99, cosines.min()


def test_a_ray_build_holds_the_local_build_and_ran_on_both_nodes(cluster, docs, local,
                                                                  tmp_path):
    index = tmp_path / "index"
    copies = set(Path(tempfile.gettempdir()).glob("qa-encoder-*"))
    result = runner.invoke(app, ["index", "build", "--docs", str(docs), "--index", str(index),
                                 "--ray", cluster])
    assert result.exit_code == 0, result.stderr
    assert "embedded on 2 Ray node(s)" in result.stderr
    # Each actor's copy of the model is gone once its session has read it.
    assert set(Path(tempfile.gettempdir()).glob("qa-encoder-*")) == copies
    _same_index(index, local)
    nodes = Store(index).manifest["ingest"]["nodes"]
    assert len(nodes) == 2 and all(n > 0 for n in nodes.values())
    # The cluster's model, not the one this machine would choose (bf16 where it has AMX).
    assert Store(index).manifest["model"]["precision"] == "int8"
    assert not (index / "precision.json").exists()
    assert sum(nodes.values()) == len(_passages(index)[0])

    # An update embeds only the new article's passages on the cluster.
    extra = SEEDS / "003_a6f98cea0e1f5c95.txt"
    shutil.copy(extra, docs / extra.name)
    try:
        result = runner.invoke(app, ["index", "update", "--docs", str(docs), "--index",
                                     str(index), "--ray", cluster])
        assert result.exit_code == 0, result.stderr
        manifest = Store(index).manifest
        new = sum(manifest["ingest"]["nodes"].values())
        assert 0 < new < manifest["counts"]["passages"] / 5
        assert f"embedded {new} new passage(s)" in result.stderr
    finally:
        (docs / extra.name).unlink()


def _encoder_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"MapBatches(Encoder)" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def test_a_worker_killed_mid_build_is_retried_and_the_index_is_whole(cluster, docs, local,
                                                                     tmp_path):
    index = tmp_path / "index"
    # As a user's shell: not the log level the in-process builds above set for themselves.
    env = {k: v for k, v in os.environ.items() if k != "RAY_BACKEND_LOG_LEVEL"}
    env["HF_HUB_OFFLINE"] = "1"
    earlier = set(_encoder_pids())  # actors of the other tests' builds
    build = subprocess.Popen(
        [sys.executable, "-m", "cli", "index", "build", "--docs", str(docs), "--index",
         str(index), "--ray", cluster],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and build.poll() is None and time.monotonic() < deadline:
        pids = [pid for pid in _encoder_pids() if pid not in earlier]
        if pids:
            time.sleep(2)  # mid-block: the actor is embedding
            try:
                os.kill(pids[0], signal.SIGKILL)
                killed = pids[0]
            except ProcessLookupError:
                earlier.add(pids[0])
        time.sleep(0.2)
    out, err = build.communicate(timeout=300)
    assert killed is not None, "no encoder actor ever ran"
    # Ray restarts the actor and retries its block: the build completes and is whole.
    assert build.returncode == 0, err
    assert "Traceback" not in err
    # Ray's warning that a restarted actor might find its constructor arguments gone.
    assert "constructor arguments in the object store" not in err
    # Nor the line Ray's core logs about the log level that hides it.
    assert "Set ray log level" not in err and "logging.cc" not in err
    _same_index(index, local)


def test_no_cluster_is_a_one_line_error(docs, tmp_path):
    if ray.is_initialized():
        ray.shutdown()
    index = tmp_path / "index"
    result = runner.invoke(app, ["index", "build", "--docs", str(docs), "--index", str(index),
                                 "--ray", f"127.0.0.1:{_free_port()}"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "cannot reach a Ray cluster" in result.stderr and "ray start" in result.stderr
    assert not (index / "CURRENT").exists()


def _shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("qa-shard-*.parquet"))


def test_shards_assemble_the_index_and_a_stopped_build_resumes_from_them(cluster, docs, local,
                                                                         tmp_path):
    """--shards: the nodes write Parquet shards, the head assembles the same index. A build
    killed after some shards were written leaves them; the next build embeds only the rest,
    and once published removes them."""
    import pyarrow.parquet as pq

    shards, index = tmp_path / "shards", tmp_path / "index"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    build = subprocess.Popen(
        [sys.executable, "-m", "cli", "index", "build", "--docs", str(docs), "--index",
         str(index), "--ray", cluster, "--shards", str(shards)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while build.poll() is None and time.monotonic() < deadline and len(_shards(shards)) < 3:
        time.sleep(0.1)
    build.kill()
    build.communicate(timeout=60)
    left = _shards(shards)
    assert len(left) >= 3, "the build ended before it wrote three shards"
    assert not (index / "CURRENT").exists()
    held = sum(pq.read_metadata(path).num_rows for path in left)
    table = pq.read_table(left[0])
    assert table.column_names == ["hash", "vector", "node"]
    assert table.column("vector").type.list_size == 384

    result = runner.invoke(app, ["index", "build", "--docs", str(docs), "--index", str(index),
                                 "--ray", cluster, "--shards", str(shards)])
    assert result.exit_code == 0, result.stderr
    _same_index(index, local)
    total = len(_passages(index)[0])
    manifest = Store(index).manifest
    embedded = sum(manifest["ingest"]["nodes"].values())
    reused = int(result.stderr.split(" passage(s) came from the shards")[0].split()[-1])
    # Every passage came from a shard the first build left, or was embedded now: none twice.
    assert 0 < reused <= held and embedded + reused == total
    assert _shards(shards) == [] and not list(shards.glob(".*.tmp"))


def test_shards_without_ray_is_a_one_line_error(docs, tmp_path):
    result = runner.invoke(app, ["index", "build", "--docs", str(docs), "--index",
                                 str(tmp_path / "index"), "--shards", str(tmp_path / "s")])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "--ray" in result.stderr
    assert not (tmp_path / "index" / "CURRENT").exists()
