"""kill -9 a checking process at each step of telling a finding, then restart: the finding
is posted exactly once — except when the kill falls between the post and its record, where
delivery is at least once and the repeat carries the same finding id for the receiver to
drop."""

import os
import subprocess
import sys

import pytest
from conftest import NEW_ARTICLE_TEXT, ROOT, FakeEmbedder, fake_index, word_count
from test_watch import QUESTION, Receiver

from index.ingest.job import BuildOptions
from index.ingest.pipeline import update_index
from qa.engine import Engine
from qa.watch import Watches

CHECKER = r"""
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from conftest import FakeEmbedder
from index.storage import watch_store
from qa import watch
from qa.engine import Engine

index, point = sys.argv[2], sys.argv[3]

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if point == "found":  # the findings are made, not yet recorded
    watch_store.WatchStore.record = die
if point == "recorded":  # recorded with their deliveries pending, nothing sent
    watch.Webhook.send = die
if point == "sent":  # posted, not yet marked sent
    delivered = watch_store.WatchStore.delivered
    watch_store.WatchStore.delivered = lambda self, d, status, error=None: (
        die() if status == "sent" else delivered(self, d, status, error))

engine = Engine(index, embedder=FakeEmbedder())
watches = watch.Watches.of_index(index)
done = watch.run(engine, watches, [watch.Webhook(timeout=5)])
print(len(done.check.findings), len(done.told), flush=True)
"""


def _checker(index, point):
    return subprocess.run([sys.executable, "-c", CHECKER, str(ROOT / "tests"), str(index),
                           point], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("point, posts", [("found", 1), ("recorded", 1), ("sent", 2)])
def test_a_finding_is_posted_once_across_a_kill_and_a_restart(tmp_path, point, posts):
    docs, index = fake_index(tmp_path)
    embedder = FakeEmbedder()
    receiver = Receiver()
    try:
        engine = Engine(index, embedder=embedder)
        watches = Watches.of_index(index)
        watches.add(QUESTION, webhook=receiver.url, engine=engine)
        engine.close()
        (docs / "zanzibar.txt").write_text(NEW_ARTICLE_TEXT)
        update_index(docs, index, BuildOptions(embedder=embedder, count_tokens=word_count))

        killed = _checker(index, point)
        assert killed.returncode == -9, killed.stderr
        assert len(receiver.delivered()) == (1 if point == "sent" else 0)
        restarted = _checker(index, "none")
        assert restarted.returncode == 0, restarted.stderr
        # A restart after "found" checks the version again; after that, it only sends.
        assert restarted.stdout.split() == (["1", "1"] if point == "found" else ["0", "1"])
        delivered = receiver.delivered()
        assert len(delivered) == posts
        assert len({body["finding"] for body in delivered}) == 1  # the receiver's dedup key
        again = _checker(index, "none")
        assert again.stdout.split() == ["0", "0"] and len(receiver.delivered()) == posts
        assert [d.status for d in watches.store.deliveries()] == ["sent"]
        watches.close()
    finally:
        receiver.close()
