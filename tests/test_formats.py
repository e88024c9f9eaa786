"""Archive formats in: HTML, JSON Lines, CSV, RSS and a gzipped WARC in one docs folder, each
article answerable with a verifiable citation and its true metadata (FakeEmbedder)."""

import gzip
import io
import json
import shutil

import pytest
from conftest import DATA, FakeCli, FakeEmbedder, fake_build, fold

from index.ingest.load import load_documents
from index.storage.reader import Store
from qa.engine import Engine

FORMATS = DATA / "formats"
FURNITURE = ["Home", "Related Stories", "newsletter", "cookies", "Copyright", "Privacy policy",
             "Council debates bridge tolls", "Subscribe"]


def write_warc(path):
    """A small crawl: an article page, a redirect, robots.txt and an image."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    page = (b"<html><head><title>Library extends weekend hours</title>"
            b'<meta property="og:site_name" content="Town Crier">'
            b'<meta name="author" content="Ken Ito">'
            b'<meta property="article:published_time" content="2023-02-14"></head><body>'
            b"<nav>Home | Local | Sport</nav><article><h1>Library extends weekend hours</h1>"
            b"<p>The town library will open on Sundays from April, the library board decided on "
            b"Tuesday, after a petition signed by two thousand residents.</p>"
            b"<p>The extra hours cost ninety thousand dollars a year, paid from a bequest left "
            b"by a former librarian, Edith Moss.</p></article>"
            b"<footer>Copyright Town Crier</footer></body></html>")
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=True)

        def response(uri, status, kind, body):
            headers = StatusAndHeaders(status, [("Content-Type", kind)], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(
                uri, "response", payload=io.BytesIO(body), http_headers=headers))

        response("https://towncrier.example/library-hours", "200 OK", "text/html; charset=utf-8",
                 page)
        response("https://towncrier.example/old", "301 Moved Permanently", "text/html", b"")
        response("https://towncrier.example/robots.txt", "200 OK", "text/plain",
                 b"User-agent: *\nDisallow:\n")
        response("https://towncrier.example/logo.png", "200 OK", "image/png", b"\x89PNG....")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    docs = root / "docs"
    shutil.copytree(FORMATS, docs)
    write_warc(docs / "crawl.warc.gz")
    warnings = []
    fake_build(docs, root / "index", warn=warnings.append, fields={"text": "story_body"})
    engine = Engine(root / "index", embedder=FakeEmbedder())
    yield docs, root / "index", engine, warnings
    engine.close()


CASES = [  # question, source, url, title, date, author, publisher
    ("When did the harbor ferry carry its first passengers?", "harbor",
     "https://www.harbortimes.example/news/2021/03/05/harbor-ferry-returns",
     "Harbor ferry returns after two years", "2021-03-05", "Ana Lima", "Harbor Times"),
    ("When will apricot pickers be hired in the valley?", "wire-apricot-2020",
     "https://valleynews.example/2020/06/01/apricot-harvest?utm_source=feed",
     "Orchard growers expect record apricot harvest", "2020-06-01", "Mia Chen, Sam Ortiz",
     "Valley News"),
    ("How big was the council budget that restores library hours?", "council-budget-2021",
     "https://citybeat.example/council-budget", "Council passes budget with library funds",
     "2021-03-16", "Dana Fox", "City Beat"),
    ("Who cleaned the blue whale skeleton bone by bone?", None,
     "https://museumdaily.example/whale-hall", "Museum reopens its whale hall", "2023-05-20",
     "Rosa Diaz", "Museum Daily"),
    ("How many steps did the lighthouse keeper climb every evening?", None,
     "https://coastdaily.example/2022/08/lighthouse-keeper",
     "Lighthouse keeper retires after forty years", "2022-08-08", "Ivy Hart", "Coast Daily"),
    ("Who left the bequest that pays for the library's Sunday hours?", None,
     "https://towncrier.example/library-hours", "Library extends weekend hours", "2023-02-14",
     "Ken Ito", "Town Crier"),
]


@pytest.mark.parametrize("question, source, url, title, date, author, publisher", CASES)
def test_each_format_answers_with_its_true_metadata(mixed, question, source, url, title, date,
                                                    author, publisher):
    _, _, engine, _ = mixed
    top = engine.ask(question, k=3).passages[0].citation
    assert (top.url, top.title, top.date, top.author, top.publisher) == (
        url, title, date, author, publisher)
    if source:
        assert top.source == source


def test_no_page_furniture_reaches_a_passage(mixed):
    _, index, _, _ = mixed
    store = Store(index)
    texts = [p.text for p in store.all_passages()]
    store.close()
    for word in FURNITURE:
        assert not [t for t in texts if word in t], word


def test_every_citation_verifies_through_qa_show(mixed):
    docs, index, engine, _ = mixed
    run = FakeCli(docs, index)
    checked = 0
    for question, *_ in CASES:
        for passage in engine.ask(question, k=5).passages:
            for c in [passage.citation, *passage.also]:
                shown = run(["show", c.source, "--json", "--span", f"{c.start}:{c.end}"])
                assert shown.exit_code == 0, shown.output
                article = json.loads(shown.stdout)
                assert article["url"] == c.url and article["title"] == c.title
                assert fold(article["text"][c.start:c.end]) == fold(passage.text) or c is not \
                    passage.citation
                checked += 1
    assert checked >= len(CASES)


def test_the_same_article_by_two_routes_is_indexed_once(mixed):
    docs, index, engine, _ = mixed
    store = Store(index)
    urls = [d.url for d in store.documents.values() if d.url and "harbor-ferry" in d.url]
    store.close()
    assert urls == ["https://www.harbortimes.example/news/2021/03/05/harbor-ferry-returns"]
    status = json.loads(FakeCli(docs, index)(["index", "status", "--json"]).stdout)
    assert status["duplicates"] == {"same URL": 1}


def test_summary_only_feed_items_are_indexed_as_summaries(mixed):
    _, _, engine, _ = mixed
    top = engine.ask("Why were the north tide pools closed?", k=1).passages[0]
    assert "two-week survey of sea star numbers" in top.text
    assert top.citation.url == "https://coastdaily.example/2022/09/tide-pools"


def test_bad_records_are_warned_with_file_and_line_and_the_rest_indexed(mixed):
    _, index, _, warnings = mixed
    assert any("export.jsonl, line 3: not valid JSON" in w for w in warnings)
    assert any("export.jsonl, line 4: no article text" in w for w in warnings)
    assert any("crawl.warc.gz: skipped" in w and "robots.txt" in w and "redirects" in w
               for w in warnings)
    store = Store(index)
    sources = {d.source for d in store.documents.values()}
    store.close()
    assert {"wire-apricot-2020", "council-budget-2021", "rail-strike-2022"} <= sources
    status = json.loads(FakeCli(mixed[0], index)(["index", "status", "--json"]).stdout)
    assert status["bad_records"] == 2
    assert any("export.jsonl, line 3" in line for line in status["bad_record_examples"])


@pytest.mark.parametrize("authors, expected", [
    (["Joe Johns Aileen Graef Holly Yan", "Joe Johns", "Aileen Graef", "Holly Yan"],
     "Joe Johns, Aileen Graef, Holly Yan"),
    (["Reuters Robert Shackelford", "Robert Shackelford"], "Robert Shackelford"),
    (["Ana Lima", "Lima"], "Ana Lima, Lima"),  # one word is no run of names
    (["Ana Lima", "Tom Ellis"], "Ana Lima, Tom Ellis"),
    (["Ana Lima Tom Ellis Kay Wu", "Tom Ellis", "Kay Wu"], "Tom Ellis, Kay Wu"),
    (["Ana Lima", "Tom Ellis", "Kay Wu"], "Ana Lima, Tom Ellis, Kay Wu"),
    ("By Ana Lima; Tom Ellis", "Ana Lima, Tom Ellis"),
])
def test_an_export_author_list_is_read_once(tmp_path, authors, expected):
    from index.ingest.formats import read_jsonl

    path = tmp_path / "export.jsonl"
    path.write_text(json.dumps({"title": "Harbor plan", "authors": authors, "text": (
        "The council approved the harbor plan on Tuesday after a long debate.")}) + "\n")
    (article,) = read_jsonl(path, "export.jsonl", lambda note: None)
    assert article.author == expected


@pytest.mark.parametrize("title, publisher, shown, outlet", [
    # The title a news API export states, as a search engine cut it and with its outlet.
    ("High-tech cars take the pain out of recalls, but there's a catch | CNN ...", None,
     "High-tech cars take the pain out of recalls, but there's a catch", "CNN"),
    ("Volkswagen recalls over 114,000 Beetles, Passats with Takata air ...", None,
     "Volkswagen recalls over 114,000 Beetles, Passats with Takata air …", None),
    ("Recalls, explained | Car Talk", "CNN", "Recalls, explained | Car Talk", "CNN"),
    ("Recalls, explained | CNN", "CNN", "Recalls, explained", "CNN"),
])
def test_an_export_title_is_shown_as_a_pages_is(tmp_path, title, publisher, shown, outlet):
    docs = tmp_path / "docs"
    docs.mkdir()
    record = {"id": "recalls", "title": title, "published": "2022-03-23", "text": (
        "CNN —\n\nTesla recently issued four vehicle recalls in a 12-day span, the company "
        "said on Monday.\n\nOwners did not have to take their cars to a dealership.\n")}
    if publisher:
        record["publisher"] = publisher
    (docs / "export.jsonl").write_text(json.dumps(record) + "\n")
    fake_build(docs, tmp_path / "index")
    engine = Engine(tmp_path / "index", embedder=FakeEmbedder())
    top = engine.ask("How many recalls did Tesla issue?", k=1).passages[0].citation
    engine.close()
    assert (top.title, top.publisher) == (shown, outlet)


def _page(title, words):
    body = "".join(f"<p>{title} paragraph {i}: the harbour board met on Tuesday and agreed to "
                   f"spend {i} thousand dollars on the north pier.</p>" for i in range(words))
    return (f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>"
            f"{body}</article></body></html>").encode()


@pytest.mark.parametrize("gz", [False, True], ids=["warc", "warc.gz"])
def test_a_warc_record_cut_short_is_warned_with_file_and_record_and_skipped(tmp_path, gz):
    """The file ends in the middle of the third record's body (fewer bytes than its
    Content-Length): that record is bad input, named by file and record, and not indexed;
    the two whole records before it are."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    out = io.BytesIO()
    writer = WARCWriter(out, gzip=gz)
    titles = ["Pier repairs approved", "Ferry fares frozen", "Lighthouse sold"]
    for n, title in enumerate(titles, start=1):
        headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], "HTTP/1.1")
        writer.write_record(writer.create_warc_record(
            f"https://port.example/{n}", "response", payload=io.BytesIO(_page(title, 30)),
            http_headers=headers))
        if n == 2:
            second_ends = out.tell()
    data = out.getvalue()
    docs = tmp_path / "docs"
    docs.mkdir()
    name = "crawl.warc.gz" if gz else "crawl.warc"
    (docs / name).write_bytes(data[: second_ends + (len(data) - second_ends) * 3 // 4])
    warnings = []
    fake_build(docs, tmp_path / "index", warn=warnings.append)
    cut = [w for w in warnings if "cut short" in w]
    assert len(cut) == 1 and cut[0].startswith(f"{docs / name}, record 3"), warnings
    store = Store(tmp_path / "index")
    titles_indexed = sorted(d.title for d in store.documents.values())
    store.close()
    assert titles_indexed == sorted(titles[:2])
    status = json.loads(FakeCli(docs, tmp_path / "index")(["index", "status", "--json"]).stdout)
    assert status["bad_records"] == 1 and status["bad_record_examples"] == cut


def test_a_truncated_gzip_export_keeps_the_records_before_the_break(tmp_path):
    data = gzip.compress((FORMATS / "export.jsonl").read_bytes())
    (tmp_path / "cut.jsonl.gz").write_bytes(data[: len(data) * 2 // 3])
    warnings = []
    found = list(load_documents(tmp_path / "cut.jsonl.gz", warnings.append))
    assert [d.source for d in found][:1] == ["wire-apricot-2020"]
    assert any("truncated or corrupt" in w for w in warnings)


def test_html_without_an_article_is_skipped_with_a_reason(tmp_path):
    (tmp_path / "menu.html").write_text("<html><body><nav><a href=/>Home</a></nav></body></html>")
    (tmp_path / "story.txt").write_text("Story\n\nThe ferry to Tiree sailed on Monday at dawn.\n")
    warnings, skipped = [], []
    found = list(load_documents(tmp_path, warnings.append, skipped.append))
    assert [d.source for d in found] == ["story"]
    assert [(s.source, s.reason) for s in skipped] == [("menu", "an HTML page with no article "
                                                                 "text")]


def test_changing_one_record_reembeds_only_that_record(tmp_path):
    export = tmp_path / "docs" / "export.jsonl"
    export.parent.mkdir()
    lines = [json.dumps({"id": f"story-{n}", "title": f"Story {n}",
                         "text": f"Story number {n} says the ferry {n} left the harbor at dawn."})
             for n in range(30)]
    export.write_text("\n".join(lines) + "\n")
    fake_build(export.parent, tmp_path / "index")
    lines[7] = json.dumps({"id": "story-7", "title": "Story 7",
                           "text": "Story number 7 now says the ferry stayed in port all day."})
    del lines[20]
    export.write_text("\n".join(lines) + "\n")
    report = fake_build(export.parent, tmp_path / "index", reuse_vectors=True)
    assert report.embedded == 1 and report.changed == ["export"]
    store = Store(tmp_path / "index")
    sources = {d.source for d in store.documents.values()}
    store.close()
    assert "story-20" not in sources and len(sources) == 29


def test_a_single_file_can_be_the_docs(tmp_path):
    run = FakeCli(FORMATS / "export.csv", tmp_path / "index")
    built = run(["index", "build", "--field", "text=story_body"])
    assert built.exit_code == 0, built.output
    answer = json.loads(run(["ask", "Which bakery won the national bread prize?", "--json",
                             "--show-weak"]).stdout)
    assert answer["passages"][0]["citation"]["url"] == "https://museumdaily.example/bread-prize"
    bad = run(["index", "build", "--field", "body"])
    assert bad.exit_code == 2 and "NAME=COLUMN" in bad.output


def test_a_duplicate_file_is_not_reported_as_new_forever(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    story = " ".join(f"The ferry number {n} left the harbor at dawn with {n} passengers."
                     for n in range(12))
    (docs / "a.txt").write_text(f"Ferry\n\n{story}\n")
    (docs / "b.txt").write_text(f"Ferry\n\n{story}\n")
    run = FakeCli(docs, tmp_path / "index")
    assert run(["index", "build"]).exit_code == 0
    status = json.loads(run(["index", "status", "--json"]).stdout)
    assert status["duplicates"] == {"near-identical text": 1}
    assert status["up_to_date"] is True and status["added"] == []


def test_two_stories_sharing_a_sites_furniture_are_both_kept(tmp_path):
    furniture = " ".join(f"Menu item {n} Subscribe Sign in Newsletter Weather Sports" for n in
                         range(25))
    first = " ".join(f"The ferry number {n} left the harbor at dawn." for n in range(8))
    second = " ".join(f"The council vote number {n} passed after a long debate." for n in range(8))
    (tmp_path / "a.txt").write_text(f"Ferry\n\n{furniture}\n\n{first}\n")
    (tmp_path / "b.txt").write_text(f"Council\n\n{furniture}\n\n{second}\n")
    dropped = []
    found = list(load_documents(tmp_path, duplicate=dropped.append))
    assert [d.source for d in found] == ["a", "b"] and dropped == []


def test_exports_in_other_charsets_are_decoded_and_reported(tmp_path):
    text = "The café’s “Tuesday” menu drew long queues — owners said prices stayed at 3 €."
    (tmp_path / "excel.csv").write_bytes(
        f'id,title,text\ncafe-1,Café queues,"{text}"\n'.encode("cp1252"))
    (tmp_path / "utf16.jsonl").write_bytes(
        (json.dumps({"id": "cafe-2", "text": text + " Again."}, ensure_ascii=False) + "\n"
         ).encode("utf-16"))
    problems = []
    found = {d.source: d for d in load_documents(tmp_path, bad=problems.append)}
    assert found["cafe-1"].text == text and found["cafe-1"].article.title == "Café queues"
    assert found["cafe-2"].text == text + " Again."
    assert any("excel.csv is not UTF-8: read it as cp1252" in p for p in problems)
    assert any("utf16.jsonl is not UTF-8: read it as utf-16" in p for p in problems)


def test_each_article_keeps_the_language_its_format_states(mixed):
    docs, index, _, _ = mixed
    run = FakeCli(docs, index)
    assert json.loads(run(["show", "harbor", "--json"]).stdout)["language"] == "en"
    store = Store(index)
    languages = {d.url: d.language for d in store.documents.values()}
    store.close()
    assert languages["https://coastdaily.example/2022/08/lighthouse-keeper"] == "en-gb"
    assert languages["https://citybeat.example/rail-strike"] == "en-US"
    assert languages["https://citybeat.example/council-budget"] is None  # never guessed


def test_a_name_only_in_an_articles_metadata_counts_as_mentioned(mixed):
    _, _, engine, _ = mixed
    # "Dana Fox" is the export's byline field, never in any article text.
    answer = engine.ask("Did Dana Fox report on the council budget vote?")
    assert "never mentions" not in (answer.reason or "")
    assert engine.ask("Did Dana Foxglove report on the council budget vote?").reason == \
        "the archive never mentions Foxglove"


def test_an_export_is_hashed_once_per_build_not_once_per_record(tmp_path, monkeypatch):
    from index.ingest import describe

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "export.jsonl").write_text("".join(
        json.dumps({"id": f"story-{n}", "text": f"Story {n} says the ferry number {n} left the "
                    "harbor at dawn with forty passengers on board."}) + "\n"
        for n in range(30)))
    hashed = []
    real = describe.path_entry
    monkeypatch.setattr(describe, "path_entry",
                        lambda path, **extra: hashed.append(path) or real(path, **extra))
    fake_build(docs, tmp_path / "index")
    assert [p.name for p in hashed] == ["export.jsonl"]
