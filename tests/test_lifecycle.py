"""Index lifecycle: incremental updates, stale and damaged indexes, the writer lock.

Everything here runs through the library with the FakeEmbedder; the CLI tests disguise a fake
index as a real-model one (manifest only) so they exercise the CLI's error paths without
loading the model.
"""

import json
import shutil
import threading

import numpy as np
import pytest
from conftest import SEEDS, FakeCli, FakeEmbedder, fake_build, fake_index, fold, word_count
from typer.testing import CliRunner

from cli import app
from index.docs import docs_changes
from index.errors import IndexDamaged, IndexLocked, IndexStale
from index.ingest.job import BuildOptions
from index.ingest.pipeline import update_index
from index.models.spec import DEFAULT
from index.models.spec import DEFAULT_NAME as MODEL_NAME
from index.storage.layout import current_version, writer_lock
from index.storage.reader import Store
from qa.engine import Engine

runner = CliRunner()

# Every test here runs with both kinds of update (conftest.update_path).
pytestmark = pytest.mark.usefixtures("update_path")

NEW_ARTICLE = """Zanzibar Harbour Reopens After Cyclone

By Amina Juma

STONE TOWN, March 3, 2021 — The harbour of Zanzibar reopened on Monday after cyclone Kenneth \
closed it for nine days. Fishermen returned to the quays at dawn.

Port officials said the dhow terminal lost two cranes. Repairs will cost 40 million shillings, \
according to the harbour master, Salim Mohammed.
"""





def _update(docs, index, embedder=None):
    return update_index(docs, index, BuildOptions(embedder=embedder or FakeEmbedder(), count_tokens=word_count))


def _sources(index):
    store = Store(index)
    try:
        return {d.source for d in store.documents.values()}
    finally:
        store.close()


def _vectors_by_hash(index):
    store = Store(index)
    vectors = store.load_vectors()
    out = {p.hash: np.array(vectors[p.id]) for p in store.all_passages()}
    store.close()
    return out


def _bm25_hits(index, word):
    store = Store(index)
    scores = store.bm25.search(word)
    ids = [int(i) for i in np.flatnonzero(scores > 0)]
    rows = store.passages(ids)
    sources = {store.documents[r.doc].source for r in rows}
    store.close()
    return sources


def test_adding_an_article_embeds_only_its_passages_and_makes_it_answerable(seeds):
    docs, index = seeds
    before = _vectors_by_hash(index)
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE)
    assert docs_changes(docs, Store(index).files).added == ["zanzibar"]

    embedder = FakeEmbedder()
    report = _update(docs, index, embedder)

    store = Store(index)
    new_doc = next(i for i, d in store.documents.items() if d.source == "zanzibar")
    new_passages = [p for p in store.all_passages() if p.doc == new_doc]
    assert report.added == ["zanzibar"] and report.changed == [] and report.removed == []
    assert len(new_passages) >= 1
    assert report.embedded == embedder.calls == len(new_passages)
    # Every old passage kept its vector, bit for bit.
    after = _vectors_by_hash(index)
    assert set(before) <= set(after)
    assert all(np.array_equal(before[h], after[h]) for h in before)
    assert _bm25_hits(index, "Zanzibar") == {"zanzibar"}

    answer = Engine(index, embedder=FakeEmbedder()).ask("When did the Zanzibar harbour reopen?")
    top = answer.passages[0]
    assert top.citation.source == "zanzibar"
    text = (docs / "zanzibar.txt").read_text()
    assert fold(text[top.citation.start:top.citation.end]) == fold(top.text)
    assert not docs_changes(docs, store.files)


def test_deleting_an_article_removes_all_its_passages(seeds):
    docs, index = seeds
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE)
    _update(docs, index)
    count_with = Store(index).passage_count
    (docs / "zanzibar.txt").unlink()

    embedder = FakeEmbedder()
    report = _update(docs, index, embedder)

    assert report.removed == ["zanzibar"] and report.embedded == 0 and not report.added
    store = Store(index)
    assert "zanzibar" not in {d.source for d in store.documents.values()}
    assert not any("Zanzibar" in p.text for p in store.all_passages())
    assert store.passage_count == store.vectors.count < count_with
    assert _bm25_hits(index, "Zanzibar") == set()
    assert getattr(embedder, "calls", 0) == 0


def test_changing_an_article_reembeds_only_changed_passages(seeds):
    docs, index = seeds
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE)
    _update(docs, index)
    old_passages = {p.text for p in Store(index).all_passages()}
    changed = NEW_ARTICLE.replace("40 million shillings", "75 million shillings")
    (docs / "zanzibar.txt").write_text(changed)

    embedder = FakeEmbedder()
    report = _update(docs, index, embedder)

    assert report.changed == ["zanzibar"] and not report.added and not report.removed
    texts = [p.text for p in Store(index).all_passages()]
    assert any("75 million" in t for t in texts) and not any("40 million" in t for t in texts)
    new_texts = [t for t in texts if t not in old_passages]
    assert 1 <= report.embedded == embedder.calls == len(new_texts)
    assert _bm25_hits(index, "75") >= {"zanzibar"}


def test_unchanged_docs_update_embeds_nothing_and_keeps_answers(seeds):
    docs, index = seeds
    before = [(p.text, p.start, p.end, p.hash) for p in Store(index).all_passages()]
    embedder = FakeEmbedder()
    report = _update(docs, index, embedder)
    assert report.embedded == 0 and not (report.added or report.changed or report.removed)
    assert [(p.text, p.start, p.end, p.hash) for p in Store(index).all_passages()] == before


def test_an_index_an_older_reader_made_is_read_again_by_an_update(seeds, monkeypatch):
    """Cleaning or reading that changed (a new READER_VERSION) makes an update re-read an
    unchanged folder instead of reporting nothing to do; unchanged passages keep their
    vectors."""
    import qa.app
    from index.ingest import pipeline
    from index.storage import manifest
    from qa.app import Paths, status

    docs, index = seeds
    before = Store(index).version
    assert _update(docs, index, FakeEmbedder()).version == before  # nothing to do
    newer = manifest.READER_VERSION + 1
    for module in (manifest, pipeline, qa.app):
        monkeypatch.setattr(module, "READER_VERSION", newer)
    # Status says so before the update: the articles are the same, their reading is not.
    state = status(Paths(docs, index, True), embedder=FakeEmbedder(), verify=False)
    assert state["up_to_date"] is False and not (state["added"] or state["changed"])
    assert state["reader"] == {"index": newer - 1, "this_qa": newer}
    human = runner.invoke(app, ["index", "status", "--docs", str(docs), "--index", str(index),
                                "--quick"], obj={"embedder": FakeEmbedder()})
    assert "unchanged since the index was built" in human.stdout
    assert "reads articles differently" in human.stdout and "qa index update" in human.stdout
    where = ["--docs", str(docs), "--index", str(index)]
    fake = {"embedder": FakeEmbedder(), "count_tokens": word_count}
    asked = runner.invoke(app, ["ask", "Taji rockets", *where], obj=fake)
    assert asked.exit_code == 0 and "reads articles differently" in asked.stderr
    assert Store(index).version == before  # answered from the index as it is
    refreshed = runner.invoke(app, ["ask", "Taji rockets", "--refresh", *where], obj=fake)
    assert refreshed.exit_code == 0 and "reads articles differently" not in refreshed.stderr
    assert Store(index).manifest["reader_version"] == newer
    report = _update(docs, index, FakeEmbedder())
    assert report.version != before and report.embedded == 0
    assert status(Paths(docs, index, True), embedder=FakeEmbedder(), verify=False)["up_to_date"]


def test_update_without_an_index_builds_it(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(SEEDS, docs)
    report = _update(docs, tmp_path / "index")
    assert report.added == sorted(p.stem for p in SEEDS.glob("*.txt"))
    assert report.embedded == report.passages > 10
    assert Store(tmp_path / "index").passage_count == report.passages


def test_skipped_files_are_recorded_and_not_reported_as_new(seeds):
    docs, index = seeds
    (docs / "empty.txt").write_text("")
    (docs / "blank.md").write_text("  \n\n\t\n")
    (docs / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (docs / "dangling.txt").symlink_to(docs / "does-not-exist.txt")
    report = _update(docs, index)
    assert report.skipped == ["blank", "dangling", "empty", "image"]
    manifest = Store(index).files
    assert manifest["image"]["skipped"] == "binary file, not text"
    assert not docs_changes(docs, manifest), "skipped files must not look new forever"
    again = _update(docs, index)
    assert not (again.added or again.changed or again.removed) and again.embedded == 0

    # Fixing a skipped file makes it a change, and the next update indexes it.
    (docs / "empty.txt").write_text(NEW_ARTICLE)
    assert docs_changes(docs, manifest).changed == ["empty"]
    fixed = _update(docs, index)
    assert fixed.changed == ["empty"] and fixed.embedded >= 1
    assert "empty" in _sources(index)


def test_changed_model_name_in_manifest_is_stale(seeds):
    docs, index = seeds
    path = current_version(index) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["model"]["name"] = "some-other-model"
    path.write_text(json.dumps(manifest))
    with pytest.raises(IndexStale, match="some-other-model.*run `qa index build`"):
        Engine(index, embedder=FakeEmbedder())
    with pytest.raises(IndexStale, match="run `qa index build`"):
        _update(docs, index)
    # A full build replaces it.
    fake_build(docs, index)
    assert Engine(index, embedder=FakeEmbedder()).ask("Taji rockets").passages


@pytest.mark.parametrize(
    "key, value",
    [("format_version", 99), ("model.dimension", 512), ("chunking.version", 0)],
)
def test_foreign_format_dimension_or_chunker_is_stale(seeds, key, value):
    _, index = seeds
    path = current_version(index) / "manifest.json"
    manifest = json.loads(path.read_text())
    node = manifest
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    path.write_text(json.dumps(manifest))
    with pytest.raises(IndexStale, match="run `qa index build`"):
        Engine(index, embedder=FakeEmbedder())


# --- damaged files ------------------------------------------------------------------------

def _disguise(index):
    """Make a fake-model index look like a real-model one to the CLI (manifest only)."""
    path = current_version(index) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["model"].update(name=MODEL_NAME, dimension=DEFAULT.dimension)
    from index.models.export import onnx_digest

    (index / "model.onnx").write_bytes(b"onnx stand-in" * 100)
    (index / "model.onnx.sha256").write_text(onnx_digest(index / "model.onnx"))
    manifest["model"]["onnx"] = {"file": "model.onnx", "size": 1300}
    path.write_text(json.dumps(manifest))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: max(0, path.stat().st_size // 2)])


def _garble(path):
    size = path.stat().st_size
    path.write_bytes(bytes((i * 37 + 11) % 256 for i in range(size)))


def _damage(index, target, how):
    version = current_version(index)
    if target == "CURRENT":
        path = index / "CURRENT"
        path.write_text({"empty": "", "garble": "v-\x00\x01", "missing": "v-gone"}[how])
        return
    path = index / target if target == "model.onnx" else version / target
    {"truncate": _truncate, "garble": _garble, "delete": lambda p: p.unlink()}[how](path)


DAMAGE = [
    ("manifest.json", "truncate"), ("manifest.json", "garble"), ("manifest.json", "delete"),
    ("passages.sqlite", "truncate"), ("passages.sqlite", "garble"),
    # A garbled flat faiss.index of the right size does not stop answers (flat indexes are
    # searched from vectors.npy); status finds it (tests/test_faults.py).
    ("faiss.index", "truncate"),
    ("vectors.npy", "truncate"), ("vectors.npy", "delete"),
    ("bm25/params.index.json", "truncate"), ("bm25/vocab.index.json", "truncate"),
    ("bm25/data.csc.index.npy", "truncate"), ("bm25/indices.csc.index.npy", "delete"),
    ("bm25/indptr.csc.index.npy", "truncate"),
    ("CURRENT", "empty"), ("CURRENT", "garble"), ("CURRENT", "missing"),
    ("model.onnx", "truncate"), ("model.onnx", "delete"),
]


@pytest.mark.parametrize("target, how", DAMAGE)
def test_damaged_index_is_one_line_error_in_cli(seeds, target, how):
    docs, index = seeds
    _disguise(index)
    assert runner.invoke(app, ["index", "status", "--index", str(index), "--docs",
                               str(docs)]).exit_code == 0
    _damage(index, target, how)
    for args in (["ask", "Who fired the rockets?"], ["index", "status"]):
        result = runner.invoke(app, [*args, "--index", str(index), "--docs", str(docs)])
        assert result.exit_code == 1, (args, result.output)
        assert f"index at {index} is damaged" in result.stderr
        assert "run `qa index build`" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.output and result.stdout == ""


def test_update_on_damaged_index_says_to_rebuild(seeds):
    docs, index = seeds
    _truncate(current_version(index) / "vectors.npy")
    with pytest.raises(IndexDamaged, match="run `qa index build`"):
        _update(docs, index)
    fake_build(docs, index)
    assert Store(index).passage_count > 10


def test_corrupt_sqlite_pages_surface_as_damage_not_traceback(seeds):
    _, index = seeds
    db = current_version(index) / "passages.sqlite"
    data = bytearray(db.read_bytes())
    data[4096:] = bytes(len(data) - 4096)  # keep the header, zero every other page
    db.write_bytes(bytes(data))
    with pytest.raises(IndexDamaged, match="damaged"):
        engine = Engine(index, embedder=FakeEmbedder())
        engine.ask("Taji rockets")


def test_cli_update_on_stale_index_says_to_rebuild_without_loading_the_model(seeds):
    docs, index = seeds  # built with the fake model: stale for the CLI's real model
    result = runner.invoke(app, ["index", "update", "--docs", str(docs), "--index", str(index)])
    assert result.exit_code == 1
    assert "fake-bow" in result.stderr and "run `qa index build`" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- the writer lock ----------------------------------------------------------------------

def test_second_writer_gets_a_clear_locked_error(seeds):
    docs, index = seeds
    with writer_lock(index):
        with pytest.raises(IndexLocked, match="another qa process is writing"):
            _update(docs, index)
        result = runner.invoke(app, ["index", "build", "--docs", str(docs), "--index",
                                     str(index)])
        assert result.exit_code == 1
        assert "another qa process is writing the index" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        # Readers are not blocked by a writer.
        assert Engine(index, embedder=FakeEmbedder()).ask("Taji rockets").passages
    _update(docs, index)


def test_readers_always_see_a_complete_version_while_writers_run(seeds):
    docs, index = seeds
    errors, loads = [], 0
    stop = threading.Event()

    def read():
        nonlocal loads
        while not stop.is_set():
            try:
                engine = Engine(index, embedder=FakeEmbedder())
                assert engine.ask("Taji rockets").passages
                engine.close()
                loads += 1
            except Exception as error:  # noqa: BLE001 - any failure is the finding
                errors.append(repr(error))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(4):
            (docs / f"extra{i}.txt").write_text(NEW_ARTICLE.replace("Zanzibar", f"Pemba{i}"))
            _update(docs, index)
    finally:
        stop.set()
        reader.join()
    assert errors == [] and loads >= 1


# --- `qa ask`: build on first use, warn or refresh when the docs changed --------------------

class Said:
    """Collects a Builder's notices and warnings."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, message: str) -> None:
        self.lines.append(message)

    def take(self) -> str:
        text, self.lines = "\n".join(self.lines), []
        return text


def _builder(said):
    from index.ingest.builder import Builder

    return Builder(BuildOptions(embedder=FakeEmbedder(), count_tokens=word_count, warn=said),
                   notice=said)


def test_ask_builds_then_warns_about_changed_docs_then_refreshes(tmp_path, monkeypatch):
    import qa.app as qa_app
    from qa.app import Paths, open_engine

    docs = tmp_path / "docs"
    shutil.copytree(SEEDS, docs)
    paths = Paths.resolve(docs, tmp_path / "index")
    said = Said()
    engine = open_engine(paths, builder=_builder(said))
    assert "no index yet" in said.take()
    assert engine.store.passage_count > 10
    engine.close()

    (docs / "zanzibar.txt").write_text(NEW_ARTICLE)
    engine = open_engine(paths, builder=_builder(said))
    err = said.take()
    assert "changed since the index was built (1 added, 0 changed, 0 removed)" in err
    assert "--refresh" in err
    assert "zanzibar" not in {d.source for d in engine.store.documents.values()}
    engine.close()

    # An archive of more files than a question should stat: no comparison (status does it).
    monkeypatch.setattr(qa_app, "CHECK_DOCS_UP_TO", 1)
    engine = open_engine(paths, builder=_builder(said))
    assert "changed since" not in said.take()
    engine.close()
    # --refresh still compares, and updates.
    engine = open_engine(paths, refresh=True, builder=_builder(said))
    assert "changed since" not in said.take()
    assert "zanzibar" in {d.source for d in engine.store.documents.values()}
    engine.close()


def test_ask_waits_for_a_writer_instead_of_failing(tmp_path):
    from qa.app import Paths, open_engine

    docs = tmp_path / "docs"
    shutil.copytree(SEEDS, docs)
    index = tmp_path / "index"
    held = threading.Event()

    def hold():
        with writer_lock(index):
            held.set()
            threading.Event().wait(1.0)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    said = Said()
    engine = open_engine(Paths.resolve(docs, index), builder=_builder(said))
    holder.join()
    assert "waiting for it" in said.take()
    assert engine.store.passage_count > 10
    engine.close()


def test_unwritable_index_folder_is_a_one_line_error(seeds, tmp_path):
    docs, _ = seeds
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["index", "build", "--docs", str(docs), "--index",
                                 str(blocker / "index")])
    assert result.exit_code == 1
    assert "cannot write the index at" in result.stderr and "--index DIR" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_failed_write_keeps_the_previous_index(seeds, monkeypatch):
    import errno

    from index.errors import QAError
    from index.storage import lexical as lexical_module

    docs, index = seeds
    before = current_version(index).name

    def disk_full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lexical_module, "build", disk_full)
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE)
    with pytest.raises(QAError, match="No space left on device.*previous index is unchanged"):
        _update(docs, index)
    assert current_version(index).name == before
    assert not list(index.glob(".tmp-*"))
    assert Engine(index, embedder=FakeEmbedder()).ask("Taji rockets").passages


def test_corrupt_query_model_is_exported_again_on_build(tmp_path, monkeypatch):
    """A model.onnx that no longer matches the digest recorded at export is replaced."""

    from index.models import export as exporting
    from index.models.spec import DEFAULT

    exports = []

    def export(model, target, int8=None):
        data = b"exported graph %d" % len(exports)
        target.write_bytes(data)
        exports.append(target)
        return exporting.onnx_digest(target)

    monkeypatch.setattr(exporting, "export_onnx", export)
    exporting.ensure_query_model(tmp_path, DEFAULT, verify=True)
    exporting.ensure_query_model(tmp_path, DEFAULT, verify=True)
    assert len(exports) == 1  # intact: kept
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:5])
    exporting.ensure_query_model(tmp_path, DEFAULT, verify=False)  # the query path never hashes
    assert len(exports) == 1
    exporting.ensure_query_model(tmp_path, DEFAULT, verify=True)
    assert len(exports) == 2 and onnx.read_bytes() == b"exported graph 1"


def test_store_reads_one_version_even_if_current_switches_while_it_loads(seeds, monkeypatch):
    from index.storage import reader as store_module

    docs, index = seeds
    old = current_version(index)
    reader = Store(index)  # its lease keeps the old version on disk through the update
    old_count = reader.passage_count
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE)
    _update(docs, index)
    new = current_version(index)
    assert old.is_dir() and new != old
    (index / "CURRENT").write_text(old.name)
    real = store_module.current_version

    def resolve_then_switch(index_dir):
        version = real(index_dir)
        (index / "CURRENT").write_text(new.name)  # a writer switches right after we resolved
        return version

    monkeypatch.setattr(store_module, "current_version", resolve_then_switch)
    store = Store(index)
    assert store.version == old and store.passage_count == old_count == store.vectors.count


def test_cli_update_and_status_say_what_happened(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(SEEDS, docs)
    index = tmp_path / "index"
    where = ["--docs", str(docs), "--index", str(index)]
    fake = {"embedder": FakeEmbedder(), "count_tokens": word_count}
    result = runner.invoke(app, ["index", "update", *where], obj=fake)  # no index yet: builds
    assert result.exit_code == 0, result.stderr
    assert f"added: {len(list(SEEDS.glob('*.txt')))} file(s)" in result.stderr

    (docs / "zanzibar.txt").write_text(NEW_ARTICLE)
    (docs / "empty.txt").write_text("")
    (docs / "000_3462dbd106702807.txt").unlink()
    status = runner.invoke(app, ["index", "status", "--json", *where], obj=fake)
    assert status.exit_code == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["up_to_date"] is False
    assert report["added"] == ["empty", "zanzibar"]
    assert report["removed"] == ["000_3462dbd106702807"]

    result = runner.invoke(app, ["index", "update", *where], obj=fake)
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "added: 2 file(s) (empty, zanzibar)" in lines
    assert "changed: 0 file(s)" in lines
    assert "removed: 1 file(s) (000_3462dbd106702807)" in lines
    assert "skipped: 1 file(s) (empty)" in lines
    assert any(line.startswith("embedded ") and "new passage(s)" in line for line in lines)
    assert any("skipping" in line and "empty.txt" in line for line in lines)

    status = runner.invoke(app, ["index", "status", "--json", *where], obj=fake)
    report = json.loads(status.stdout)
    assert report["up_to_date"] is True and report["skipped"] == ["empty"]
    assert report["being_written"] is False
    with writer_lock(index):
        locked = runner.invoke(app, ["index", "status", *where], obj=fake)
        assert "another qa process is building or updating this index now" in locked.stdout
    human = runner.invoke(app, ["index", "status", *where], obj=fake)
    assert "unchanged since the index was built" in human.stdout
    assert "1 unusable file(s) not indexed: empty" in human.stdout


def test_an_update_with_nothing_to_do_writes_no_version(seeds):
    docs, index = seeds
    before = current_version(index)
    report = _update(docs, index)
    assert report.embedded == 0 and not (report.added or report.changed or report.removed)
    assert current_version(index) == before and [v.name for v in index.glob("v-*")] == [
        before.name]
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE)
    assert _update(docs, index).added == ["zanzibar"]
    assert current_version(index) != before


def test_current_that_is_not_text_is_damage_and_a_build_repairs_it(seeds):
    docs, index = seeds
    (index / "CURRENT").write_bytes(b"v-\xff\xfe\x00garbage")
    run = FakeCli(docs, index)
    ask = run(["ask", "How many rockets landed at the Taji base?"])
    assert ask.exit_code == 1 and "Traceback" not in ask.output
    assert ask.stderr.strip().startswith("error: index at") and "CURRENT" in ask.stderr
    assert len(ask.stderr.strip().splitlines()) == 1
    assert run(["index", "build"]).exit_code == 0
    assert run(["ask", "How many rockets landed at the Taji base?"]).exit_code == 0


def test_an_index_of_the_older_format_is_updated_on_first_ask_without_reembedding(seeds):
    docs, index = seeds
    version = current_version(index)
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["format_version"] = 1
    (version / "manifest.json").write_text(json.dumps(manifest))
    run = FakeCli(docs, index)
    status = run(["index", "status"])
    assert status.exit_code == 1 and "run `qa index update` (it keeps the vectors)" in \
        status.stderr
    embedder = FakeEmbedder()
    result = runner.invoke(app, ["ask", "How many rockets landed at the Taji base?", "--docs",
                                 str(docs), "--index", str(index)],
                           obj={"embedder": embedder, "count_tokens": word_count})
    assert result.exit_code == 0, result.output
    assert "older format: updating it" in result.stderr
    assert getattr(embedder, "calls", 0) == 0  # every vector reused
    assert current_version(index) != version


def test_float32_vectors_of_format_3_are_quantised_without_reembedding(seeds):
    import numpy as np

    from index.storage.vectors import open_vectors

    docs, index = seeds
    version = current_version(index)
    mapped = open_vectors(version)
    codes, scales, floats = np.array(mapped.codes), np.array(mapped.scales), mapped[:]
    del mapped
    np.save(version / "vectors.npy", floats)  # float32, as format 3 wrote them
    (version / "scales.npy").unlink()
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["format_version"] = 3
    manifest["sizes"]["vectors.npy"] = (version / "vectors.npy").stat().st_size
    del manifest["sizes"]["scales.npy"]
    (version / "manifest.json").write_text(json.dumps(manifest))
    embedder = FakeEmbedder()
    result = runner.invoke(app, ["ask", "How many rockets landed at the Taji base?", "--docs",
                                 str(docs), "--index", str(index), "--json"],
                           obj={"embedder": embedder, "count_tokens": word_count})
    assert result.exit_code == 0, result.output
    assert getattr(embedder, "calls", 0) == 0
    migrated = open_vectors(current_version(index))
    assert (migrated.codes == codes).all()
    np.testing.assert_allclose(migrated.scales, scales, rtol=1e-6)
    assert json.loads(result.stdout)["passages"][0]["citation"]["source"].startswith("003")


def test_an_update_reuses_the_ivf_training_until_it_is_stale_and_retrain_refreshes_it(
    tmp_path, monkeypatch
):
    import faiss
    import numpy as np

    from index.storage.vectors import FaissIndex

    monkeypatch.setattr(FaissIndex, "IVF_THRESHOLD", 20)  # the seeds' passages get an IVF
    docs, index = fake_index(tmp_path)
    run = FakeCli(docs, index)

    def state():
        result = run(["index", "status", "--json"])
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)

    def centroids():
        whole = faiss.read_index(str(current_version(index) / "faiss.index"))
        quantizer = faiss.downcast_index(faiss.extract_index_ivf(whole).quantizer)
        return quantizer.reconstruct_n(0, quantizer.ntotal)  # (``whole`` must outlive it)

    first = state()
    assert first["vector_index"] == "faiss-ivf-pq-refine"
    n = first["passages"]
    assert first["vector_training"] == {"trained_on": n, "stale": False}
    before = centroids()
    # A few new articles: added to the trained index, not trained again.
    def article(n: int) -> str:  # distinct, so not dropped as a near-duplicate
        words = [f"w{n}x{i}" for i in range(400)]
        sentences = [" ".join(words[i : i + 12]).capitalize() + "." for i in range(0, 400, 12)]
        return f"Report {n}\n\n" + "\n\n".join(" ".join(sentences[i : i + 4])
                                                for i in range(0, len(sentences), 4))

    (docs / "new1.txt").write_text(article(1))
    assert run(["index", "update"]).exit_code == 0
    grown = state()
    assert grown["passages"] > n and grown["vector_training"] == {"trained_on": n,
                                                                 "stale": False}
    assert np.array_equal(centroids(), before)
    # The archive doubles: the training is stale, and status says what to do.
    for k in range(2, 40):
        (docs / f"new{k}.txt").write_text(article(k))
    assert run(["index", "update"]).exit_code == 0
    assert state()["vector_training"]["stale"] is True
    table = " ".join(run(["index", "status"], terminal_width=200).stdout.split())
    assert f"stale: trained on {n} passages" in table
    assert "qa index build --retrain" in table
    # --retrain trains afresh on every passage, re-embedding nothing.
    embedder = FakeEmbedder()
    result = runner.invoke(app, ["index", "build", "--retrain", "--docs", str(docs),
                                 "--index", str(index)],
                           obj={"embedder": embedder, "count_tokens": word_count})
    assert result.exit_code == 0, result.stderr
    assert getattr(embedder, "calls", 0) == 0
    after = state()
    assert after["vector_training"] == {"trained_on": after["passages"], "stale": False}
    assert not np.array_equal(centroids(), before)
