"""Answering in several processes (`qa serve --workers N`): every process answers, each follows
index updates by itself, and the version recorded with an answer is the one that gave it."""

import threading
import time

import pytest
from conftest import NEW_ARTICLE_TEXT, FakeEmbedder, fake_build

from qa.engine import Engine
from qa.service import Service

TAJI = "How many rockets landed at the Taji base?"


def _wait_until(check, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def processes(seeds):
    docs, index = seeds
    service = Service(Engine(index, embedder=FakeEmbedder()), workers=1, processes=2,
                      reload_every=0.05)
    yield docs, index, service
    service.close()


def test_every_process_answers_and_all_follow_an_update(processes):
    docs, index, service = processes
    health = service.health()
    pids = {p["pid"] for p in health["processes"]}
    assert len(pids) == 2 and health["current"] and health["model_loaded"]
    first = health["version"]
    answers = []

    def ask():
        for _ in range(6):
            answers.append(service.ask(TAJI, k=3))

    askers = [threading.Thread(target=ask) for _ in range(4)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join(60)
    assert len(answers) == 24 and all(a.answered for a in answers)
    assert {a.version for a in answers} == {first}
    assert all(p["answered"] > 0 for p in service.health()["processes"])

    (docs / "zanzibar.txt").write_text(NEW_ARTICLE_TEXT)
    fake_build(docs, index, reuse_vectors=True)
    assert _wait_until(lambda: service.health()["current"])
    health = service.health()
    assert health["version"] != first
    assert {p["version"] for p in health["processes"]} == {health["version"]}
    for _ in range(4):  # whichever process answers, it answers from the new version
        answer = service.ask("When did the Zanzibar ferry start running again?", k=3)
        assert answer.version == health["version"]
        assert "zanzibar" in {p.citation.source for p in answer.passages}


def test_a_process_that_dies_is_replaced(processes):
    import os
    import signal

    _, _, service = processes
    before = {p["pid"] for p in service.health()["processes"]}
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    assert _wait_until(lambda: victim not in {p["pid"] for p in service.health()["processes"]}
                       and all(p["running"] for p in service.health()["processes"]), 120)
    after = {p["pid"] for p in service.health()["processes"]}
    assert len(after) == 2 and victim not in after and after & before
    answers = [service.ask(TAJI, k=3) for _ in range(4)]
    assert all(a.answered for a in answers)
    assert all(p["answered"] > 0 for p in service.health()["processes"])
