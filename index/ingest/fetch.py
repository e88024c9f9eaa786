"""Download web pages into a docs folder, politely: a clear User-Agent, robots.txt honoured,
timeouts, a size cap and a bounded number of redirects. Each page is saved as ``.html`` with a
``.fetch.json`` sidecar (the URL asked for, the final URL, status, time); one failing URL is
reported and the others are kept. With ``feed``, each URL is a feed whose items' links are
fetched.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

from ..disk import write_atomic
from ..errors import QAError
from ..urls import SIDECAR, url_source

USER_AGENT = "newsqa-fetch/0.1 (+https://github.com/; retrieval QA over a news archive)"
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
    """Fetches pages for ``fetch``. ``timeout`` bounds everything done for one URL: its
    robots.txt (the first time its site is seen), the connection, every redirect and the
    whole body, however slowly the server sends it."""

    def __init__(self, timeout: float = 20.0, max_bytes: int = 10 * 1024 * 1024,
                 max_redirects: int = 5, user_agent: str = USER_AGENT):
        import httpx

        self.timeout = timeout
        self.max_bytes = max_bytes
        self.user_agent = user_agent
        self.client = httpx.Client(
            timeout=timeout, follow_redirects=True, max_redirects=max_redirects,
            headers={"User-Agent": user_agent},
        )
        self.robots: dict[str, RobotFileParser | None] = {}

    def allowed(self, url: str, deadline: _Deadline | None = None) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self.robots:
            parser: RobotFileParser | None = RobotFileParser()
            try:
                response, body = self._download(f"{origin}/robots.txt", (), 1 << 20,
                                                deadline or _Deadline(self.timeout))
                if response.status_code >= 400:
                    parser = None  # no robots.txt: everything allowed
                else:
                    assert parser is not None
                    parser.parse(body.decode("utf-8", "replace").splitlines())
            except _TimedOut:
                raise
            except Exception:  # unreachable robots.txt: the page request will say why
                parser = None
            self.robots[origin] = parser
        parser = self.robots[origin]
        return parser is None or parser.can_fetch(self.user_agent, url)

    def get(self, url: str, kinds: tuple[str, ...]) -> tuple[Any, bytes]:
        """(response, body) within ``timeout`` seconds in all; ValueError with the reason
        when it is not wanted or not complete in time ("timed out").

        The work runs on a thread this call waits for until the deadline: a read blocks for
        up to the per-read timeout, and a name lookup has none, so only waiting from outside
        bounds the whole; at the deadline the connection is shut down, which ends the
        thread's read."""
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("not an http(s) URL")
        deadline = _Deadline(self.timeout)
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                if not self.allowed(url, deadline):
                    raise ValueError("robots.txt disallows it")
                outcome["value"] = self._download(url, kinds, self.max_bytes, deadline)
            except BaseException as error:  # handed to the caller's thread
                outcome["error"] = error

        thread = threading.Thread(target=work, name="qa-fetch", daemon=True)
        thread.start()
        thread.join(self.timeout)
        if thread.is_alive():
            deadline.expire()
            raise ValueError("timed out")
        error = outcome.get("error")
        if isinstance(error, _TimedOut):
            raise ValueError("timed out") from None
        if error is not None:
            raise error
        return outcome["value"]

    def _download(self, url: str, kinds: tuple[str, ...], limit: int, deadline: _Deadline
                  ) -> tuple[Any, bytes]:
        """(response, body) of a GET; ``kinds``: the content types accepted (any if empty,
        and then any status: robots.txt)."""
        import httpx

        try:
            with self.client.stream("GET", url, timeout=deadline.left()) as response:
                deadline.watch(response)
                if kinds and response.status_code != 200:
                    raise ValueError(f"HTTP {response.status_code}")
                kind = response.headers.get("content-type", "").lower()
                if kinds and not any(k in kind for k in kinds):
                    raise ValueError(f"not a page of the expected kind ({kind or 'no type'})")
                body = bytearray()
                for chunk in response.iter_bytes():
                    deadline.check()
                    body += chunk
                    if len(body) > limit:
                        raise ValueError(f"larger than {limit:,} bytes")
                deadline.check()
                return response, bytes(body)
        except httpx.TooManyRedirects:
            raise ValueError("too many redirects") from None
        except httpx.TimeoutException:
            raise _TimedOut() from None
        except httpx.HTTPError as error:
            deadline.check()  # a connection shut down at the deadline
            raise ValueError(f"{type(error).__name__}: {error}") from None

    def close(self) -> None:
        self.client.close()


class _TimedOut(Exception):
    """A URL's deadline passed (or one read's timeout did)."""


class _Deadline:
    """The time left for one URL, and the connection to shut down when it is up."""

    def __init__(self, seconds: float):
        self.at = time.monotonic() + seconds
        self.expired = False
        self._socket: Any = None
        self._lock = threading.Lock()

    def left(self) -> float:
        self.check()
        return max(0.001, self.at - time.monotonic())

    def check(self) -> None:
        if self.expired or time.monotonic() >= self.at:
            raise _TimedOut()

    def watch(self, response: Any) -> None:
        """Remember the socket ``response`` arrives on (shut down by ``expire``)."""
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._socket = sock
            if self.expired:
                self._shut()

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shut()

    def _shut(self) -> None:
        import socket

        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)  # wakes a read blocked on it
            except OSError:
                pass


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
