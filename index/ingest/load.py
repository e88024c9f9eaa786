"""Read and decode the articles of a docs folder (its files found by ``index.docs``): plain
text (.txt, .md) here, the archive formats through ``formats`` (HTML, JSON Lines, CSV,
RSS/Atom, WARC); the same article met twice is kept once (``Unique``)."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..docs import file_sha256, printable, read_regular, root_and_paths, source_name, source_names
from ..urls import canonical_url
from .formats import TABULAR, Article, NoArticle, read_warc, reader_for, sniff_encoding

# An article's text is cut at this many characters (with a warning): a news article has at
# most a few hundred thousand (the benchmark archives' longest are cut at 100,000), and a
# longer file is a dump or a runaway export, whose passages would take minutes to embed. Of a
# text file only the bytes these characters can need are read (``docs.read_regular``), so a file
# of any size costs the same memory; the rest is hashed, not kept.
MAX_CHARS = 1_000_000


@dataclass(frozen=True)
class Skipped:
    """A file that was found but not indexed, and why (kept so updates don't re-report it)."""

    source: str
    path: Path
    reason: str


@dataclass(frozen=True)
class Document:
    """One article. For a text file, ``source`` is the file's path relative to the docs
    folder without its suffix and ``text`` the file's text; for a record of an archive format
    (a page, an export row, a feed item), ``text`` is the article text the reader extracted
    (``stored``: the index keeps it, citations refer to it) and the metadata fields say what
    the format states. ``file`` is the source name of the file it came from."""

    source: str
    path: Path
    text: str
    sha256: str
    encoding: str = "utf-8"
    file: str = ""
    article: Article | None = None  # what a reader found, for the non-text formats

    @property
    def stored(self) -> bool:
        return self.article is not None

    @property
    def url(self) -> str | None:
        return self.article.url if self.article else None


@dataclass(frozen=True)
class Duplicate:
    """An article dropped because another one already holds it, and why."""

    source: str
    of: str
    why: str
    file: str = ""  # the source name of the file it came from, and its path
    path: Path | None = None


def _reason(error: OSError) -> str:
    """Why a file could not be read, for a warning."""
    if error.errno == errno.ELOOP:
        return "symlink loop"
    return error.strerror or str(error)


def _decode(data: bytes, encoding: str, whole: bool) -> str:
    """``data`` decoded; of a file's head (not ``whole``) a character cut at its end is left
    out rather than an error."""
    import codecs

    return codecs.getincrementaldecoder(encoding)().decode(data, final=whole)


def read_document(
    path: Path,
    docs_dir: Path,
    warn: Callable[[str], None],
    skipped: Callable[[Skipped], None] = lambda _: None,
    source: str | None = None,
) -> Document | None:
    """Decode one file, or warn, report it to ``skipped`` and return None when it is not
    usable text."""
    source = source or source_name(path, docs_dir)

    def skip(reason: str) -> None:
        warn(f"skipping {printable(str(path))}: {reason}")
        skipped(Skipped(source, path, reason))

    limit = 4 * MAX_CHARS + 4  # bytes enough for MAX_CHARS characters in any encoding
    try:
        data = read_regular(path, limit)
        whole = len(data) <= limit
        # The file's hash is of all its bytes (updates compare it with file_sha256).
        digest = hashlib.sha256(data).hexdigest() if whole else file_sha256(path)
        size = len(data) if whole else os.stat(path).st_size
    except OSError as error:
        skip(_reason(error))
        return None
    data = data[:limit]
    encoding = "utf-8"
    unicode_bom = data.startswith((b"\xff\xfe", b"\xfe\xff"))  # UTF-16/32 hold NUL bytes
    if b"\x00" in data[:8192] and not unicode_bom:
        skip("binary file, not text")
        return None
    try:
        text = _decode(data, "utf-8", whole)
    except UnicodeDecodeError:
        # Old archives are often Windows-1252 or Latin-1 (sniffed, as for exports); check the
        # result still looks like text.
        encoding = sniff_encoding(data[: 1 << 20])
        try:
            text = _decode(data, encoding, whole)
        except (UnicodeDecodeError, LookupError):
            encoding = "latin-1"  # every byte decodes
            text = data.decode(encoding)
        controls = sum(1 for ch in text[:8192] if ord(ch) < 32 and ch not in "\t\n\r\f")
        if controls > len(text[:8192]) * 0.01:
            skip("not UTF-8 and not readable text")
            return None
        warn(f"{printable(str(path))} is not UTF-8: read it as {encoding}")
    del data
    if len(text) > MAX_CHARS or not whole:
        warn(_cut_message(printable(str(path)), len(text) if whole else None, size))
        text = text[:MAX_CHARS]
    if not text.strip():
        skip("empty file")
        return None
    return Document(source, path, text, digest, encoding, file=source)


def _cut_message(name: str, chars: int | None, size: int | None = None) -> str:
    """The warning for an article cut at ``MAX_CHARS``: ``chars`` it has (None: more than a
    read head holds; then the file's ``size`` in bytes)."""
    length = f"{chars:,} characters" if chars is not None else \
        f"more than {MAX_CHARS:,} characters ({size or 0:,} bytes)"
    return (f"{name} has {length}, longer than a news article: indexing only the first "
            f"{MAX_CHARS:,} (split it into one file per article to index all of it)")


class Documents:
    """The articles of a docs folder in folder order, duplicates dropped: what is known of
    each in memory, their texts in a scratch file, so a large export is never held in memory
    whole. Iterating (as often as needed) yields each ``Document`` with its text; ``len`` and
    ``chars`` count them."""

    def __init__(self, spool: Any, entries: list[tuple[Document, int, int]], chars: int):
        self._spool = spool
        self._entries = entries
        self.chars = chars

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Document]:
        for document, offset, size in self._entries:
            yield replace(document, text=_read_text(self._spool, offset, size))

    def close(self) -> None:
        self._spool.close()

    def __enter__(self) -> Documents:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _read_text(spool: Any, offset: int, size: int) -> str:
    spool.seek(offset)
    return spool.read(size).decode("utf-8", "surrogatepass")


def load_documents(
    docs_dir: Path,
    warn: Callable[[str], None] = lambda _: None,
    skipped: Callable[[Skipped], None] = lambda _: None,
    fields: dict[str, str] | None = None,
    duplicate: Callable[[Duplicate], None] = lambda _: None,
    bad: Callable[[str], None] | None = None,
    scratch: Path | None = None,
    only: set[str] | None = None,
) -> Documents:
    """Every readable article under ``docs_dir`` (or the one file ``docs_dir`` names);
    unusable files produce a warning and are passed to ``skipped``; an article already seen
    (the same canonical URL, or nearly the same text) is passed to ``duplicate``; bad input
    inside a file (a malformed record, a break, a guessed charset) is told to ``bad``
    (default: ``warn``). ``fields`` maps article fields to an export's own column names
    (``text=story_body``). The texts wait in a temporary file in ``scratch`` (default: the
    system's temporary folder). ``only``: read just the files of these source names (an
    update's new and changed files)."""
    import tempfile

    docs_dir = Path(docs_dir)
    root, paths = root_and_paths(docs_dir, warn)
    spool = tempfile.TemporaryFile(dir=scratch)
    found: list[tuple[Document, int, int]] = []
    lengths: list[int] = []
    for path, source in source_names(paths, root).items():
        if only is not None and source not in only:
            continue
        for document in _read_any(path, root, source, warn, skipped, fields or {}, bad or warn):
            data = document.text.encode("utf-8", "surrogatepass")
            found.append((_without_text(document), spool.tell(), len(data)))
            lengths.append(len(document.text))
            spool.write(data)
            del data
    # The fullest copy of an article is kept (a saved page over a feed's summary of it), the
    # others are duplicates of it; among equals, the first in the folder.
    unique = Unique(lambda i: _read_text(spool, found[i][1], found[i][2]))
    keep = []
    for index in sorted(range(len(found)), key=lambda i: (-lengths[i], i)):
        document = found[index][0]
        why = unique.seen(replace(document, text=unique.text_of(index)), index)
        if why is None:
            keep.append(index)
        else:
            of, reason = why
            duplicate(Duplicate(document.source, of, reason, document.file, document.path))
    names: dict[str, int] = {}
    entries = []
    for index in sorted(keep):
        document, offset, size = found[index]
        taken = names.get(document.source, 0)
        names[document.source] = taken + 1
        if taken:  # two different articles under one name (an export's repeated id)
            document = replace(document, source=f"{document.source}~{taken + 1}")
        entries.append((document, offset, size))
    return Documents(spool, entries, sum(lengths[i] for i in keep))


def _without_text(document: Document) -> Document:
    article = document.article
    return replace(document, text="", article=replace(article, text="") if article else None)


def _read_any(
    path: Path, root: Path, source: str, warn: Callable[[str], None],
    skipped: Callable[[Skipped], None], fields: dict[str, str], bad: Callable[[str], None],
) -> Iterator[Document]:
    found = reader_for(path.name)
    if found is None:
        document = read_document(path, root, warn, skipped, source)
        if document is not None:
            yield document
        return

    def skip(reason: str) -> None:
        warn(f"skipping {printable(str(path))}: {reason}")
        skipped(Skipped(source, path, reason))

    _, reader = found
    try:
        # A reader would block forever on a FIFO; the file's hash is taken once, for the
        # manifest (pipeline), not here.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        options: dict[str, Any] = {"mapping": fields} if reader in TABULAR else {}
        if reader is read_warc:
            options["note"] = warn
        count = 0
        for article in reader(path, source, bad, **options):
            count += 1
            text = article.text
            if len(text) > MAX_CHARS:
                warn(_cut_message(f"{printable(str(path))} ({article.source})", len(text)))
                text = text[:MAX_CHARS]
            yield Document(
                source=article.source, path=path, text=text,
                sha256=hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
                file=source, article=article,
            )
        if not count:
            skip("no articles in it")
    except NoArticle as reason:
        skip(str(reason))
    except OSError as error:
        skip(_reason(error))
    except Exception as error:  # a parser's own error for a file it cannot read
        skip(f"cannot be read as {path.suffix.lstrip('.')} ({type(error).__name__})")


class Unique:
    """Finds an article seen before: the same canonical URL (a saved page and a feed item,
    http and https, tracking parameters, AMP pages) or nearly the same text (trafilatura's
    SimHash: at most 3 of 64 bits differ). Articles seen are remembered by a reference
    (``text_of(ref)`` gives the text back when a fingerprint needs checking)."""

    def __init__(self, text_of: Callable[[Any], str]) -> None:
        self.text_of = text_of
        self.urls: dict[str, str] = {}
        self.bands: dict[tuple[int, int, str], list[tuple[int, str, Any]]] = {}

    def seen(self, document: Document, ref: Any) -> tuple[str, str] | None:
        url = canonical_url(document.url)
        if url and url in self.urls:
            return self.urls[url], "same URL"
        fingerprint = _simhash(document.text)
        # Wire copy in two outlets is two reports of one story ("also reported by"), not a
        # duplicate: near-identical text counts only within one site (or without URLs).
        host = urlsplit(url).netloc if url else ""
        if fingerprint is not None:
            keys = [(band, (fingerprint >> (16 * band)) & 0xFFFF, host) for band in range(4)]
            for key in keys:  # 3 bits apart means one 16-bit band is equal (pigeonhole)
                for other, name, other_ref in self.bands.get(key, []):
                    # SimHash finds candidates; pages sharing a site's furniture can collide,
                    # so the words themselves must agree (90% of 5-word shingles).
                    if bin(other ^ fingerprint).count("1") <= 3 and \
                            _resemblance(self.text_of(other_ref), document.text) >= 0.9:
                        return name, "near-identical text"
            for key in keys:
                self.bands.setdefault(key, []).append((fingerprint, document.source, ref))
        if url:
            self.urls[url] = document.source
        return None


def _resemblance(a: str, b: str) -> float:
    """Jaccard resemblance of the two texts' 5-word shingles."""
    def shingles(text: str) -> set[tuple[str, ...]]:
        words = text.lower().split()
        return {tuple(words[i : i + 5]) for i in range(max(1, len(words) - 4))}

    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / (len(sa | sb) or 1)


def _simhash(text: str) -> int | None:
    """64-bit SimHash of the text's words (too short a text has none: no claim of sameness)."""
    if len(text.split()) < 50:
        return None
    from trafilatura.deduplication import Simhash

    return int(Simhash(text).hash)
