"""`qa serve --workers 2` as a real process on loopback: two answering processes behind one
listening socket both answer, and both move to the version `qa index update` publishes."""

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import NEW_ARTICLE_TEXT, ROOT, start_cli, stop

pytestmark = pytest.mark.slow

TAJI = "How many rockets landed at the Taji base?"
ZANZIBAR = "When did the Zanzibar ferry start running again?"


def _answered(health):
    return {p["pid"]: p["answered"] for p in health["processes"]}


def _ask_concurrently(url, question, times=12, clients=4):
    def ask(_):
        return httpx.post(f"{url}/ask", json={"question": question, "k": 3}, timeout=60)

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(ask, range(times)))


def test_two_answering_processes_answer_and_both_follow_an_update(real_index, tmp_path):
    docs, index = tmp_path / "docs", tmp_path / "index"
    shutil.copytree(real_index[0], docs)
    shutil.copytree(real_index[1], index)
    process, url, log = start_cli(["serve", "--port", "0", "--workers", "2", "--docs",
                                   str(docs), "--index", str(index)], tmp_path,
                                  r"API at (http://\S+) ", log_name="serve.log")
    try:
        health = httpx.get(f"{url}/health", timeout=10).json()
        pids = {p["pid"] for p in health["processes"]}
        assert len(pids) == 2 and process.pid not in pids  # two processes of their own
        assert health["current"] and health["model_loads"] == 2 and health["workers"] == 4
        first = health["version"]
        replies = _ask_concurrently(url, TAJI)
        assert [r.status_code for r in replies] == [200] * 12
        assert all(r.json()["answered"] for r in replies)
        before = _answered(httpx.get(f"{url}/health", timeout=10).json())
        assert set(before) == pids and all(n > 0 for n in before.values())

        (docs / "zanzibar.txt").write_text(NEW_ARTICLE_TEXT)
        env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
        env.update(HF_HUB_OFFLINE="1", QA_HOME=str(tmp_path))
        update = subprocess.run([sys.executable, "-m", "cli", "index", "update", "--docs",
                                 str(docs), "--index", str(index)], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=300)
        assert update.returncode == 0, update.stderr
        deadline = time.monotonic() + 60
        while not (health := httpx.get(f"{url}/health", timeout=10).json())["current"]:
            assert time.monotonic() < deadline, health
            time.sleep(0.2)
        assert health["version"] != first and health["status"] == "ok"
        assert {p["version"] for p in health["processes"]} == {health["version"]}
        assert {p["pid"] for p in health["processes"]} == pids  # switched, not restarted
        replies = _ask_concurrently(url, ZANZIBAR)
        for reply in replies:
            assert reply.status_code == 200
            assert "zanzibar" in [p["citation"]["source"] for p in reply.json()["passages"]]
        after = _answered(httpx.get(f"{url}/health", timeout=10).json())
        assert all(after[pid] > before[pid] for pid in pids)  # both answered from it
        assert "Traceback" not in log.read_text()
    finally:
        stop(process)
    deadline = time.monotonic() + 20  # the answering processes stop with the server
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline
        time.sleep(0.1)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
