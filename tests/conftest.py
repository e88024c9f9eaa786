import os
import re
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
DATA = Path(__file__).resolve().parent / "data"
SHARED = ROOT.parent / "shared"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


NEW_ARTICLE_TEXT = (
    "Ferry Service To Zanzibar Resumes\n\nMarch 3, 2021\n\nThe Zanzibar ferry started running "
    "again on Monday after a pause of two years, the port authority said.\n"
)


class FakeEmbedder:
    """Deterministic bag-of-words vectors: texts sharing words are close. No model needed."""

    name = "fake-bow"
    dimension = 256
    stopwords = frozenset(
        "a an and at by for how in is many of on the to was what when who".split()
    )

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                if word in self.stopwords:
                    continue
                out[row, zlib.crc32(word.encode()) % self.dimension] += 1.0
            out[row] /= np.linalg.norm(out[row]) or 1.0
        return out

    def embed(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        self.calls = getattr(self, "calls", 0) + len(texts)
        vectors = self.embed_batch(list(texts))
        if progress:
            progress(len(texts))
        return vectors


def word_count(texts: list[str]) -> list[int]:
    return [len(t.split()) + 2 for t in texts]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Every test gets its own cache folder and no QA_* settings from the outside."""
    monkeypatch.setenv("QA_HOME", str(tmp_path / "qa-home"))
    monkeypatch.delenv("QA_DOCS", raising=False)
    monkeypatch.delenv("QA_INDEX", raising=False)


@pytest.fixture(scope="session")
def real_index(tmp_path_factory):
    """(docs, index): the seed articles indexed once per test session with the real model.
    Tests must not modify either; copy them first."""
    import shutil

    from index.ingest.pipeline import build_index

    root = tmp_path_factory.mktemp("real")
    docs = root / "docs"
    shutil.copytree(SEEDS, docs)
    build_index(docs, root / "index")
    return docs, root / "index"


@pytest.fixture(params=["whole", "delta"])
def update_path(request, monkeypatch):
    """Run a test twice: updates rebuilding the version whole (the small indexes' way), and
    updates writing a delta beside the base (large indexes'; forced here). A writer started
    as a child process reads QA_TEST_UPDATE_PATH."""
    from index.ingest import delta

    monkeypatch.setenv("QA_TEST_UPDATE_PATH", request.param)
    if request.param == "delta":
        monkeypatch.setattr(delta, "DELTA_FROM", 0)
        monkeypatch.setattr(delta, "DELTA_SHARE", 1.0)
    return request.param


@pytest.fixture
def fake_embedder():
    return FakeEmbedder()


def fake_build(docs: Path, index: Path, reuse_vectors: bool = False, **options):
    """``build_index`` with the FakeEmbedder (unless ``embedder`` is given) and word counts;
    ``options`` are ``BuildOptions``'."""
    from index.ingest.job import BuildOptions
    from index.ingest.pipeline import build_index

    options.setdefault("embedder", FakeEmbedder())
    return build_index(docs, index, BuildOptions(count_tokens=word_count, **options),
                       reuse_vectors=reuse_vectors)


def fake_index(root: Path, docs_from: Path = SEEDS) -> tuple[Path, Path]:
    """(docs, index): a copy of ``docs_from`` indexed with the FakeEmbedder under ``root``."""
    import shutil

    docs, index = root / "docs", root / "index"
    shutil.copytree(docs_from, docs)
    fake_build(docs, index)
    return docs, index


@pytest.fixture
def seeds(tmp_path):
    """(docs, index): a copy of the seed articles with a FakeEmbedder index, per test."""
    return fake_index(tmp_path)


class FakeCli:
    """The CLI over a FakeEmbedder index: the fake model is passed in through Click's context
    object (``ctx.obj``), the way a caller injects dependencies; nothing is patched."""

    def __init__(self, docs: Path, index: Path):
        from typer.testing import CliRunner

        self.docs, self.index = docs, index
        self.runner = CliRunner()

    def __call__(self, args: list[str], **kwargs):
        import cli

        split = 2 if args[0] in ("index", "feedback") else 1  # after the (sub)command's name
        command, rest = list(args[:split]), list(args[split:])
        options = ["--docs", str(self.docs), "--index", str(self.index)]
        deps = {"embedder": FakeEmbedder(), "count_tokens": word_count}
        return self.runner.invoke(cli.app, [*command, *options, *rest], obj=deps, **kwargs)


def fold(text: str) -> str:
    return " ".join(text.split())


def start_cli(args: list[str], folder: Path, ready: str, env: dict[str, str] | None = None,
              log_name: str = "cli.log"):
    """``python -m cli ARGS`` as a real process with its own QA_HOME in ``folder``; waits
    until its stderr matches ``ready`` (a regex whose first group is returned, e.g. the URL
    it serves). Returns (process, that group, log path); stop it with ``stop``."""
    import subprocess
    import sys
    import time

    log = folder / log_name
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "QA_"))}
    environment.update(HF_HUB_OFFLINE="1", QA_HOME=str(folder), **(env or {}))
    with open(log, "w") as err:
        process = subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=ROOT,
                                   env=environment, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 120
    while not (found := re.search(ready, log.read_text())):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            pytest.fail(f"`qa {' '.join(args[:1])}` did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return process, found.group(1), log


def stop(process) -> None:
    """Terminate a process started for a test (killed if it does not go within 10 s)."""
    import subprocess

    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
