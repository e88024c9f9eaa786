import io
import json

from conftest import SEEDS, FakeEmbedder, word_count

from index.ingest.job import BuildOptions
from index.ingest.pipeline import build_index
from qa.chat import run_chat
from qa.engine import Engine


def test_chat_session_commands(tmp_path, monkeypatch, capsys):
    build_index(SEEDS, tmp_path / "ix", BuildOptions(embedder=FakeEmbedder(), count_tokens=word_count))
    engine = Engine(tmp_path / "ix", embedder=FakeEmbedder())
    # :weak shows passages even if the fake embedder's weak evidence leads to a refusal.
    script = ":k 2\n:json\n:weak\nHow many rockets landed at the Taji base?\n\n:k zero\n:quit\nnever asked\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(script))
    run_chat(engine, k=5)
    out = capsys.readouterr().out
    answers = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(answers) == 1
    assert answers[0]["question"] == "How many rockets landed at the Taji base?"
    assert len(answers[0]["passages"]) == 2
    assert "showing 2 passages" in out and "JSON output on" in out
    assert "weak answers shown" in out
    assert ":k N" in out  # a bad command prints the command help


def test_the_chat_history_is_private(tmp_path):
    import os
    import stat

    from qa.chat import chat_history

    old = tmp_path / "chat_history"
    old.write_text("earlier question\n")
    os.chmod(old, 0o644)  # as an earlier version left it
    path = chat_history(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "earlier question\n"
    new = chat_history(tmp_path / "fresh")
    assert stat.S_IMODE(new.stat().st_mode) == 0o600
