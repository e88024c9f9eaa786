"""`qa serve` as a real process while the index is updated, probed, and sent bad requests."""

import os
import re
import shutil
import socket
import subprocess
import sys
import time

import httpx
import pytest
from conftest import NEW_ARTICLE_TEXT, ROOT

pytestmark = pytest.mark.slow


def _env(folder):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update(HF_HUB_OFFLINE="1", QA_HOME=str(folder))
    return env


def _start(folder, *args):
    log = folder / "serve.log"
    with open(log, "w") as err:
        process = subprocess.Popen([sys.executable, "-m", "cli", "serve", *args], cwd=ROOT,
                                   env=_env(folder), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=err)
    return process, log


def _url(process, log, seconds=180):
    deadline = time.monotonic() + seconds
    while not (found := re.search(r"API at (http://\S+) ", log.read_text())):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"qa serve did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return found.group(1)


def _stop(process):
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def live(real_index, tmp_path):
    """A copy of the seed index served by `qa serve`, with its docs folder to update."""
    docs, index = tmp_path / "docs", tmp_path / "index"
    shutil.copytree(real_index[0], docs)
    shutil.copytree(real_index[1], index)
    process, log = _start(tmp_path, "--port", "0", "--docs", str(docs), "--index", str(index))
    try:
        yield _url(process, log), docs, index, tmp_path
    finally:
        _stop(process)


def _update(docs, index, folder):
    done = subprocess.run([sys.executable, "-m", "cli", "index", "update", "--docs", str(docs),
                           "--index", str(index)], cwd=ROOT, env=_env(folder),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_updates_reach_a_running_server_without_restart(live):
    url, docs, index, folder = live
    client = httpx.Client(base_url=url, timeout=30)
    first = client.get("/health").json()
    assert first["current"] is True and first["status"] == "ok"
    for n in range(2):  # the old server died at the second update
        name = f"zanzibar{n}"
        (docs / f"{name}.txt").write_text(NEW_ARTICLE_TEXT.replace("Zanzibar", f"Zanzibar{n}"))
        _update(docs, index, folder)
        deadline = time.monotonic() + 20
        while True:
            answer = client.post("/ask", json={"question": f"When did the Zanzibar{n} ferry "
                                                           "start running again?", "k": 3})
            assert answer.status_code == 200, answer.text
            if name in {p["citation"]["source"] for p in answer.json()["passages"]}:
                break
            assert time.monotonic() < deadline, "the update never reached the server"
            time.sleep(0.2)
    # One answering process has the new version; with --workers (default: the cores) each
    # switches by itself, and /health is current once every one of them has.
    deadline = time.monotonic() + 20
    while not (health := client.get("/health").json())["current"] \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert health["reloads"] == 2 and health["current"] is True
    assert health["version"] != first["version"] and health["model_loads"] == 2  # both encoders
    taji = client.post("/ask", json={"question": "How many rockets landed at the Taji base?"})
    assert taji.status_code == 200 and taji.json()["answered"]


def test_a_huge_body_is_refused_before_it_is_read(live):
    url, *_ = live
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 200000000\r\n\r\n")  # and not one byte of the body
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413")


def test_a_tcp_probe_never_reaches_a_server_that_cannot_answer(real_index, tmp_path):
    # No index yet: the server builds one first (the ONNX export alone takes seconds). While
    # it does, connections are refused; the first one accepted is answered at once.
    docs = tmp_path / "docs"
    shutil.copytree(real_index[0], docs)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process, log = _start(tmp_path, "--port", str(port), "--docs", str(docs), "--index",
                          str(tmp_path / "index"))
    refused = 0
    try:
        deadline = time.monotonic() + 240
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5):
                    break
            except ConnectionRefusedError:
                refused += 1
                time.sleep(0.05)
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
        assert health.status_code == 200 and health.json()["model_loaded"] is True
        assert refused > 0
    finally:
        _stop(process)


def test_binding_beyond_loopback_needs_a_token(tmp_path):
    done = subprocess.run([sys.executable, "-m", "cli", "serve", "--host", "0.0.0.0",
                           "--port", "0"], cwd=ROOT, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: --host 0.0.0.0 accepts other machines: set QA_API_TOKEN (clients then send "
        "Authorization: Bearer TOKEN), or pass --insecure-public to serve without one"]


@pytest.mark.parametrize("json_out", [[], ["--json"]])
def test_a_closed_pipe_ends_ask_quietly(real_index, tmp_path, json_out):
    questions = "".join(f"How many rockets landed at the Taji base? ({n})\n" for n in range(80))
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "ask", "-", *json_out, "--docs", str(real_index[0]),
         "--index", str(real_index[1])], cwd=ROOT, env=_env(tmp_path), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdin.write(questions.encode())
    process.stdin.close()
    assert process.stdout.readline()  # `| head -1`
    process.stdout.close()
    assert process.wait(120) == 0
    assert process.stderr.read() == b""
