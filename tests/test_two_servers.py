"""Serving past one process: two `qa serve` processes over one index folder keep answering
while `qa index update` publishes a new version; both switch to it, no request fails."""

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


def test_two_servers_answer_through_an_update_and_both_switch(real_index, tmp_path):
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
        env.update(HF_HUB_OFFLINE="1", QA_HOME=str(tmp_path))
        update = subprocess.run(
            [sys.executable, "-m", "cli", "index", "update", "--docs", str(docs), "--index",
             str(index)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert update.returncode == 0, update.stderr
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
