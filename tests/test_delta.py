"""Updates of a large index write a delta beside the live base instead of a whole new version
(index.ingest.delta.DELTA_FROM; forced here on small indexes): what the delta holds, that it
answers as a whole rebuild of the same docs would, that the base is shared and not rewritten,
that a delta past its bound is folded into a whole rebuild, and the parts it is made of."""

import json
import os
import shutil

import numpy as np
import pytest
from conftest import NEW_ARTICLE_TEXT, SEEDS, FakeCli, FakeEmbedder, fake_build, fake_index, fold
from test_lifecycle import NEW_ARTICLE

from index.ingest import delta
from index.storage import lexical
from index.storage.layout import DELTA, FILES, current_version
from index.storage.reader import Store
from index.storage.vectors import NumpyIndex, Quantized, Stacked, StackedIndex, quantize
from qa.engine import Engine

TAJI = "How many rockets landed at the Taji base?"


@pytest.fixture
def deltas(monkeypatch):
    monkeypatch.setattr(delta, "DELTA_FROM", 0)
    monkeypatch.setattr(delta, "DELTA_SHARE", 1.0)


def _update(docs, index, embedder=None):
    return fake_build(docs, index, reuse_vectors=True, embedder=embedder or FakeEmbedder())


def _live(index):
    store = Store(index)
    try:
        rows = {(store.document(p.doc).source, p.start, p.end, p.text, p.hash)
                for p in store.all_passages()}
        return rows, store.manifest
    finally:
        store.close()


def _sources(answer):
    return [p.citation.source for p in answer.passages]


def test_an_update_writes_a_delta_that_answers_like_a_whole_rebuild(tmp_path, deltas):
    docs, index = fake_index(tmp_path / "a")
    shared = ("passages.sqlite", "vectors.npy", "scales.npy", "bm25/data.csc.index.npy")
    inodes = [(current_version(index) / name).stat().st_ino for name in shared]
    taji = next(p for p in docs.iterdir() if "18 rockets" in p.read_text())
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE)
    gone = sorted(p for p in docs.iterdir() if p != taji and p.name != "zanzibar.txt")[0]
    gone.unlink()
    changed = sorted(p for p in docs.iterdir() if p not in (taji, gone) and p.suffix == ".txt"
                     and p.name != "zanzibar.txt")[0]
    changed.write_text(changed.read_text() + "\nThe Zanzibar ferry is running again.\n")

    embedder = FakeEmbedder()
    report = _update(docs, index, embedder)

    rows, manifest = _live(index)
    delta = manifest["delta"]
    assert report.added == ["zanzibar"] and report.removed == [gone.stem]
    assert report.changed == [changed.stem]
    assert delta["removed"]["documents"] == 2  # the deleted article and the changed one's old copy
    assert delta["documents"] == 2 and delta["base"]["passages"] > delta["passages"] >= 2
    # Only the new passages were embedded: the changed article's others kept their vectors.
    new_rows = [r for r in rows if r[0] in ("zanzibar", changed.stem)]
    assert report.embedded == embedder.calls < len(new_rows)
    # The base's files are the previous version's, hard-linked, not written again.
    version = current_version(index)
    assert [(version / name).stat().st_ino for name in shared] == inodes
    assert [v.name for v in index.glob("v-*")] == [version.name]  # the old one pruned
    assert (version / DELTA / "passages.sqlite").exists()
    assert manifest["counts"] == {"documents": len(list(docs.iterdir())),
                                  "passages": len(rows), "files": len(list(docs.iterdir()))}

    # The same docs built whole hold the same passages, and answer the same.
    whole = tmp_path / "whole"
    fake_build(docs, whole)
    whole_rows, whole_manifest = _live(whole)
    assert rows == whole_rows and "delta" not in whole_manifest
    engines = [Engine(index, embedder=FakeEmbedder()), Engine(whole, embedder=FakeEmbedder())]
    for question in (TAJI, "When did the Zanzibar harbour reopen?", "Zanzibar ferry"):
        answers = [e.ask(question) for e in engines]
        assert _sources(answers[0]) == _sources(answers[1])
        assert [p.citation.start for p in answers[0].passages] == \
            [p.citation.start for p in answers[1].passages]
    top = engines[0].ask("When did the Zanzibar harbour reopen?").passages[0]
    text = (docs / "zanzibar.txt").read_text()
    assert fold(text[top.citation.start:top.citation.end]) == fold(top.text)
    assert gone.stem not in {d.source for d in engines[0].store.documents.values()}
    for e in engines:
        e.close()


def test_a_delta_writes_its_own_file_list_and_leaves_the_bases_alone(tmp_path, deltas):
    docs, index = fake_index(tmp_path)
    reader = Store(index)  # holds the previous version while the update publishes the next
    before = (reader.version / FILES).read_text()
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE)
    _update(docs, index)
    version = current_version(index)
    assert version != reader.version and (version / DELTA).is_dir()
    # Not a link to the base's list (writing it would have rewritten the previous version's).
    assert (reader.version / FILES).read_text() == before and "zanzibar" not in before
    assert (version / FILES).stat().st_nlink == 1
    assert "zanzibar" in json.loads((version / FILES).read_text())
    assert "files" not in json.loads((version / "manifest.json").read_text())
    reader.close()


def test_removed_articles_are_never_found_however_the_question_is_filtered(tmp_path, deltas):
    docs, index = fake_index(tmp_path)
    taji = next(p for p in docs.iterdir() if "18 rockets" in p.read_text())
    engine = Engine(index, embedder=FakeEmbedder())
    assert taji.stem in _sources(engine.ask(TAJI))
    engine.close()
    taji.unlink()
    _update(docs, index)
    store = Store(index)
    assert store.live is not None and not store.live.all()
    engine = Engine(index, embedder=FakeEmbedder())
    from qa.filters import Filters

    for filters in (None, Filters(as_of="2030-01-01"), Filters(source="0")):
        answer = engine.ask(TAJI, k=10, filters=filters)
        assert taji.stem not in _sources(answer)
    assert engine.store.document_named(taji.stem) is None
    gone = set(store.passage_docs[~store.live].tolist())
    pool = engine.retrieve("Taji rockets", engine.embed_question("Taji rockets"), 10)
    assert pool and not any(c.row.doc in gone for c in pool)
    engine.close()
    store.close()


def test_a_second_update_carries_the_delta_over_and_drops_what_left(tmp_path, deltas):
    docs, index = fake_index(tmp_path)
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE)
    _update(docs, index)
    (docs / "ferry.txt").write_text(NEW_ARTICLE_TEXT)
    embedder = FakeEmbedder()
    report = _update(docs, index, embedder)
    rows, manifest = _live(index)
    assert report.added == ["ferry"] and manifest["delta"]["carried"]["documents"] == 1
    assert embedder.calls == report.embedded == len([r for r in rows if r[0] == "ferry"])
    (docs / "zanzibar.txt").unlink()
    report = _update(docs, index)
    rows, manifest = _live(index)
    assert report.removed == ["zanzibar"] and report.embedded == 0
    assert {r[0] for r in rows} >= {"ferry"} and "zanzibar" not in {r[0] for r in rows}
    assert manifest["delta"]["documents"] == 1 and manifest["delta"]["removed"]["documents"] == 0


def test_status_says_what_updates_added_beside_the_last_build(tmp_path, deltas):
    docs, index = fake_index(tmp_path)
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE)
    cli = FakeCli(docs, index)
    result = cli(["index", "update"])
    assert result.exit_code == 0, result.output
    state = json.loads(cli(["index", "status", "--json"]).stdout)
    assert state["up_to_date"] and state["delta"]["articles"] == 1
    assert state["documents"] == 6 and state["delta"]["removed_articles"] == 0
    text = " ".join(cli(["index", "status"]).output.split())
    assert "updates added 1 article(s)" in text
    answer = cli(["ask", "When did the Zanzibar harbour reopen?", "--json"])
    assert json.loads(answer.stdout)["passages"][0]["citation"]["source"] == "zanzibar"


def test_a_delta_past_its_bound_is_folded_into_a_whole_rebuild(tmp_path, monkeypatch):
    docs, index = fake_index(tmp_path)
    monkeypatch.setattr(delta, "DELTA_FROM", 0)
    monkeypatch.setattr(delta, "DELTA_MIN", 0)
    monkeypatch.setattr(delta, "DELTA_SHARE", 0.05)
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE_TEXT)  # one passage: within 5% of 34
    _update(docs, index)
    assert "delta" in _live(index)[1]
    (docs / "more.txt").write_text(NEW_ARTICLE + "\n\n" + NEW_ARTICLE.replace("Zanzibar", "Pemba"))
    report = _update(docs, index)
    rows, manifest = _live(index)
    assert "delta" not in manifest and {"more", "zanzibar"} <= {r[0] for r in rows}
    assert report.added == ["more"]
    assert not (current_version(index) / DELTA).exists()


def test_a_small_index_is_rebuilt_whole(tmp_path):
    docs, index = fake_index(tmp_path)
    assert delta.DELTA_FROM > Store(index).passage_count
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE)
    _update(docs, index)
    assert "delta" not in _live(index)[1]


def test_a_damaged_delta_is_reported_as_damage(tmp_path, deltas):
    from index.errors import IndexDamaged

    docs, index = fake_index(tmp_path)
    (docs / "zanzibar.txt").write_text(NEW_ARTICLE)
    _update(docs, index)
    target = current_version(index) / DELTA / "vectors.npy"
    os.truncate(target, target.stat().st_size - 10)
    with pytest.raises(IndexDamaged):
        Store(index)


def test_a_delta_of_an_export_replaces_only_the_changed_files_articles(tmp_path, deltas):
    docs = tmp_path / "docs"
    shutil.copytree(SEEDS, docs)

    def export(name, articles):
        lines = [json.dumps({"id": f"{name}-{n}", "title": title, "text": text,
                             "date": f"2024-03-0{n + 1}"})
                 for n, (title, text) in enumerate(articles)]
        (docs / f"{name}.jsonl").write_text("\n".join(lines) + "\n")

    zanzibar = ("Zanzibar harbour", NEW_ARTICLE)
    pemba = ("Pemba harbour", NEW_ARTICLE.replace("Zanzibar", "Pemba"))
    export("wire", [zanzibar])
    export("feed", [pemba])
    index = tmp_path / "index"
    fake_build(docs, index)
    export("wire", [zanzibar, ("Mafia island", NEW_ARTICLE.replace("Zanzibar", "Mafia"))])
    report = _update(docs, index)
    rows, manifest = _live(index)
    assert report.changed == ["wire"] and manifest["delta"]["removed"]["documents"] == 1
    sources = {r[0] for r in rows}
    assert {"wire-0", "wire-1", "feed-0"} <= sources
    assert len([r for r in rows if r[0] == "wire-0"]) == len([r for r in rows
                                                               if r[0] == "feed-0"])
    store = Store(index)
    doc = store.document_named("wire-1")
    text = store.stored_text(doc.id)
    for p in store.passages_of(doc.id):
        assert fold(text[p.start:p.end]) == fold(p.text)


# ------------------------------------------------------------------ the parts


def test_stacked_vectors_read_score_and_copy_as_one_matrix():
    rng = np.random.default_rng(0)
    base_rows = rng.normal(size=(50, 16)).astype(np.float32)
    delta_rows = rng.normal(size=(20, 16)).astype(np.float32)
    base, delta = Quantized(*quantize(base_rows)), Quantized(*quantize(delta_rows))
    stacked = Stacked(base, delta)
    whole = np.vstack([base[:], delta[:]])
    query = rng.normal(size=16).astype(np.float32)
    rows = np.array([60, 3, 49, 50, 12, 69])
    assert stacked.shape == (70, 16) and len(stacked) == 70
    np.testing.assert_allclose(stacked.dot(query), whole @ query, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stacked.dot(query, rows), whole[rows] @ query, rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_array_equal(stacked[rows], whole[rows])
    codes, scales = stacked.take(rows)
    assert (codes[0] == delta.codes[10]).all() and scales[1] == base.scales[3]

    index = StackedIndex(NumpyIndex(16, base), NumpyIndex(16, delta))
    expect_scores, expect_ids = NumpyIndex(16, whole).search(query[None], 7)
    scores, ids = index.search(query[None], 7)
    np.testing.assert_array_equal(ids, expect_ids)
    np.testing.assert_allclose(scores, expect_scores, rtol=1e-6)


def test_stacked_keyword_index_scores_as_one_index_with_the_archives_idf(tmp_path):
    # Passages of equal length: the two parts' average lengths are the whole's, so the
    # stacked scores must equal those of one index over all passages.
    words = "harbour ferry cyclone island port minister rocket base budget school".split()
    rng = np.random.default_rng(1)
    texts = [" ".join(rng.choice(words, 6)) for _ in range(40)]
    lexical.build(texts[:30], tmp_path / "base")
    lexical.build(texts[30:], tmp_path / "delta")
    lexical.build(texts, tmp_path / "whole")
    stacked = lexical.StackedBm25(lexical.load(tmp_path / "base"),
                                  lexical.load(tmp_path / "delta"))
    whole = lexical.load(tmp_path / "whole")
    assert stacked.num_docs == 40 and "ferri" in stacked.vocab_dict
    for query in ("ferry harbour", "rocket base budget", "island island school", "unknown"):
        np.testing.assert_allclose(stacked.search(query), whole.search(query), rtol=1e-5)
    for term in ("ferri", "harbour", "absent"):
        assert stacked.idf(term) == pytest.approx(whole.idf(term), rel=1e-9)
    assert sorted(stacked.vocab_dict) == sorted(t for t in whole.vocab_dict)


def test_names_only_in_titles_are_known_without_reading_every_article(tmp_path, deltas):
    docs, index = fake_index(tmp_path)
    (docs / "festival.txt").write_text(
        "Quetzalcoatl Festival Draws Crowds\n\nMarch 3, 2021\n\nThousands came to the old "
        "town square on Sunday for music, dancing and food, the organisers said.\n")
    _update(docs, index)  # a delta: the base's terms and the delta's, both saved
    engine = Engine(index, embedder=FakeEmbedder())

    def unread():
        raise AssertionError("read every article's metadata at query time")

    engine.store.metadata_texts = unread
    stem = engine.analyzer.analyze("Quetzalcoatl")[0]
    assert stem not in engine.store.bm25.vocab_dict  # only in the title
    assert engine._known(stem) and not engine._known("xylophonist")
    assert stem in engine.store.bm25.metadata_terms
    engine.close()
