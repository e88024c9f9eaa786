"""Serving past one process: two `qa serve` processes over one index folder keep answering
while `qa index update` publishes a new version; both switch to it, no request fails."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import httpx
import pytest
from conftest import NEW_ARTICLE_TEXT, ROOT, start_cli, stop

pytestmark = pytest.mark.slow

TAJI = "How many rockets landed at the Taji base?"


def _start(index, docs, folder, name):
    process, url, _ = start_cli(["serve", "--port", "0", "--index", str(index), "--docs",
                                 str(docs)], folder, r"API at (http://\S+) ", log_name=name)
    return process, url.rstrip("/")


# `qa index update` in a child process; a delta update is forced as the update_path fixture
# forces it in this process (the seeds are far below the size that writes a delta).
UPDATE = """
import os, sys
from index.ingest import delta
if os.environ.get("QA_TEST_UPDATE_PATH") == "delta":
    delta.DELTA_FROM, delta.DELTA_SHARE = 0, 1.0
sys.argv = ["qa", "index", "update", "--docs", sys.argv[1], "--index", sys.argv[2]]
import cli
cli.main()
"""


def test_two_servers_answer_through_an_update_and_both_switch(real_index, tmp_path,
                                                              update_path):
    docs, index = tmp_path / "docs", tmp_path / "index"
    shutil.copytree(real_index[0], docs)
    shutil.copytree(real_index[1], index)
    servers = [_start(index, docs, tmp_path, f"serve{n}") for n in (1, 2)]
    urls = [url for _, url in servers]
    try:
        first = {url: httpx.get(f"{url}/health", timeout=10).json()["version"] for url in urls}
        assert len(set(first.values())) == 1
        results: list[tuple[str, int]] = []
        halt = threading.Event()

        def ask_forever(url):
            with httpx.Client(timeout=60) as client:
                while not halt.is_set():
                    try:
                        status = client.post(f"{url}/ask", json={"question": TAJI}).status_code
                    except httpx.HTTPError as error:
                        status = -1
                        results.append((f"{url} {error!r}", status))
                        continue
                    results.append((url, status))

        askers = [threading.Thread(target=ask_forever, args=(url,)) for url in urls]
        for asker in askers:
            asker.start()
        (docs / "zanzibar.txt").write_text(NEW_ARTICLE_TEXT)
        env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
        env.update(HF_HUB_OFFLINE="1", QA_HOME=str(tmp_path), QA_TEST_UPDATE_PATH=update_path)
        update = subprocess.run(
            [sys.executable, "-c", UPDATE, str(docs), str(index)], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=300)
        assert update.returncode == 0, update.stderr
        published = json.loads((index / (index / "CURRENT").read_text().strip()
                                / "manifest.json").read_text())
        assert (published.get("delta") is not None) == (update_path == "delta")
        deadline = time.monotonic() + 60
        while True:
            health = [httpx.get(f"{url}/health", timeout=10).json() for url in urls]
            if all(h["current"] and h["version"] != first[url]
                   for h, url in zip(health, urls, strict=True)):
                break
            assert time.monotonic() < deadline, health
            time.sleep(0.2)
        time.sleep(1)  # keep asking a little on the new version
        halt.set()
        for asker in askers:
            asker.join(60)
        failed = [r for r in results if r[1] != 200]
        assert failed == [] and len(results) >= 10
        assert {url for url, _ in results} == set(urls)  # both answered throughout
        assert len({h["version"] for h in health}) == 1
        for url in urls:
            answer = httpx.post(f"{url}/ask", json={"question": "When did the Zanzibar ferry "
                                                                "start running again?"},
                                timeout=60).json()
            assert "zanzibar" in [p["citation"]["source"] for p in answer["passages"]]
    finally:
        for process, _ in servers:
            stop(process)
