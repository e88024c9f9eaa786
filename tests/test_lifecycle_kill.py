"""kill -9 a writer at chosen and at random points: the previous index must still load and
answer, the lock must not outlive the writer, and the next writer must clean up after it.

The writer is a separate Python process running the library with the FakeEmbedder, so these
are fast; scripts/stress_kill.py does the same 20+ times against the real `qa index` CLI.
"""

import random
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, FakeEmbedder, word_count
from test_lifecycle import NEW_ARTICLE

from index.ingest.job import BuildOptions
from index.ingest.pipeline import update_index
from index.storage.layout import current_version, writer_lock
from index.storage.reader import Store
from qa.engine import Engine

WRITER = r"""
import os, signal, sys, time
sys.path.insert(0, sys.argv[1])
from conftest import FakeEmbedder, word_count
from index.ingest import delta
from index.ingest.job import BuildOptions
from index.ingest.pipeline import update_index
from index.storage import publish

docs, index, point = sys.argv[2], sys.argv[3], sys.argv[4]
if os.environ.get("QA_TEST_UPDATE_PATH") == "delta":
    delta.DELTA_FROM, delta.DELTA_SHARE = 0, 1.0

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def progress(stage, done, total):
    if (point, stage) in (("embedding", "embedding"), ("keyword", "keyword index")) and done == 0:
        die()

if point == "rename":
    rename = os.rename
    publish.os.rename = lambda a, b: die() if ".tmp-" in str(a) else rename(a, b)
if point == "current":
    replace = os.replace
    publish.os.replace = lambda a, b: die() if str(b).endswith("CURRENT") else replace(a, b)
if point == "prune":
    publish.prune_versions = lambda *a, **k: die()

class Slow(FakeEmbedder):
    def embed_batch(self, texts):
        time.sleep(0.01 * len(texts))
        return super().embed_batch(texts)

print("ready", flush=True)
update_index(docs, index, BuildOptions(embedder=Slow(), count_tokens=word_count,
                                       progress=progress))
"""

# Every test here runs with both kinds of update (conftest.update_path).
pytestmark = pytest.mark.usefixtures("update_path")

# (kill point, whether the new version is live afterwards)
POINTS = [("embedding", False), ("keyword", False), ("rename", False), ("current", False),
          ("prune", True)]



def _writer(docs, index, point):
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(ROOT / "tests"), str(docs), str(index), point],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _check_loads_and_answers(index):
    with writer_lock(index):  # a dead writer's flock is gone with its process
        pass
    engine = Engine(index, embedder=FakeEmbedder())
    answer = engine.ask("How many rockets landed at the Taji base?")
    sources = {d.source for d in engine.store.documents.values()}
    engine.close()
    assert answer.passages and any("18 rockets" in p.text for p in answer.passages)
    return sources


def _next_writer_cleans_up(docs, index):
    report = update_index(docs, index, BuildOptions(embedder=FakeEmbedder(), count_tokens=word_count))
    assert "zanzibar" in _check_loads_and_answers(index)
    assert not list(index.glob(".tmp-*")) and not list(index.glob(".*.tmp"))
    assert [v.name for v in index.glob("v-*")] == [current_version(index).name]  # no reader
    return report


@pytest.mark.parametrize("point, switched", POINTS)
def test_kill_at_each_stage_leaves_a_working_index(seeds, point, switched):
    docs, index = seeds
    before = current_version(index).name
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE)
    proc = _writer(docs, index, point)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err

    assert (current_version(index).name != before) == switched
    sources = _check_loads_and_answers(index)
    assert ("zanzibar" in sources) == switched
    if point in ("keyword", "rename"):
        assert list(index.glob(".tmp-*")), "the half-written version should be left in .tmp-*"
    if point == "current":
        assert list(index.glob(".CURRENT.*.tmp"))
    _next_writer_cleans_up(docs, index)


def test_kill_at_random_moments(seeds):
    docs, index = seeds
    rng = random.Random(6)
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE)
    for round_no in range(4):
        (docs / "zanzibar.txt").write_text(NEW_ARTICLE + f"\nCorrection {round_no}.\n" * 30)
        proc = _writer(docs, index, "random")
        proc.stdout.readline()  # imports done: the writer is about to start
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        _check_loads_and_answers(index)
        assert len(list(index.glob(".tmp-*"))) <= 1 and len(list(index.glob("v-*"))) <= 3
    _next_writer_cleans_up(docs, index)
    assert Store(index).files["zanzibar"]["size"] == (docs / "zanzibar.txt").stat().st_size


def test_leftovers_of_any_shape_are_removed_by_the_next_writer(seeds):
    docs, index = seeds
    (index / ".tmp-v-killed").mkdir()
    (index / ".tmp-v-killed" / "passages.sqlite").write_bytes(b"half")
    (index / ".CURRENT.123.tmp").write_text("v-x")
    (index / ".model.onnx.abc.tmp").mkdir()  # an export's scratch folder
    (index / ".model.onnx.abc.tmp" / "raw.onnx").write_bytes(b"x")
    (index / ".model.onnx.def.tmp").write_bytes(b"x")
    (index / "v-orphan-never-switched").mkdir()
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE)
    _next_writer_cleans_up(docs, index)
    assert not (index / "v-orphan-never-switched").exists()
