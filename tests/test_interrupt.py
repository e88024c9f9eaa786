"""Stopping a build while its embedding worker processes run (issue 34): Ctrl-C, SIGTERM and
SIGKILL of the real `qa` process with the real model. The workers end with it (they were left
running, and multiprocessing then reported "leaked semaphore objects"); the CLI says one line
and leaves no version behind."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, SEEDS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
    pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 if hasattr(os, "sched_getaffinity")
                       else True, reason="one core: no worker processes"),
]

MODEL_FILES = ["model.onnx", "model.onnx.data", "model.int8.onnx", "model.onnx.sha256"]


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def folder(tmp_path, real_index):
    """The seeds plus a 1,000,000-character article (3,400 passages: a minute of embedding
    here), and an index folder holding the exported model already (no torch, no export)."""
    docs = tmp_path / "docs"
    shutil.copytree(SEEDS, docs)
    words = "lorem ipsum dolor sit amet consectetur "
    (docs / "lorem.txt").write_text((words * (1_000_000 // len(words)))[:1_000_000])
    index = tmp_path / "index"
    index.mkdir()
    for name in MODEL_FILES:
        os.link(real_index[1] / name, index / name)
    return docs, index, tmp_path


@pytest.mark.parametrize("command, signum, group", [
    (["index", "build"], signal.SIGTERM, False),  # `kill`, `timeout`, a service manager
    (["ask", "How many rockets landed at the Taji base?"], signal.SIGINT, True),  # Ctrl-C
    (["index", "build"], signal.SIGKILL, False),
], ids=["build-SIGTERM", "ask-Ctrl-C", "build-SIGKILL"])
def test_stopping_a_build_stops_its_embedding_workers(folder, command, signum, group):
    docs, index, tmp = folder
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update(HF_HUB_OFFLINE="1", QA_HOME=str(tmp / "home"))
    log = tmp / "stderr.txt"
    with open(log, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", *command, "--docs", str(docs), "--index", str(index)],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            start_new_session=True,  # its own process group, as a terminal's job is
            # and Ctrl-C acting, as in a terminal: a shell without job control starts its
            # background commands (a CI runner's, say) with SIGINT ignored, and that is inherited
            preexec_fn=_default_sigint)
    try:
        deadline = time.monotonic() + 180
        workers: list[int] = []
        while len(workers) < 2:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no embedding workers after 180 s"
            time.sleep(0.2)
            workers = [c for c in _children(process.pid) if "spawn_main" in _cmdline(c)]
        helpers = _children(process.pid)  # the workers and multiprocessing's resource tracker
        time.sleep(1)  # embedding under way
        if group:
            os.killpg(process.pid, signum)
        else:
            os.kill(process.pid, signum)
        try:
            code = process.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"qa {command[0]} still running 60 s after signal {signum}")
        deadline = time.monotonic() + 15
        while any(_running(pid) for pid in helpers) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [_cmdline(pid) for pid in helpers if _running(pid)]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert not left, f"still running after qa {command[0]} ended: {left}"
    if signum == signal.SIGKILL:
        return  # nothing of the process ran; its workers noticed and ended
    stderr = log.read_text()
    assert code == {signal.SIGTERM: 143, signal.SIGINT: 130}[signum], stderr
    assert stderr.strip().splitlines()[-1] == \
        {signal.SIGTERM: "terminated", signal.SIGINT: "interrupted"}[signum]
    assert "Traceback" not in stderr and "leaked" not in stderr, stderr
    # The build stopped before its version was published: nothing of it is left.
    assert not (index / "CURRENT").exists()
    assert not [p.name for p in index.iterdir() if p.name.startswith(("v-", ".tmp-"))]
