"""Readers for archive formats other than plain text: HTML pages, JSON Lines and CSV exports,
RSS/Atom feeds and WARC crawls. Each yields ``Article``s: the article's text (what passages
and citation offsets refer to, stored in the index) plus the metadata the format states.

One small interface: a reader is a function ``(path, source, bad) -> Iterator[Article]``,
registered in ``READERS`` by file suffix. Bad input inside a file (a malformed record, a
truncated stream, a guessed charset) is told to ``bad`` with file and line, and skipped; the
rest of the file is read. The libraries the field uses do the parsing:
trafilatura (article extraction, metadata from JSON-LD and OpenGraph), htmldate, feedparser,
warcio.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..docs import format_of
from ..urls import sidecar_url, url_source
from .meta import runs_together

Warn = Callable[[str], None]

# Field names of news API and CMS exports, most specific first.
FIELDS: dict[str, tuple[str, ...]] = {
    "text": ("text", "content", "body", "article_text", "article", "full_text", "story"),
    "title": ("title", "headline", "name"),
    "url": ("url", "link", "canonical_url", "permalink", "uri"),
    "date": ("date", "published", "published_at", "publishedAt", "pubDate", "publish_date",
             "datePublished", "created_at", "time"),
    "author": ("author", "authors", "byline", "creator", "writer"),
    "publisher": ("publisher", "source", "site_name", "outlet", "sitename", "provider"),
    "id": ("id", "uuid", "guid", "article_id", "doc_id"),
    "language": ("language", "lang"),
}
MIN_WORDS = 12
# Codec names (as codecs.lookup spells them) of encodings with multi-byte characters.
MULTI_BYTE = ("utf", "shift_jis", "euc", "gb", "big5", "cp932", "cp949", "cp950", "iso2022",
              "hz", "johab")


@dataclass(frozen=True)
class Article:
    """An article a reader found: ``text`` is what gets indexed and cited."""

    source: str
    text: str
    url: str | None = None
    title: str | None = None
    date: str | None = None  # YYYY-MM-DD
    # As the page or record states them; None where it does not (never guessed here).
    author: str | None = None
    publisher: str | None = None
    language: str | None = None
    line: int | None = None  # the record's line (or item number) in its file
    extras: dict[str, Any] = field(default_factory=dict, compare=False)


def _open_binary(path: Path) -> Any:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def sniff_encoding(sample: bytes) -> str:
    """The text encoding of an export that declares none, from its first bytes: a byte-order
    mark, else UTF-8 if it decodes, else what charset_normalizer finds for multi-byte
    encodings (UTF-16, CJK), else Windows-1252 (the web's default for unlabelled Western
    text, which charset_normalizer often mistakes for a Central European code page), else
    its guess, else Latin-1 (every byte decodes)."""
    for bom, name in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"),
                      (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
                      (codecs.BOM_UTF16_BE, "utf-16")):
        if sample.startswith(bom):
            return name
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    import charset_normalizer

    best = charset_normalizer.from_bytes(sample[:200_000]).best()
    guess = best.encoding if best is not None else None
    if guess and codecs.lookup(guess).name.startswith(MULTI_BYTE):
        return guess
    try:
        sample.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return guess or "latin-1"


def _open_text(path: Path, bad: Warn) -> io.TextIOBase:
    """A text stream over ``path`` (gunzipped when it ends in .gz) in its sniffed encoding
    (``bad`` is told when that is not UTF-8); bytes that still do not decode become
    replacement characters rather than stopping the read."""
    with _open_binary(path) as f:
        try:
            sample = f.read(1 << 20)
        except (EOFError, OSError, zlib.error):
            sample = b""  # a broken gzip: the reader reports the break where it happens
    encoding = sniff_encoding(sample)
    if encoding not in ("utf-8", "utf-8-sig"):
        bad(f"{path} is not UTF-8: read it as {encoding}")
    return io.TextIOWrapper(_open_binary(path), encoding=encoding, errors="replace", newline="")


# --- HTML ----------------------------------------------------------------------------------

def extract_html(html: str | bytes, url: str | None = None) -> Article | None:
    """The article of a web page (trafilatura: boilerplate, navigation, asides and footers
    out; metadata from JSON-LD, OpenGraph and meta tags; the date with htmldate), or None
    when the page holds no article text."""
    import logging

    import trafilatura

    logging.getLogger("trafilatura").setLevel(logging.ERROR)
    found = trafilatura.bare_extraction(
        html, url=url, with_metadata=True, include_comments=False, include_tables=False,
        favor_precision=True,
    )
    if found is None:
        return None
    data = found.as_dict() if hasattr(found, "as_dict") else dict(found)
    lines = [line.strip() for line in (data.get("text") or "").splitlines()]
    title = (data.get("title") or "").strip() or None
    # The headline often opens the extracted text: it is the title, not the story.
    if lines and title and lines[0] == title:
        lines = lines[1:]
    text = "\n\n".join(line for line in lines if line)
    if len(text.split()) < MIN_WORDS:  # a menu or a caption is not an article
        return None
    page = html.decode("utf-8", "replace") if isinstance(html, bytes) else html
    match = re.search(r'<link[^>]+rel=["\']?canonical["\']?[^>]*href=["\']([^"\']+)',
                      page[:200_000], re.I)
    canonical = match.group(1) if match else None
    return Article(
        source="",
        text=text,
        url=canonical or data.get("url") or url,
        title=title,
        date=_iso(data.get("date")),
        author=_author(data.get("author")),
        publisher=(data.get("sitename") or "").strip() or None,
        language=data.get("language") or _page_language(page[:200_000]),
        extras={"fingerprint": data.get("fingerprint")},
    )


def _page_language(head: str) -> str | None:
    """The language a page states: ``<html lang>``, JSON-LD ``inLanguage``, a
    Content-Language meta tag or ``og:locale`` (``en_US`` → ``en-US``); None if none does."""
    for pattern in (r"<html\b[^>]*?\blang=[\"']?([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*)",
                    r'"inLanguage"\s*:\s*"([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*)"',
                    r"<meta[^>]+http-equiv=[\"']?content-language[\"']?[^>]*content=[\"']?"
                    r"([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*)",
                    r"<meta[^>]+property=[\"']?og:locale[\"']?[^>]*content=[\"']?"
                    r"([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*)"):
        match = re.search(pattern, head, re.I)
        if match:
            return match.group(1).replace("_", "-")
    return None


def read_html(path: Path, source: str, bad: Warn) -> Iterator[Article]:
    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    url = sidecar_url(path)  # a page `qa fetch` saved: where it came from
    article = extract_html(data, url)
    if article is None:
        raise NoArticle("an HTML page with no article text")
    yield replace(article, source=source, url=article.url or url)


class NoArticle(ValueError):
    """The file holds nothing to index (the reason is the message)."""


# --- JSON Lines and CSV ----------------------------------------------------------------------

def _pick(record: dict[str, Any], kind: str, mapping: dict[str, str]) -> Any:
    """The record's value for an article field: the mapped column if given and present, else
    the first common name present."""
    if kind in mapping:
        value = _dig(record, mapping[kind])
        if value not in (None, "", []):
            return value
    for name in FIELDS[kind]:
        value = record.get(name)
        if value not in (None, "", []):
            return value
    if kind == "publisher" and isinstance(record.get("source"), dict):
        return record["source"].get("name")
    return None


def _dig(record: dict[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _author(value: Any) -> str | None:
    if isinstance(value, list):
        names = [n for n in (_author(v) for v in value) if n]
        value = ", ".join(names[1:] if runs_together(names) else names)
    elif isinstance(value, dict):
        value = value.get("name")
    value = str(value).strip() if value else ""
    value = re.sub(r"(?i)^by\s+", "", value).replace(";", ",")
    return value or None


def _iso(value: Any) -> str | None:
    """A date (ISO, RFC 2822, "March 5, 2021", epoch seconds) as YYYY-MM-DD, or None."""
    if value in (None, ""):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        import datetime as dt

        try:
            return dt.datetime.fromtimestamp(float(value), dt.UTC).date().isoformat()
        except (OverflowError, OSError, ValueError):
            return None
    text = str(value).strip()
    match = re.match(r"(\d{4})-(\d{2})-(\d{2})", text)
    if match:
        return match.group(0)
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(text).date().isoformat()
    except (TypeError, ValueError, IndexError):
        pass
    import datetime as dt

    for form in ("%B %d, %Y", "%b %d, %Y", "%d %B %Y", "%Y/%m/%d", "%m/%d/%Y"):
        try:
            return dt.datetime.strptime(text, form).date().isoformat()
        except ValueError:
            continue
    return None


def _record(record: dict[str, Any], fallback: str, line: int, mapping: dict[str, str],
            bad: Warn, where: str) -> Article | None:
    text = _pick(record, "text", mapping)
    if isinstance(text, list):
        text = "\n\n".join(str(t) for t in text)
    text = str(text or "")
    url = _pick(record, "url", mapping)
    url = str(url) if url else None
    fields = dict(
        title=_plain(_pick(record, "title", mapping)),
        date=_iso(_pick(record, "date", mapping)),
        author=_author(_pick(record, "author", mapping)),
        publisher=_plain(_pick(record, "publisher", mapping)),
        language=_plain(_pick(record, "language", mapping)),
    )
    if re.search(r"</?(p|div|br|article|span|a)\b[^>]*>", text[:5000], re.I):
        page = extract_html(text, url)  # HTML inside a text field: the article in it
        if page is not None:
            text = page.text
            fields = {k: v or getattr(page, k) for k, v in fields.items()}
    if not text.strip():
        bad(f"{where}, line {line}: no article text in this record: skipped")
        return None
    key = _pick(record, "id", mapping)
    source = str(key).strip() if key not in (None, "") else (
        url_source(url) if url else f"{fallback}#{line}")
    return Article(source=source, text=text, url=url, line=line, title=fields["title"],
                   date=fields["date"], author=fields["author"],
                   publisher=fields["publisher"], language=fields["language"])


def _plain(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("name")
    value = str(value).strip() if value not in (None, "") else ""
    return value or None


def read_jsonl(path: Path, source: str, bad: Warn,
               mapping: dict[str, str] | None = None) -> Iterator[Article]:
    """One article per line; a malformed line is warned about and skipped; a truncated gzip
    keeps the records before the break."""
    where = str(path)
    with _open_text(path, bad) as f:
        line_no = 0
        try:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    bad(f"{where}, line {line_no}: not valid JSON: skipped")
                    continue
                if not isinstance(record, dict):
                    bad(f"{where}, line {line_no}: not a JSON object: skipped")
                    continue
                article = _record(record, source, line_no, mapping or {}, bad, where)
                if article is not None:
                    yield article
        except (EOFError, OSError, zlib.error) as error:
            bad(f"{where} is truncated or corrupt after line {line_no} ({error}): kept the "
                 "records before it")


def read_csv(path: Path, source: str, bad: Warn,
             mapping: dict[str, str] | None = None) -> Iterator[Article]:
    where = str(path)
    csv.field_size_limit(50_000_000)
    with _open_text(path, bad) as f:
        reader = csv.DictReader(f)
        row_no = 1
        try:
            for row_no, row in enumerate(reader, start=2):
                if None in row:  # more cells than the header names
                    bad(f"{where}, line {reader.line_num}: more cells than columns: skipped")
                    continue
                article = _record(row, source, row_no, mapping or {}, bad, where)
                if article is not None:
                    yield article
        except csv.Error as error:
            bad(f"{where}, line {reader.line_num}: {error}: the rest of the file skipped")
        except (EOFError, OSError, zlib.error) as error:
            bad(f"{where} is truncated or corrupt after row {row_no} ({error}): kept the "
                 "rows before it")


# --- RSS and Atom ------------------------------------------------------------------------------

def read_feed(path: Path, source: str, bad: Warn) -> Iterator[Article]:
    """Feed items: full-text items (content:encoded, Atom content) as articles; an item with
    only a summary is indexed as that summary (``extras["summary_only"]``)."""
    import feedparser

    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        feed = feedparser.parse(f.read())
    if not feed.entries:
        raise NoArticle("not an RSS or Atom feed with items" if feed.bozo
                        else "a feed with no items")
    publisher = _plain(feed.feed.get("title"))
    language = _plain(feed.feed.get("language"))
    for number, entry in enumerate(feed.entries, start=1):
        contents = [c.get("value", "") for c in entry.get("content", []) if c.get("value")]
        summary_only = not contents
        body = max(contents, key=len) if contents else entry.get("summary", "")
        page = extract_html(f"<html><body><article>{body}</article></body></html>") if body \
            else None
        text = page.text if page else re.sub(r"<[^>]+>", " ", body or "").strip()
        if not text:
            bad(f"{path}, item {number}: no text: skipped")
            continue
        url = entry.get("link")
        date = _iso(entry.get("published") or entry.get("updated"))
        yield Article(
            source=url_source(url) if url else f"{source}#{number}",
            text=text, url=url, title=_plain(entry.get("title")), date=date,
            author=_author(entry.get("author")), publisher=publisher, line=number,
            language=_plain(entry.get("language")) or language,
            extras={"summary_only": summary_only},
        )


# --- WARC / ARC --------------------------------------------------------------------------------

def read_warc(path: Path, source: str, bad: Warn, note: Warn = lambda _: None
              ) -> Iterator[Article]:
    """Response records with HTML payloads, as articles under their target URI; redirects,
    robots.txt, non-HTML and non-200 records are counted and skipped; a record cut short (less
    than its Content-Length, or the file ending inside it) is told to ``bad`` and skipped; a
    file broken further keeps the records before the break."""
    from warcio.archiveiterator import ArchiveIterator

    counts: dict[str, int] = {}

    def skip(reason: str) -> None:
        counts[reason] = counts.get(reason, 0) + 1

    def cut(number: int, uri: str, why: str) -> None:
        bad(f"{path}, record {number}{f' ({uri})' if uri else ''}: {why}: skipped")

    end = number = 0  # where the last whole record ends in the file, and its number
    with open(path, "rb") as f:
        records = ArchiveIterator(f, arc2warc=True)
        records.INC_RECORD = ""  # warcio writes this to stderr itself; told through `bad`
        try:
            for number, record in enumerate(records, start=1):
                uri = record.rec_headers.get_header("WARC-Target-URI") or ""
                wanted, html = _warc_wanted(record, uri), b""
                if wanted is None:
                    html = record.content_stream().read()
                missing = _unread(record)
                errors = records.err_count
                end = records.get_record_offset() + records.get_record_length()
                if record.length is None:  # its headers end where the file does
                    cut(number, uri, "cut short (the file ends inside its headers)")
                    continue
                if missing:
                    cut(number, uri, f"cut short ({record.length - missing:,} of its "
                                     f"{record.length:,} bytes)")
                    continue
                if records.err_count > errors:  # what follows is not the next record
                    cut(number, uri, "its Content-Length does not match its body")
                    continue
                if wanted is not None:
                    skip(wanted)
                    continue
                article = extract_html(html, uri)
                if article is None:
                    skip("pages with no article text")
                    continue
                yield replace(article, source=url_source(article.url or uri), line=number)
        except Exception as error:  # warcio raises plain exceptions for a broken stream
            bad(f"{path} is truncated or corrupt ({type(error).__name__}): kept the records "
                 "before the break")
        else:
            f.seek(end)
            rest = f.read(1 << 16)
            # Blank lines end an uncompressed record; anything else is a record the file
            # ends inside (warcio stops there without a word).
            if rest.strip() if not _gzipped(path) else rest:
                cut(number + 1, "", "cut short (the file ends inside it)")
    if counts:
        note(f"{path}: skipped " + ", ".join(f"{n} {reason}" for reason, n in sorted(
            counts.items())))


def _warc_wanted(record: Any, uri: str) -> str | None:
    """Why a WARC record is not an article page (the reason counted), or None for an HTML
    200 response."""
    if record.rec_type != "response":
        return f"{record.rec_type} records"
    status = record.http_headers.get_statuscode() if record.http_headers else None
    kind = (record.http_headers.get_header("Content-Type") or "") if record.http_headers else ""
    if uri.rstrip("/").endswith("/robots.txt"):
        return "robots.txt"
    if status != "200":
        return "redirects" if status and status.startswith("3") else "non-200 responses"
    if "html" not in kind.lower():
        return "non-HTML responses"
    return None


def _unread(record: Any) -> int:
    """Bytes of the record's Content-Length its block lacks, once read to its end (0 when
    whole, or when the record states no length)."""
    stream = record.raw_stream
    while stream.read(1 << 16):
        pass
    return max(0, int(getattr(stream, "limit", 0) or 0))


def _gzipped(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


# Format → reader; the suffixes of each format are ``index.docs.FORMAT_SUFFIXES``.
READERS: dict[str, Callable[..., Iterator[Article]]] = {
    "warc": read_warc, "html": read_html, "jsonl": read_jsonl, "csv": read_csv,
    "feed": read_feed,
}
TABULAR = (read_jsonl, read_csv)


def reader_for(name: str) -> tuple[str, Callable[..., Iterator[Article]]] | None:
    """(suffix, reader) for a file name, or None for plain text and unknown files."""
    found = format_of(name)
    return None if found is None else (found[0], READERS[found[1]])
