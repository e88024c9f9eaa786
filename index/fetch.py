"""Download web pages into a docs folder, politely: a clear User-Agent, robots.txt honoured,
timeouts, a size cap and a bounded number of redirects. Each page is saved as ``.html`` with a
``.fetch.json`` sidecar (the URL asked for, the final URL, status, time); one failing URL is
reported and the others are kept. With ``feed``, each URL is a feed whose items' links are
fetched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

from .disk import write_atomic
from .errors import QAError
from .formats import url_source

USER_AGENT = "newsqa-fetch/0.1 (+https://github.com/; retrieval QA over a news archive)"
SIDECAR = ".fetch.json"
HTML_TYPES = ("text/html", "application/xhtml+xml")
FEED_TYPES = ("xml", "rss", "atom")


class FetchError(QAError):
    """Nothing could be fetched."""


@dataclass
class Fetched:
    url: str
    final_url: str | None = None
    status: int | None = None
    path: str | None = None
    error: str | None = None
    fetched_at: str | None = None


class Fetcher:
    def __init__(self, timeout: float = 20.0, max_bytes: int = 10 * 1024 * 1024,
                 max_redirects: int = 5, user_agent: str = USER_AGENT):
        import httpx

        self.max_bytes = max_bytes
        self.user_agent = user_agent
        self.client = httpx.Client(
            timeout=timeout, follow_redirects=True, max_redirects=max_redirects,
            headers={"User-Agent": user_agent},
        )
        self.robots: dict[str, RobotFileParser | None] = {}

    def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self.robots:
            parser: RobotFileParser | None = RobotFileParser()
            try:
                response = self.client.get(f"{origin}/robots.txt")
                if response.status_code >= 400:
                    parser = None  # no robots.txt: everything allowed
                else:
                    assert parser is not None
                    parser.parse(response.text.splitlines())
            except Exception:  # unreachable robots.txt: the page request will say why
                parser = None
            self.robots[origin] = parser
        parser = self.robots[origin]
        return parser is None or parser.can_fetch(self.user_agent, url)

    def get(self, url: str, kinds: tuple[str, ...]) -> tuple[Any, bytes]:
        """(response, body); ValueError with the reason when it is not wanted."""
        import httpx

        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("not an http(s) URL")
        if not self.allowed(url):
            raise ValueError("robots.txt disallows it")
        try:
            with self.client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise ValueError(f"HTTP {response.status_code}")
                kind = response.headers.get("content-type", "").lower()
                if not any(k in kind for k in kinds):
                    raise ValueError(f"not a page of the expected kind ({kind or 'no type'})")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise ValueError(f"larger than {self.max_bytes:,} bytes")
                return response, bytes(body)
        except httpx.TooManyRedirects:
            raise ValueError("too many redirects") from None
        except httpx.TimeoutException:
            raise ValueError("timed out") from None
        except httpx.HTTPError as error:
            raise ValueError(f"{type(error).__name__}: {error}") from None

    def close(self) -> None:
        self.client.close()


def fetch(
    urls: Iterable[str],
    docs_dir: Path,
    *,
    feed: bool = False,
    fetcher: Fetcher | None = None,
    warn: Callable[[str], None] = lambda _: None,
) -> list[Fetched]:
    """Fetch ``urls`` (or, with ``feed``, the item links of the feeds at ``urls``) into
    ``docs_dir``. Returns what happened to each; FetchError when nothing was saved."""
    docs_dir = Path(docs_dir)
    docs_dir.mkdir(parents=True, exist_ok=True)
    fetcher = fetcher or Fetcher()
    results: list[Fetched] = []
    try:
        pages = _feed_links(urls, fetcher, warn, results) if feed else list(urls)
        for url in dict.fromkeys(pages):
            result = Fetched(url)
            results.append(result)
            try:
                response, body = fetcher.get(url, HTML_TYPES)
            except ValueError as reason:
                result.error = str(reason)
                warn(f"could not fetch {url}: {reason}")
                continue
            final = str(response.url)
            name = url_source(final)
            path = docs_dir / f"{name}.html"
            write_atomic(path, body)
            result.final_url, result.status, result.path = final, response.status_code, str(path)
            result.fetched_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            write_atomic(docs_dir / f"{name}{SIDECAR}", json.dumps(asdict(result)).encode())
    finally:
        fetcher.close()
    if not any(r.path for r in results):
        raise FetchError("nothing was fetched (" + "; ".join(
            f"{r.url}: {r.error}" for r in results[:5]) + "): check the URLs")
    return results


def _feed_links(urls: Iterable[str], fetcher: Fetcher, warn: Callable[[str], None],
                results: list[Fetched]) -> list[str]:
    import feedparser

    links = []
    for url in urls:
        try:
            _, body = fetcher.get(url, FEED_TYPES)
        except ValueError as reason:
            warn(f"could not fetch the feed {url}: {reason}")
            results.append(Fetched(url, error=str(reason)))
            continue
        parsed = feedparser.parse(body)
        found = [entry.get("link") for entry in parsed.entries if entry.get("link")]
        if not found:
            warn(f"{url} lists no item links")
        links.extend(found)
    return links


def sidecar_url(page: Path) -> str | None:
    """The final URL a fetched page was saved from (its ``.fetch.json``), if any."""
    name = page.name
    for suffix in (".html.gz", ".htm.gz", ".html", ".htm"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    try:
        data = json.loads((page.with_name(name + SIDECAR)).read_text())
    except (OSError, ValueError):
        return None
    return data.get("final_url") if isinstance(data, dict) else None
