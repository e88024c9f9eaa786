import json
import os

import numpy as np
import pytest
from conftest import ROOT, SEEDS, FakeEmbedder, fake_build, fold, word_count

from index.docs import docs_changes
from index.errors import DocsError, IndexDamaged, IndexMissing, IndexStale
from index.ingest.job import BuildOptions
from index.ingest.pipeline import update_index
from index.storage.layout import FILES, current_version
from index.storage.manifest import expected as expected_for
from index.storage.reader import Store
from index.storage.vectors import FaissIndex, NumpyIndex
from qa.engine import Engine


def test_round_trip_keeps_offsets_and_metadata(seeds):
    docs, index = seeds
    store = Store(index)
    assert store.passage_count == store.vectors.count > 10
    files = {d.source: (docs / f"{d.source}.txt").read_text() for d in store.documents.values()}
    for row in store.all_passages():
        source = store.documents[row.doc].source
        assert fold(files[source][row.start:row.end]) == fold(row.text)
        for s, e in row.sentences:
            assert row.start <= s < e <= row.end
    manifest = store.manifest
    assert manifest["model"]["name"] == "fake-bow"
    assert set(store.files) == {p.stem for p in SEEDS.glob("*.txt")}


@pytest.mark.parametrize("k", [1, 5, 20])
def test_faiss_matches_numpy_oracle(k):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[:10] + rng.normal(scale=0.1, size=(10, 32)).astype(np.float32)
    exact, flat = NumpyIndex(32), FaissIndex(32)
    exact.add(vectors)
    flat.add(vectors)
    s1, i1 = exact.search(queries, k)
    s2, i2 = flat.search(queries, k)
    assert (i1 == i2).all()
    np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-5)


def test_engine_answers_with_fake_embedder(seeds):
    _, index = seeds
    engine = Engine(index, embedder=FakeEmbedder())
    answer = engine.ask("How many rockets landed at the Taji base?", k=3)
    assert [p.rank for p in answer.passages] == [1, 2, 3]
    assert any("18 rockets" in p.text for p in answer.passages)
    for p in answer.passages:
        assert p.citation.start <= p.highlight.start < p.highlight.end <= p.citation.end
        assert p.highlight.text in p.text


def test_missing_index_and_empty_docs(tmp_path):
    with pytest.raises(IndexMissing):
        Store(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DocsError):
        fake_build(tmp_path / "empty", tmp_path / "index")
    with pytest.raises(DocsError):
        fake_build(tmp_path / "absent", tmp_path / "index")


def test_manifest_mismatch_is_stale(seeds):
    _, index = seeds
    manifest_path = current_version(index) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["model"]["name"] = "some-other-model"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexStale, match="qa index build"):
        Engine(index, embedder=FakeEmbedder())


def test_truncated_files_are_damaged(seeds):
    _, index = seeds
    faiss_file = current_version(index) / "faiss.index"
    faiss_file.write_bytes(faiss_file.read_bytes()[:100])
    with pytest.raises(IndexDamaged, match="damaged"):
        Store(index)


def test_the_file_list_lives_beside_the_manifest_and_old_inline_lists_still_read(seeds):
    docs, index = seeds
    version = current_version(index)
    manifest = json.loads((version / "manifest.json").read_text())
    files = json.loads((version / FILES).read_text())
    assert "files" not in manifest and set(files) == {p.stem for p in docs.glob("*.txt")}
    assert manifest["counts"]["files"] == len(files) and FILES in manifest["sha256"]
    # A version written before the split holds the list in its manifest.
    manifest["files"] = files
    for key in ("sizes", "sha256"):
        del manifest[key][FILES]
    (version / FILES).unlink()
    (version / "manifest.json").write_text(json.dumps(manifest))
    store = Store(index)
    assert store.files == files and not docs_changes(docs, store.files)
    store.close()
    report = update_index(docs, index, BuildOptions(embedder=FakeEmbedder(), count_tokens=word_count))
    assert not (report.added or report.changed or report.removed) and report.embedded == 0
    # A damaged list is damage, reported when it is read.
    (version / FILES).write_text("{not json")
    manifest.pop("files")
    (version / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexDamaged, match="qa index build"):
        _ = Store(index).files


def test_update_embeds_only_new_passages(seeds):
    docs, index = seeds
    new = docs / "new_article.txt"
    new.write_text("Zanzibar Harbour Reopens\n\nThe harbour of Zanzibar reopened on Monday after "
                   "a storm. Fishermen returned to work at dawn.\n")
    embedder = FakeEmbedder()
    report = update_index(docs, index, BuildOptions(embedder=embedder, count_tokens=word_count))
    assert report.added == ["new_article"] and not report.changed and not report.removed
    assert report.embedded == embedder.calls == 1
    store = Store(index)
    assert "new_article" in {d.source for d in store.documents.values()}
    assert not docs_changes(docs, store.files)
    new.unlink()
    report = update_index(docs, index, BuildOptions(embedder=FakeEmbedder(), count_tokens=word_count))
    assert report.removed == ["new_article"] and report.embedded == 0
    assert "new_article" not in {d.source for d in Store(index).documents.values()}


def test_old_versions_are_pruned_when_no_reader_uses_them(seeds):
    docs, index = seeds
    for _ in range(3):
        fake_build(docs, index)
    assert [p.name for p in index.glob("v-*")] == [current_version(index).name]


def test_a_version_in_use_survives_any_number_of_updates(seeds):
    docs, index = seeds
    reader = Engine(index, embedder=FakeEmbedder())
    first = reader.store.version
    for n in range(3):
        (docs / f"new{n}.txt").write_text(f"Story {n}\n\nThe ferry {n} sailed on Monday.\n")
        fake_build(docs, index)
    assert first.is_dir() and current_version(index) != first
    # The reader still answers from the version it opened, every file of it intact.
    answer = reader.ask("How many rockets landed at the Taji base?")
    assert answer.passages and reader.store.load_vectors().shape[0] == reader.store.passage_count
    reader.close()
    fake_build(docs, index)  # no reader now: only the live version is left
    assert [p.name for p in index.glob("v-*")] == [current_version(index).name]


def test_a_lease_held_by_another_process_keeps_its_version(seeds, tmp_path):
    import subprocess
    import sys

    docs, index = seeds
    script = (
        "import sys; from index.storage.reader import Store; s = Store(sys.argv[1]); "
        "print(s.version.name, flush=True); sys.stdin.read()"
    )
    reader = subprocess.Popen([sys.executable, "-c", script, str(index)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        held = reader.stdout.readline().strip()
        fake_build(docs, index)
        fake_build(docs, index)
        assert (index / held).is_dir() and current_version(index).name != held
    finally:
        reader.kill()  # a dead process's lease is gone with it
        reader.wait()
    fake_build(docs, index)
    assert not (index / held).exists()


def _garble(path):
    """Overwrite a file with garbage of the same size (its size check still passes)."""
    size = path.stat().st_size
    path.write_bytes(bytes((i * 7 + 13) % 256 for i in range(size)))


READS = {
    "documents": lambda store: store.documents,
    "passages": lambda store: store.passages([0, 1]),
    "passages_of": lambda store: store.passages_of(0),
    "bylines_of": lambda store: store.bylines_of([0, 1]),
    "passage_mask": lambda store: store.passage_mask(source="x"),
    "all_passages": lambda store: list(store.all_passages()),
}


@pytest.mark.parametrize("read", sorted(READS))
def test_every_store_read_maps_a_damaged_database_to_index_damaged(seeds, read):
    _, index = seeds
    store = Store(index)
    _garble(store.version / "passages.sqlite")
    with pytest.raises(IndexDamaged, match=r"is damaged \(passages.sqlite\): run `qa index build`"):
        READS[read](store)
    store.close()


@pytest.mark.parametrize("question, filters", [
    ("How many rockets landed at the Taji base?", {}),
    ("Who wrote the article about the Taji base?", {}),  # bylines
    ("How many rockets landed at the Taji base?", {"source": "voa"}),  # filtered ids
])
def test_a_database_damaged_under_a_running_engine_is_index_damaged(seeds, question,
                                                                     filters):
    from qa.filters import make_filters

    _, index = seeds
    engine = Engine(index, embedder=FakeEmbedder())
    _garble(engine.store.version / "passages.sqlite")
    with pytest.raises(IndexDamaged):
        engine.ask(question, filters=make_filters(**filters))
    engine.close()


def test_no_sql_outside_the_store():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    offenders = []
    # The storage wing: the index on disk and the two stores kept beside it (feedback, watches).
    storage = root / "index" / "storage"
    for path in [*root.glob("qa/**/*.py"), *root.glob("index/**/*.py"), root / "cli.py"]:
        if path.is_relative_to(storage):
            continue
        text = path.read_text()
        if "sqlite3" in text or ".execute(" in text or "SELECT " in text:
            offenders.append(path.name)
    assert offenders == []


def test_filters_selected_in_sql_match_the_filters_rules(seeds):
    """The store selects filtered articles in SQL; it must agree with ``Filters.matches`` (the
    rules as written) on every article, for every kind of filter."""
    import itertools

    import numpy as np

    from qa.filters import Filters

    _, index = seeds
    store = Store(index, expect=expected_for(FakeEmbedder()))
    try:
        docs = list(store.documents.values())
        passages = list(store.all_passages())
        dates = [None, "2019-12-31", "2020-01-02", "2020-01-03", "2030-01-01"]
        sources = [None, "voa", "VOA", "001_", "epoch", "EPOCH TIMES", "zzz"]
        checked = 0
        for as_of, since, until, source in itertools.product(dates, dates[:3], dates[::2],
                                                             sources):
            rules = Filters(source=source, since=since, until=until, as_of=as_of)
            accepted = {d.id for d in docs if rules.matches(d)}
            expected = np.array([p.doc in accepted for p in passages])
            got = store.passage_mask(as_of=as_of, since=since, until=until, source=source)
            assert np.array_equal(got, expected), rules
            checked += bool(accepted) and len(accepted) < len(docs)
        assert checked > 20  # many combinations select some articles but not all
    finally:
        store.close()


def _advice(path):
    """The VmFlags of this process's mapping of ``path`` (Linux's /proc/self/smaps)."""
    lines = open("/proc/self/smaps").read().splitlines()
    for n, line in enumerate(lines):
        if line.endswith(str(path)):
            for after in lines[n + 1:]:
                if after.startswith("VmFlags:"):
                    return after.split()[1:]
    raise AssertionError(f"{path} is not mapped")


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="Linux only")
def test_rescoring_vectors_are_mapped_without_read_ahead(tmp_path):
    """Re-scoring reads a few thousand scattered rows: their mapping is advised random
    (VmFlags "rr"), so a cold fault reads one page, not ~128 KB around it; other mappings
    keep the kernel's read-ahead."""
    from index.storage.vectors import load_npy

    for name in ("scattered", "plain"):
        np.save(tmp_path / f"{name}.npy", np.ones((4096, 384), dtype=np.int8))
    scattered = load_npy(tmp_path / "scattered.npy", scattered=True)
    plain = load_npy(tmp_path / "plain.npy")
    assert "rr" in _advice(tmp_path / "scattered.npy")
    assert "rr" not in _advice(tmp_path / "plain.npy")
    assert int(scattered[7].sum()) == int(plain[7].sum()) == 384


def test_leads_are_each_articles_first_story_passage(seeds):
    _, index = seeds
    store = Store(index)
    rows = list(store.all_passages())
    first = {}
    for row in rows:
        if row.kind == "text":
            first.setdefault(row.doc, row.id)
    kinds = {row.kind for row in rows}
    assert "byline" in kinds and len(first) == len(store.documents) > 1  # bylines come first
    assert store.leads(rows) == set(first.values())
    later = [row for row in rows if row.kind == "text" and row.id not in first.values()]
    assert later and store.leads(later) == set()


def test_only_articles_with_a_stated_date_have_leads(seeds):
    """The lead prior is for news stories: an article whose date was guessed from its text
    (or that has none) gets no lead."""
    _, index = seeds
    engine = Engine(index, embedder=FakeEmbedder())
    text = "Iran missile attack on US troops in Iraq"
    pool = engine.retrieve(text, engine.embed_question(text), 20)
    stated = {d.id for d in engine.store.documents.values()
              if d.date is not None and not d.date_inferred}
    assert stated and len(stated) < len(engine.store.documents)  # both kinds in the seeds
    leads = engine.store.leads([c.row for c in pool])
    assert any(c.lead for c in pool)
    for c in pool:
        assert c.lead == (c.id in leads and c.document.id in stated)
