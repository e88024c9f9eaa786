"""Articles known by their URL: the canonical form two copies of one article share (https, no
``www.``, no tracking parameters or AMP paths), the stable source name made from it, and the
sidecar file ``qa fetch`` saves beside a page with the URL it came from."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

TRACKING = re.compile(r"^(utm_\w+|fbclid|gclid|mc_cid|mc_eid|ref|cmpid|ocid|smid|icid)$", re.I)
SIDECAR = ".fetch.json"  # beside a fetched page: the URL asked for, the final URL, status


def canonical_url(url: str | None) -> str | None:
    """``url`` normalised for finding the same article twice: https, no ``www.``, no
    tracking parameters, fragment or trailing slash, AMP paths folded ("/amp", "amp.")."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if not parts.netloc:
        return None
    host = parts.netloc.lower().removeprefix("www.").removeprefix("amp.")
    path = re.sub(r"(/amp)+/?$|/amp/(?=.)", "/", parts.path) or "/"
    path = path.rstrip("/") or "/"
    query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                             if not TRACKING.match(k) and k.lower() not in ("amp", "outputtype")))
    return urlunsplit(("https", host, path, query, ""))


def url_source(url: str) -> str:
    """A stable, unique source name for an article known by its URL: a readable slug of the
    host and path, plus a short hash of the canonical URL."""
    canonical = canonical_url(url) or url
    parts = urlsplit(canonical)
    slug = re.sub(r"[^a-z0-9]+", "-", f"{parts.netloc}{parts.path}".lower()).strip("-")[:80]
    return f"{slug}-{hashlib.sha256(canonical.encode()).hexdigest()[:8]}"


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
