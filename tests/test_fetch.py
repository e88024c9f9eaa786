"""`qa fetch` against a web server on 127.0.0.1: pages saved with where they came from,
robots.txt honoured, redirects, size cap, timeouts, feeds; then the index is updated."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import DATA, FakeCli

from index.ingest.fetch import Fetcher, fetch

ARTICLE = (DATA / "formats" / "harbor.html").read_bytes().replace(
    b'<link rel="canonical" href="https://www.harbortimes.example/news/2021/03/05/harbor-ferry'
    b'-returns">', b"")
SECOND = (b"<html><head><title>Rail workers end strike</title></head><body><article>"
          b"<h1>Rail workers end strike</h1><p>Rail workers ended a nine-day strike on Wednesday "
          b"after the operator agreed to a six percent pay rise over two years.</p><p>Trains "
          b"will run a normal timetable from Thursday morning, the operator said.</p></article>"
          b"</body></html>")


class Site(BaseHTTPRequestHandler):
    seen: list = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        Site.seen.append((self.path, self.headers.get("User-Agent")))
        routes = {
            "/robots.txt": (200, "text/plain", b"User-agent: *\nDisallow: /private/\n"),
            "/news/ferry.html": (200, "text/html; charset=utf-8", ARTICLE),
            "/news/rail.html": (200, "text/html", SECOND),
            "/private/secret.html": (200, "text/html", ARTICLE),
            "/big.html": (200, "text/html", b"<html>" + b"x" * 50_000 + b"</html>"),
            "/logo.png": (200, "image/png", b"\x89PNG"),
            "/feed.xml": (200, "application/rss+xml", (
                b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
                b"<item><title>Rail</title><link>%s/news/rail.html</link></item>"
                b"<item><title>Gone</title><link>%s/missing.html</link></item>"
                b"</channel></rss>") % (self.base.encode(), self.base.encode())),
        }
        if self.path == "/old-ferry":
            self.send_response(301)
            self.send_header("Location", "/news/ferry.html")
            self.end_headers()
            return
        if self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
            return
        if self.path == "/slow.html":
            time.sleep(3)
        if self.path == "/trickle.html":
            trickle(self)
            return
        status, kind, body = routes.get(self.path, (404, "text/plain", b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def trickle(handler):
    """200 with a Content-Length of 1,000,000, then 8 bytes a second until the client goes."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html")
    handler.send_header("Content-Length", "1000000")
    handler.end_headers()
    try:
        while True:
            handler.wfile.write(b"<p>slow ")
            handler.wfile.flush()
            time.sleep(1)
    except OSError:  # the client shut the connection
        pass


class Trickler(BaseHTTPRequestHandler):
    """A site whose every answer trickles, robots.txt included."""

    def do_GET(self):  # noqa: N802
        trickle(self)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that gave up (size cap, timeout) is what the tests make happen


@pytest.fixture(scope="module")
def site():
    server = Server(("127.0.0.1", 0), Site)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    Site.base = base
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()


def test_pages_are_saved_with_their_origin_and_failures_reported(site, tmp_path):
    warnings = []
    urls = [f"{site}/old-ferry", f"{site}/private/secret.html", f"{site}/big.html",
            f"{site}/logo.png", f"{site}/missing.html", f"{site}/loop", f"{site}/slow.html"]
    results = fetch(urls, tmp_path, warn=warnings.append,
                    fetcher=Fetcher(timeout=1, max_bytes=20_000, max_redirects=3))
    by_url = {r.url: r for r in results}
    ferry = by_url[f"{site}/old-ferry"]
    assert ferry.final_url == f"{site}/news/ferry.html" and ferry.status == 200
    sidecar = json.loads(next(tmp_path.glob("*.fetch.json")).read_text())
    assert sidecar["url"] == f"{site}/old-ferry" and sidecar["final_url"] == ferry.final_url
    reasons = {url.rsplit("/", 1)[1]: r.error for url, r in by_url.items() if r.error}
    assert reasons == {"secret.html": "robots.txt disallows it",
                       "big.html": "larger than 20,000 bytes",
                       "logo.png": "not a page of the expected kind (image/png)",
                       "missing.html": "HTTP 404", "loop": "too many redirects",
                       "slow.html": "timed out"}
    assert len(warnings) == 6 and len(list(tmp_path.glob("*.html"))) == 1
    assert all(agent.startswith("newsqa-fetch/") for _, agent in Site.seen)


@pytest.fixture(scope="module")
def trickler():
    server = Server(("127.0.0.1", 0), Trickler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_trickling_server_times_out_as_a_whole_and_the_others_are_fetched(
        site, trickler, tmp_path):
    """--timeout bounds all of a URL (robots.txt, every read), not each read: a page sent 8
    bytes a second, and a site whose robots.txt is, are each reported as timed out."""
    run = FakeCli(tmp_path / "docs", tmp_path / "index")
    urls = [f"{site}/trickle.html", f"{trickler}/story.html", f"{site}/news/ferry.html"]
    done = {}
    worker = threading.Thread(
        target=lambda: done.update(result=run(["fetch", *urls, "--timeout", "2"])), daemon=True)
    worker.start()
    worker.join(60)  # a read timeout alone would let this run for 1,000,000 / 8 seconds
    assert not worker.is_alive(), "qa fetch --timeout 2 was still running after 60 s"
    result = done["result"]
    assert result.exit_code == 0, result.output
    assert f"could not fetch {site}/trickle.html: timed out" in result.stderr
    assert f"could not fetch {trickler}/story.html: timed out" in result.stderr
    assert "fetched 1 of 3 page(s)" in result.stderr
    saved = list((tmp_path / "docs").glob("*.fetch.json"))
    assert [json.loads(p.read_text())["final_url"] for p in saved] == [urls[2]]


def test_qa_fetch_updates_the_index_and_cites_the_page_url(site, tmp_path):
    docs = tmp_path / "archive"
    run = FakeCli(docs, tmp_path / "index")
    result = run(["fetch", f"{site}/news/ferry.html", f"{site}/missing.html"])
    assert result.exit_code == 0, result.output
    assert "could not fetch" in result.stderr and "fetched 1 of 2 page(s)" in result.stderr
    answer = json.loads(run(["ask", "When did the harbor ferry carry its first passengers?",
                             "--json", "--show-weak"]).stdout)
    assert answer["passages"][0]["citation"]["url"] == f"{site}/news/ferry.html"
    feed = run(["fetch", "--feed", f"{site}/feed.xml"])
    assert feed.exit_code == 0, feed.output
    rail = json.loads(run(["ask", "How long did the rail strike last?", "--json",
                           "--show-weak"]).stdout)
    assert rail["passages"][0]["citation"]["url"] == f"{site}/news/rail.html"


def test_nothing_fetched_is_a_one_line_error(site, tmp_path):
    result = FakeCli(tmp_path / "docs", tmp_path / "index")(["fetch", f"{site}/missing.html"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: nothing was fetched")
