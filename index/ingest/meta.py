"""Title, date, author and publisher of a scraped news page, read from the page text only.

Anything the page does not state is None: nothing is guessed from the file name or the
story's subject. Dates the story merely mentions are not the publication date; ``infer_date``
offers them separately, flagged as inferred by its caller.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .clean import DATE_RE, Line, Segment, dateline, find_body, iter_lines

__all__ = ["Metadata", "extract_metadata", "infer_date"]

_HEADER_LINES = 40  # bylines and date stamps sit at the top; never scan a whole dump
_MONTH_NUMBER = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_NAME_WORD = re.compile(r"^(?:[A-Z][\w.'’-]*|and|&|de|da|del|der|van|von|la|le|al|bin|y)$")
_NOT_A_PERSON = re.compile(
    r"\b(?:news|staff|wires?|agenc(?:y|ies)|desk|team|reporters?|correspondents?|editors?"
    r"|editorial|press|service|bureau|media|newsroom|online|reuters|ap|afp|voa|bbc|cnn"
    r"|bloomberg|xinhua|associated)\b",
    re.IGNORECASE,
)
_BYLINE = re.compile(r"^(?i:(?:written\s+)?by)\s+(?P<name>[A-Z].*)$")
_ATTRIBUTION = re.compile(
    r"^(?i:(?:this (?:article|story) (?:was )?)?(?:originally|first) (?:published|appeared)"
    r" (?:in|on|by|at)|from|via|source\s*:|courtesy of)\s+"
    r"(?P<name>(?:The\s+)?[A-Z][\w&.'’-]*(?:\s+[A-Z][\w&.'’-]*){0,4})\s*\.?$"
)
_LOGO = re.compile(r"^[ \t]*(?P<brand>\w[\w&.'’ -]{1,39}?)[ \t]+logo[ \t\r]*$", re.I | re.M)
_HOUSE_BYLINE = re.compile(
    r"^[ \t]*by[ \t]+(?P<brand>\w[\w&.'’ -]{1,39}?)[ \t]+(?:news|staff)[ \t\r]*$", re.I | re.M
)
# A wire story's dateline names its agency: "SANTIAGO, March 14 (Reuters) -", "WASHINGTON
# (AP) —" (the place in capitals, then optional state or date, then the agency in brackets).
_WIRE = re.compile(
    r"[A-Z][A-Z.'’ -]{1,40}(?:,[^()\n]{1,40})?\s\((?P<name>[A-Z][\w&.'’ -]{0,30}?)\)\s*[-–—]"
)
# A footer's copyright notice with a year names the site's owner ("© 2023 Reuters. All rights
# reserved."); without a year it is more often a photo credit ("© Getty Images").
_COPYRIGHT = re.compile(
    r"^[ \t]*(?:©|\(c\)|copyright)(?:[ \t]*©)?[ \t]*(?:19|20)\d\d(?:[ \t]*[-–][ \t]*(?:19|20)\d\d)?"
    r"[ \t]*,?[ \t]*(?P<name>(?:The[ \t]+)?[A-Z][\w&'’-]*(?:[ \t]+[A-Z][\w&'’-]*){0,4})",
    re.IGNORECASE | re.MULTILINE,
)
_YEAR = re.compile(r"(?<![\w])(?<![0-9][,.])(?:1[6-9]|20)[0-9][0-9](?![0-9])")
_NAV_SEPARATORS = re.compile(r"[|»›>].*[|»›>]")
# A headline cut short by the page's <title> or a search engine: "… with Takata air ...".
_CUT_SHORT = re.compile(r"\s?(?:\.\.\.|…)$")
# A round-up's credit line, not its title: "From USA TODAY Network and wire reports".
_CREDIT = re.compile(r"(?i)^from\b.{0,60}\b(?:wire|staff|news) reports?\.?$")
# A dateline line with its brackets lost in scraping: "CNN —", "New York CNN Business —".
_DASH_END = re.compile(r"\s[-–—]$")
# The outlet a title names at its end: "Headline | CNN", "Headline | The Week".
_TITLE_SUFFIX = re.compile(r"\s\|\s(?P<brand>[A-Z][\w&.'’ -]{1,40}?)(?:\s?(?:\.{2,3}|…))?$")


@dataclass(frozen=True)
class Metadata:
    title: str | None
    date: str | None  # ISO yyyy-mm-dd
    author: str | None
    publisher: str | None
    date_inferred: bool = False
    # The article's body segments (``find_body``), found once here and reused by the chunker.
    body: tuple[Segment, ...] = field(default=(), compare=False, repr=False)


def _iso(match: re.Match[str]) -> str | None:
    """The ISO date a ``DATE_RE`` match names, or None when invalid or day/month ambiguous."""
    groups = match.groupdict()
    if groups["y1"]:
        year, month, day = int(groups["y1"]), int(groups["m1"]), int(groups["d1"])
    elif groups["y4"]:
        first, second, year = int(groups["a4"]), int(groups["b4"]), int(groups["y4"])
        # 01/02/2020 is January in the US and February elsewhere: only accept what can't be both.
        if first != second and first <= 12 and second <= 12:
            return None
        month, day = (second, first) if first > 12 else (first, second)
    else:
        name = groups["mon2"] or groups["mon3"]
        month = _MONTH_NUMBER[name[:3].lower()]
        day = int(groups["d2"] or groups["d3"])
        year = int(groups["y2"] or groups["y3"])
    try:
        return dt.date(year, month, day).isoformat()
    except ValueError:
        return None


def _header(text: str) -> list[Line]:
    """Lines above the story: everything before its second prose line (the first may be a dek)
    or before an end-of-story marker that follows the first."""
    lines: list[Line] = []
    prose = 0
    for line in iter_lines(text):
        if line.prose and not line.caption and line.kind is None:
            prose += 1
            if prose == 2:
                break
        elif prose and line.kind in ("end", "final", "last"):
            break  # a one-paragraph story: what follows is the sidebar, not the header
        lines.append(line)
        if len(lines) >= _HEADER_LINES:
            break
    return lines


def _title(header: list[Line]) -> str | None:
    """The title line as the page gives it (``find_body`` skips it), or None."""
    candidates: list[str] = []
    for index, line in enumerate(header):
        text = line.text
        if line.kind is not None:
            continue
        furniture = (
            line.caption
            or line.words > 30
            or dateline(text)
            or _BYLINE.match(text)
            or _NAV_SEPARATORS.search(text)
            or _DASH_END.search(text)
            or _CREDIT.match(text)
        )
        if index == 0 and line.words >= 3 and not furniture and any(
            below.kind in ("byline", "dateline") for below in header[1:4]
        ):
            # The line right above the byline or date stamp: the headline, even when cut
            # short ("… with Takata air ...") or in two sentences ("Is watermelon healthy? A
            # nutritionist on the benefits of the fruit.").
            return " ".join(text.split())
        if line.prose and not line.caption and not text.endswith(("?", "!")):
            break  # the story has begun
        if (
            furniture
            or text.endswith((":", "…", "...", ","))
            or (text.endswith(".") and not re.search(r"(?:[A-Z]\.){2,}$", text))
        ):
            continue
        if line.words >= 4:
            return " ".join(text.split())
        candidates.append(" ".join(text.split()))
    return candidates[0] if candidates else None


def shown_title(title: str, publisher: str | None) -> str:
    """The title for citations: a cut-short ending as one "…", and the outlet's name dropped
    from its end when it is the publisher ("Headline | CNN" of CNN)."""
    title = _CUT_SHORT.sub(" …", title)
    if publisher and (match := _TITLE_SUFFIX.search(title)):
        if match["brand"].rstrip(" …").casefold() == publisher.casefold():
            title = title[: match.start()].rstrip()
    return title


def _author(header: list[Line]) -> str | None:
    for line in header:
        match = _BYLINE.match(line.text)
        if match is None:
            continue
        if names := _listed_twice(match["name"]):
            return ", ".join(names)
        name = re.split(r"\s*(?:[,|;]|\s[-–—]\s|\bon\b)\s*", match["name"], maxsplit=1)[0]
        if _person(name):
            return name
    return None


def _person(name: str) -> bool:
    words = name.split()
    return (
        1 <= len(words) <= 6
        and all(_NAME_WORD.match(word) for word in words)
        and not _NOT_A_PERSON.search(name)
        and not DATE_RE.search(name)
    )


def _listed_twice(byline: str) -> list[str] | None:
    """The authors of a byline scraped as their names run together, then listed ("By Joe
    Johns Aileen Graef Holly Yan, Joe Johns, Aileen Graef, Holly Yan"), or None."""
    names = [part.strip() for part in byline.split(",")]
    if not runs_together(names) or not all(_person(name) for name in names[1:]):
        return None
    return names[1:]


def runs_together(names: Sequence[str]) -> bool:
    """Whether the first of ``names`` is the others run together, as scrapers list authors
    ("Joe Johns Aileen Graef", "Joe Johns", "Aileen Graef"); an agency may lead the run
    ("Reuters Robert Shackelford", "Robert Shackelford"). One word is no run of names."""
    rest = " ".join(" ".join(names[1:]).split())
    return len(rest.split()) >= 2 and " ".join(names[0].split()).endswith(rest)


def _publisher(text: str, body: Sequence[Segment], title: str | None = None) -> str | None:
    last_text = max((s.end for s in body if s.kind == "text"), default=None)
    if last_text is not None:
        # An attribution line right after the story names the outlet that wrote it.
        for count, line in enumerate(iter_lines(text[last_text : last_text + 2000])):
            if count >= 5:
                break
            if match := _ATTRIBUTION.match(line.text):
                return match["name"].rstrip(".")
    # A page's own brand shows up twice: as its logo and as its house byline ("By VOA News").
    logos = {m["brand"].casefold(): m["brand"] for m in _LOGO.finditer(text)}
    for match in _HOUSE_BYLINE.finditer(text):
        if brand := logos.get(match["brand"].casefold()):
            return brand
    for match in _COPYRIGHT.finditer(text):
        if not re.match(r"(?i)all\b", match["name"]):
            return match["name"]
    for segment in [s for s in body if s.kind == "text"][:3]:
        if match := _WIRE.match(text, segment.start, min(segment.end, segment.start + 120)):
            return match["name"].strip()
    return title_outlet(title, text, body) if title else None


def title_outlet(title: str, text: str, body: Sequence[Segment]) -> str | None:
    """The outlet ``title`` ends with, when a dateline line above the story names it too
    ("… | CNN" and "Tokyo CNN —"): a brand seen twice, as with a logo and a house byline."""
    match = _TITLE_SUFFIX.search(title)
    if match is None:
        return None
    brand = match["brand"].strip()
    stop = next((s.start for s in body if s.kind == "text"), len(text))
    named = re.compile(
        rf"(?m)^[ \t]*(?:[A-Z][\w.,' -]*\s)?{re.escape(brand)}[ \t]+[-–—][ \t]*$"
    )
    return brand if named.search(text, 0, stop) else None


def extract_metadata(text: str, infer: bool = False) -> Metadata:
    """Title, header date (ISO), byline author and publisher stated by a news page's text.

    The title is the line right above the byline or date stamp, whatever its shape (cut
    short, "… | CNN", two sentences), else the first headline-shaped line at the top (not
    navigation, a date stamp, a byline, a dateline such as "CNN —" or a sentence); a
    cut-short ending shows as "…" and an outlet the title ends with and the publisher names
    is dropped from it. The date comes only from date-stamp lines in that header, never
    from the story. The author is the first personal "By ..." line in the header. The
    publisher comes from an attribution line right after the story ("From The Epoch Times"),
    a brand seen both as the page's logo and its house byline, a dated copyright notice
    ("© 2023 Reuters"), the agency of a wire dateline ("SANTIAGO, March 14 (Reuters) -") or
    an outlet the title ends with that a dateline line names too ("… | CNN" and "Tokyo CNN
    —"), in that order. Unknown fields are None.

    With ``infer``, a page with no header date gets the one ``infer_date`` reads from its
    story, flagged ``date_inferred``.
    """
    header = _header(text)
    title = _title(header)
    date = None
    for line in header:
        if line.prose or line.caption:
            continue
        match = dateline(line.text)
        if match and (date := _iso(match)):
            break
    body = tuple(find_body(text, title))
    inferred = False
    if date is None and infer:
        date = infer_date(text, body)
        inferred = date is not None
    publisher = _publisher(text, body, title)
    shown = shown_title(title, publisher) if title else None
    return Metadata(shown, date, _author(header), publisher, inferred, body)


def infer_date(text: str, body_segments: Sequence[Segment]) -> str | None:
    """The latest fully specified date the story's own text mentions, as ISO, or None.

    For pages without a header date: a caption's "Nov. 27, 2020" bounds the publication date
    from below. Only dates with day, month and year that can be read one way count
    ("01/02/2020" does not), and None when the body also names a later year on its own, or
    no such date.
    """
    latest: str | None = None
    last_year = 0
    for segment in body_segments:
        window_end = -1
        for year in _YEAR.finditer(text, segment.start, segment.end):
            last_year = max(last_year, int(year.group()))
            if year.start() < window_end:
                continue
            # DATE_RE is slow over long prose: only try it around each year.
            window_end = min(segment.end, year.end() + 8)
            for match in DATE_RE.finditer(text, max(segment.start, year.start() - 30), window_end):
                iso = _iso(match)
                if iso and (latest is None or iso > latest):
                    latest = iso
    # A later year named on its own ("in 2021") means the latest full date is not the latest
    # event, so the bound it gives would be wrong.
    if latest is None or last_year > int(latest[:4]):
        return None
    return latest
