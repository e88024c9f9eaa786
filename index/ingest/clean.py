"""Find the story in a scraped news page: offsets of prose lines, with page furniture left out.

Cleaning never rewrites text. Each kept line becomes a ``Segment`` of offsets into the original
string, so passages and citations can always point back at the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import NamedTuple

__all__ = ["Segment", "Line", "find_body", "iter_lines", "dateline", "DATE_RE"]


@dataclass(frozen=True)
class Segment:
    start: int  # offset into the original file text (Python str index)
    end: int
    # "text" (story prose), "caption" (photo caption / repeated image description) or
    # "byline" (the header's "By …" line with the date stamp next to it: who wrote it, when)
    kind: str


# Features are measured on a line's head only, so a 100k-character line costs no more than a
# short one; every threshold below is far smaller than this window.
_HEAD = 1000
_LONG_PROSE_WORDS = 20  # an unpunctuated line this long is truncated prose, not a heading
_RESUME_WORDS = 12  # sentences this long, two in a row, mean the story goes on after a marker

# A non-blank line, already stripped: line breaks are whitespace, so \S never crosses one.
_LINE = re.compile(r"\S(?:[^\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]*\S)?")
# A sentence end, allowing closing quotes and reference marks such as "[citation needed]".
_TERMINAL = re.compile(r"(?<!\.\.)[.!?][\"'”’)\]]*(?:\[[^\[\]]{1,24}\])*$")
_TAIL = 48

_MONTHS = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
#: A fully specified calendar date: ISO, "Jan. 2, 2020", "2 January 2020" or "01/02/2020".
DATE_RE = re.compile(
    r"(?<![\w/.-])(?:"
    r"(?P<y1>\d{4})-(?P<m1>\d{1,2})-(?P<d1>\d{1,2})(?![\d-])"
    rf"|(?P<mon2>{_MONTHS})\.?\s+(?P<d2>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<y2>\d{{4}})(?!\d)"
    rf"|(?P<d3>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<mon3>{_MONTHS})\.?,?\s+(?P<y3>\d{{4}})(?!\d)"
    r"|(?P<a4>\d{1,2})[/.](?P<b4>\d{1,2})[/.](?P<y4>\d{4})(?!\d)"
    r")",
    re.IGNORECASE,
)
_YEAR = re.compile(r"[0-9]{4}")  # a cheap test before the costly DATE_RE
_DATELINE_WORDS = frozenset(
    """updated published posted date last modified on at am pm a.m p.m gmt utc et est edt bst
    cet pt pst mon tue tues wed thu thur thurs fri sat sun monday tuesday wednesday thursday
    friday saturday sunday ago just now hour hours hr hrs minute minutes min mins day days read
    | - – — · • / , :""".split()
)
_TIME = re.compile(r"^\d{1,2}[:.]\d{2}(?:[:.]\d{2})?(?:am|pm)?$|^\d{1,2}(?:am|pm)$", re.IGNORECASE)

# Lines that are page furniture wherever they appear (matched against the stripped line).
_DROP = re.compile(
    r"^(?:showing posts with label|accessibility links|skip to (?:main )?(?:content|navigation)"
    r"|jump to (?:content|navigation)|toggle navigation|(?:main )?menu\s*$|search\s*$"
    r"|advertisement|sponsored(?: content)?\s*$|ad\s*$|story continues below|continue reading"
    r"|share (?:this|on|via|the story|the article|article)\b|share\s*$|tweet\s*$|e-?mail\s*$"
    r"|print\s*$|copy link|facebook\s*$|twitter\s*$|whatsapp\s*$|linkedin\s*$"
    r"|(?:related|read more|read also|also read|see also|more|watch|listen|click here)\s*[:|»>›]"
    r"|(?:click|tap) here\b|by (?:registering|signing up|subscribing|clicking|continuing)\b"
    r"|we use cookies|this (?:web)?site uses cookies|accept (?:all )?cookies"
    r"|(?:php )?(?:warning|notice|deprecated|fatal error|parse error)\s*:.*\bon line \d+\s*$"
    r"|[\d\s]*[-+−–×x*÷/][\d\s]*=[\d\s]*$"  # captcha arithmetic, "27 − = 21"
    r"|(?:your email address|your e-mail) will not be published|required fields are marked"
    # Editors' notes (author bios, safety notes, "a version of this story appeared in …"),
    # magazine subscription boxes and referral disclosures: long, but never story.
    r"|editor['’]?s note\s*:|subscribe to\b.{0,300}\bsign up for\b.{0,60}\bnewsletters?\b"
    r"|[\w .'’-]{2,40}\bmay earn revenue from\b.{0,80}\breferrals?\b)",
    re.IGNORECASE,
)
# News sites' boxes inside the story (found in real news pages: newsletter and subscription
# boxes, puzzle and podcast promotions, affiliate notes, reporters' contact lines, update
# notes, "Contributing:" credits): furniture wherever they appear, searched in lines of at
# most _PROMO_WORDS words, so a story sentence that mentions a newsletter stays.
_PROMO = re.compile(
    r"\bsign[- ]?up\b.{0,160}\b(?:newsletter|inbox)|\bnewsletter\b.{0,60}\bsign[- ]?up\b"
    r"|\b(?:subscribe|sign up)\b.{0,40}\b(?:our|free|daily|weekly)\b.{0,40}\b(?:newsletter"
    r"|email)|^need a break\?|\bplay the\b.{0,50}\bcrossword|^have feedback\?"
    r"|\b(?:earn|receive) an affiliate (?:fee|commission)|\bsupport(?:ing)? (?:our|local)"
    r" journalism|^contributing\s*:|^\(?this (?:story|article|post) (?:was|has been)"
    r" updated\b|^\(?updated\b.{0,40}\b(?:to|with) (?:add|include|reflect)"
    r"|\b(?:reach|email|contact|follow) (?:him|her|them|us)\b.{0,80}(?:@|\bon (?:x|twitter"
    r"|facebook|instagram|threads)\b)|^(?:contact|reach|email|send (?:story )?tips(?: or ideas)?"
    r" to|got a (?:tip|story)[^?]{0,20}\? contact)\b.{0,120}(?:@|\(\d{3}\)|\d{3}-\d{4})"
    r"|^follow [\w .'’-]{2,40} on (?:x|twitter|threads|instagram|facebook)\b"
    r"|\bclick here to (?:see|view|read|sign|subscribe|listen|watch)\b"
    r"|\bdownload (?:the|our) .{0,30}\bapp\b|^listen to (?:the|this|our) podcast"
    r"|\bwherever you get your podcasts\b|\byour favou?rite podcast (?:player|app)\b"
    # A label, a colon and a call to the outlet's own pages: "Prep for the polls: See who is
    # running … in our Voter Guide", "Holiday deals: Shop … curated by our editors",
    # "NFL STATS CENTRAL: The latest NFL scores, schedules, odds, stats and more."
    r"|^[^.!?:]{2,50}:\s*(?:see|follow|shop|text|sign[- ]?up|subscribe|download|listen|watch)\b"
    r".{0,200}\b(?:our|coverage|newsletters?|editors|team)\b"
    r"|^[^.!?:]{2,50}:\s*(?:the )?latest\b.{0,120}\band more\.?$"
    r"|\bmay earn (?:us )?(?:a )?commissions?\b|\bthrough our links\b"
    r"|\bplease consider (?:a subscription|subscribing)\b|\bbecome an? [\w ]{0,30}subscriber\b"
    r"|\bto support (?:his|her|their|our) work\b|\bon the player below\b"
    r"|\bis supported in part by a grant\b|\bis made possible (?:through|by) the (?:generous )?"
    r"support of\b|\bsignatory of the international fact-checking network\b"
    # A reporter's or columnist's address (an address alone may be the story's: "email
    # questions to the county at …").
    r"|^(?=.*\b(?:reporter|columnist|correspondent|writer|editor|e-?mail me|contact me|reach me"
    r"|story ideas?|news tips?)\b).*?[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|\bdownload (?:it )?(?:for|now|today)\b.{0,60}\b(?:coverage|crosswords|free)\b"
    r"|\bread here\.?$|^[^.!?]{0,100}[,:]\s*(?:tap or )?click here\b",
    re.IGNORECASE,
)
_PROMO_WORDS = 60
# Every alternative of _PROMO needs one of these (or a colon early in the line), so most lines
# skip the regex: with its ~35 alternatives it costs ~0.25 ms a line, most of a page's cleaning.
_PROMO_HINTS = (
    "sign", "newsletter", "subscri", "need a break", "crossword", "feedback", "affiliate",
    "journalism", "contributing", "updated", "contact", "reach", "mail", "follow", "tip", "send",
    "click", "download", "podcast", "commission", "links", "consider", "support", "player",
    "grant", "possible", "@", "read here",
)


def _promo(head: str) -> bool:
    low = head.lower()
    return (":" in low[:52] or any(hint in low for hint in _PROMO_HINTS)) and bool(
        _PROMO.search(head)
    )
# Headings after which the rest of the page is furniture, unless the story clearly goes on.
_END = re.compile(
    r"^(?:related(?: stories| articles| posts| coverage| news| content| topics| links| reading)?"
    r"|more (?:stories|news|articles|from|on|in|like this)\b|recommended(?: for you| stories)?"
    r"|you (?:may|might) (?:also )?(?:like|be interested)|read (?:more|next)|special sections?"
    r"|most (?:read|popular|viewed|shared)|trending(?: now| stories)?|popular (?:now|stories)"
    r"|latest (?:news|stories)|top stories|editor'?s picks|further reading|about the author"
    r"|written by|sign up for|subscribe to|get (?:our|the) \w+ newsletter"
    r"|(?:this (?:article|story) (?:was )?)?(?:originally|first) (?:published|appeared)"
    r" (?:in|on|by|at)"
    r"|(?:from|via|source|courtesy of)\s*:?\s+"
    r"(?-i:(?:The\s+)?[A-Z][\w&.'’-]*(?:\s+[A-Z][\w&.'’-]*){0,4})\s*\.?$)",
    re.IGNORECASE,
)
# The comments section and the copyright footer: nothing after them is story.
_FINAL = re.compile(
    r"(?:leave a (?:reply|comment)|post a comment|add a comment|\d+ comments?\b|comments?\s*"
    r"(?:\(\d+\))?\s*$|join the (?:conversation|discussion)|show comments|©|\(c\)\s*\d{4}"
    r"|copyright\b)",
    re.IGNORECASE,
)
# The story's own sign-off: kept if it is prose, and it is the last story line.
_LAST = re.compile(
    r"\bcontributed(?: reporting)? to this (?:report|story|article)|^additional reporting by\b"
    r"|^reporting by\b|;\s*editing by\b",
    re.IGNORECASE,
)
# … and a wire service's credit line, which ends the story too but is not story: "Reporting by
# … in Sydney; Editing by …", "(With additional reporting by CNN's … in Jerusalem.)". Names,
# places and these words only ("Reporting by the Gazette found that …" is story).
_CREDIT = re.compile(r"^\(?(?:with )?(?:additional )?(?:reporting|writing|editing) by\s",
                     re.IGNORECASE)
_CREDIT_WORDS = frozenset("in and by with additional reporting writing editing the of".split())


def _credit(head: str) -> bool:
    return bool(_CREDIT.match(head)) and all(
        not word[:1].islower() or word in _CREDIT_WORDS
        for word in (token.strip("(),;.:") for token in head.split())
    )


_BYLINE = re.compile(r"^(?i:(?:written\s+)?by)\s+[A-Z]")
_DROPPED = frozenset({"drop", "byline", "dateline"})

_CAPTION_START = re.compile(
    r"^(?:FILE(?: PHOTO)?\s*[-–—:]|File photo\b|In this\b.{0,40}?\b(?:photo|image|picture"
    r"|handout|video|frame grab)|(?:Photo|Image|Picture|Caption)\s*:)",
)
_CREDIT_PAREN = re.compile(
    r"\(([^()]{0,150}\b(?:photos?|images?|getty|reuters|afp|ap|epa|via|courtesy|handout|pool"
    r"|credit)\b[^()]{0,150})\)\s*$",
    re.IGNORECASE,
)
_CREDIT_SLASH = re.compile(r"\b(?:REUTERS|AFP|AP|EPA|Getty Images)\s*/\s*[A-Z]")
# The photographer first, then the agency: "Zahid Hussain/AP", "Roger Kisby/Bloomberg/Getty
# Images". Photo galleries run captions together on one line, each after its credit.
_CAPTION_OPENERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ\"“‘'(")  # what a caption starts with
_CREDIT_NAMED = re.compile(
    r"\b[A-Z][\w.'’-]*(?: [A-Z][\w.'’-]*){0,3}(?:/[A-Z][\w&.'’ -]{0,40}?){0,3}/(?:AP|AFP"
    r"|Reuters|REUTERS|EPA(?:-EFE)?|Getty Images|Bloomberg|Shutterstock|Sipa USA|NurPhoto"
    r"|Anadolu(?: Agency)?|Imagn Images|USA TODAY(?: Sports)?)(?=\s|$)"
)
# Photo captions describe the picture in the present tense: "X delivers a statement ..., Dec. 29".
_CAPTION_VERBS = frozenset(
    """delivers listens speaks attend attends walk walks stands holds waves gestures arrives
    carries gathers poses sits talks shakes addresses inspect inspects""".split()
)


class Line(NamedTuple):
    """One non-blank line: offsets of its stripped text and the shape features the rules use."""

    start: int
    end: int
    text: str
    words: int
    sentence: bool  # ends with terminal punctuation (not an ellipsis)
    prose: bool  # shaped like story prose: a sentence, or a long lowercase run
    caption: bool
    # None, or "drop" / "end" / "final" / "last" / "credit" for furniture rules, "byline" /
    # "dateline" for the header's stamps (dropped, except a byline and its adjacent date in the
    # header)
    kind: str | None


def _cap_ratio(tokens: list[str]) -> float:
    """Share of capitalised words, a headline/title-case cue (looks at the first 40 words)."""
    alpha = caps = 0
    # The first word is capitalised in any sentence, so it says nothing about title case.
    for token in tokens[1:40]:
        first = token.lstrip("\"'“‘([")[:1]
        if first.isalpha():
            alpha += 1
            caps += first.isupper()
    return caps / alpha if alpha else 0.0


def dateline(text: str) -> re.Match[str] | None:
    """The date in ``text`` if the whole line is a date/byline-style stamp, else None.

    "Updated January 02, 2020 07:53 PM", " date 2020-01-02 USA", "January 2, 2020US News"
    and "March 14, 2023 4:12 PM GMT Updated 2 hours ago" are date lines; "The talks resumed
    on Jan. 5, 2020." is prose that mentions a date.
    """
    if len(text) > 120 or not _YEAR.search(text):
        return None
    match = DATE_RE.search(text)
    if match is None:
        return None
    rest = (text[: match.start()] + " " + text[match.end() :]).split()
    if len(rest) > 9:  # "March 14, 2023 4:12 PM GMT Updated 2 hours ago"
        return None
    for word in rest:
        bare = word.strip(",.;:()[]")
        if bare and not (
            bare.lower() in _DATELINE_WORDS
            or _TIME.match(bare)
            or bare[0].isupper()
            or bare[0].isdigit()
        ):
            return None
    return match


def _credited(text: str) -> bool:
    """A photo credit ends the line or starts it, or two credits share it (a gallery). A
    credit is followed by the line's end or a new capitalised caption ("A Gannett/USA TODAY
    analysis" is not one)."""
    credits = []  # (where each credit starts, whether it ends the line)
    for match in _CREDIT_NAMED.finditer(text):
        rest = text[match.end():].lstrip()
        if not rest or rest[0] in _CAPTION_OPENERS:
            credits.append((match.start(), not rest))
    return bool(credits) and (len(credits) >= 2 or credits[0][0] == 0 or credits[-1][1])


def _is_caption(text: str, head: str, words: list[str]) -> bool:
    tail = text[-320:]
    if (
        _CAPTION_START.match(head)
        or (text.endswith(")") and _CREDIT_PAREN.search(tail))
        or ("/" in tail and _CREDIT_SLASH.search(tail))
    ):
        return True
    return (
        len(words) <= 60
        and not _CAPTION_VERBS.isdisjoint(words)
        and DATE_RE.search(head) is not None
    )


def _furniture(head: str, tokens: list[str]) -> str | None:
    words = len(tokens)
    low = head.lower()
    if _DROP.match(head):
        return "drop"
    if _FINAL.match(head) or "all rights reserved" in low:
        return "final"
    if words <= 12 and _END.match(head):
        return "end"
    if ("contributed" in low or "reporting by" in low or "editing by" in low) and _LAST.search(
        head
    ):
        return "last"
    if words <= 10:
        if _BYLINE.match(head) and _cap_ratio(tokens) >= 0.6:
            return "byline"
        if dateline(head):
            return "dateline"
    return None


def _line(stripped: str, start: int, end: int) -> Line:
    head = stripped[:_HEAD]
    tokens = head.split()
    words = len(tokens)
    sentence = bool(_TERMINAL.search(stripped[-_TAIL:])) and not stripped.endswith(("...", "…"))
    if len(head) < 400 and words <= 25:
        kind = _furniture(head, tokens)
    else:
        kind = "drop" if _DROP.match(head) else None  # PHP warnings can be long
    if kind is None and words <= _PROMO_WORDS and _promo(head):
        kind = "drop"
    if kind in (None, "last") and words <= _PROMO_WORDS and _credit(head):
        kind = "credit"  # a sign-off of names only: it ends the story and is not kept
    if sentence:
        prose = words >= 2 and not (words < 15 and _cap_ratio(tokens) >= 0.7)
    else:
        prose = words >= _LONG_PROSE_WORDS and _cap_ratio(tokens) < 0.5
    caption = words >= 4 and (
        _is_caption(stripped, head, tokens) or (prose and "/" in stripped and _credited(stripped))
    )
    return Line(start, end, stripped, words, sentence, prose, caption, kind)


def _continues(text: str, end: int, start: int) -> bool:
    """Whether the line at ``start`` goes on with the sentence the line ending at ``end`` broke
    off: no blank line between, no sentence end before, and a lowercase start after a
    lowercase word, or a digit/closing-punctuation start after a short symbol."""
    first = text[start]
    tail = text[max(0, end - _TAIL) : end]
    last_word = tail.rsplit(None, 1)[-1].lstrip("\"'“‘([")
    if first.islower():
        # After a capitalised word the previous line is more likely a heading than a break.
        if last_word[:1].isupper():
            return False
    elif first.isdigit() or first in ")]},;:%":
        # Digits go on a symbol ("CO" + "2)"), not a heading ("Local News" + "12 Comments").
        if len(last_word) > 3:
            return False
    else:
        return False
    if _TERMINAL.search(tail):
        return False
    gap = text[end:start]
    return gap.count("\n") + gap.count("\r") - gap.count("\r\n") <= 1


def iter_lines(text: str) -> Iterator[Line]:
    """Non-blank lines of ``text`` (any newline convention), stripped, with their features.

    A line broken mid-sentence (the next line starts in lowercase or with a digit, as around
    scraped sub- and superscripts) is joined with its continuation into one ``Line``.
    """
    start = end = -1
    for match in _LINE.finditer(text):
        if start >= 0 and _continues(text, end, match.start()):
            end = match.end()
            continue
        if start >= 0:
            yield _line(text[start:end], start, end)
        start, end = match.span()
    if start >= 0:
        yield _line(text[start:end], start, end)


def _resumes(line: Line, following: Line | None) -> bool:
    def substantial(item: Line | None) -> bool:
        return (
            item is not None
            and item.kind is None
            and item.sentence
            and item.prose
            and not item.caption
            and item.words >= _RESUME_WORDS
        )

    return substantial(line) and substantial(following)


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def find_body(text: str, title: str | None = None) -> list[Segment]:
    """Sorted, non-overlapping segments of the article body worth indexing.

    Keeps prose-shaped lines as kind "text", photo captions as kind "caption", and the header's
    byline with the date stamp next to it as kind "byline" (a date stamp alone is only
    metadata, not a passage). Drops lines
    that are not sentences (navigation, headings, bylines, date stamps, the title), known
    furniture (share/ad/cookie/newsletter/comment boilerplate, PHP warnings, captchas) and
    everything after an end-of-story marker ("Related Stories", "Leave a Reply", "From The
    Epoch Times", "... contributed to this report.") unless two long sentences in a row show
    the story goes on. Runs in time linear in ``len(text)``.
    """
    body = _Body(_normal(title) if title and title.strip() else None)
    lines = _Lines(text)
    while (line := lines.next()) is not None:
        if body.take(line, lines):
            break
    body.flush_header()
    return body.segments


class _Lines:
    """A text's lines, with one line of lookahead for the resume rule."""

    def __init__(self, text: str) -> None:
        self._lines = iter_lines(text)
        self._pending: list[Line] = []

    def next(self) -> Line | None:
        return self._pending.pop() if self._pending else next(self._lines, None)

    def peek(self) -> Line | None:
        """The next line that is not dropped (the dropped ones before it are skipped)."""
        while True:
            item = next(self._lines, None)
            if item is None or item.kind not in _DROPPED:
                break
        if item is not None:
            self._pending.append(item)
        return item


@dataclass
class _Body:
    """``find_body``'s state as it reads the lines: the segments kept, whether the story has
    started or an end marker was met, the last line, and the header lines not yet emitted."""

    skip: str | None  # the title, normalised: a line that repeats it is dropped
    segments: list[Segment] = field(default_factory=list)
    started: bool = False
    ended: bool = False
    last_kept: bool = False
    previous: str | None = None
    header: list[Line] = field(default_factory=list)  # byline and date stamps above the story

    def flush_header(self) -> None:
        # A byline is article content (who wrote it); a date stamp alone is only metadata.
        if any(item.kind == "byline" for item in self.header):
            self.segments.extend(Segment(item.start, item.end, "byline") for item in self.header)
        self.header.clear()

    def take(self, line: Line, lines: _Lines) -> bool:
        """Keep or drop ``line``; True when the story ends with it."""
        if line.kind in ("byline", "dateline") and not self.started and not self.ended:
            if line.text != self.previous:
                self.header.append(line)
            self.previous, self.last_kept = line.text, False
            return False
        self.flush_header()
        if line.text == self.previous:
            # A line repeated at once is an image's alt text and caption scraped twice.
            if self.last_kept and self.segments[-1].kind == "text":
                self.segments[-1] = replace(self.segments[-1], kind="caption")
            return False
        self.previous, self.last_kept = line.text, False
        if line.kind in _DROPPED or self._title(line):
            return False
        if self.ended:
            if line.kind == "final":
                return True
            if not _resumes(line, lines.peek()):
                return False
            self.ended = False
        if line.kind in ("final", "credit"):
            return self.started
        if line.kind == "end":
            self.ended = self.started
            return False
        if line.caption or line.prose:
            self.segments.append(
                Segment(line.start, line.end, "caption" if line.caption else "text"))
            self.last_kept = True
            self.started = self.started or not line.caption
        return line.kind == "last" and self.started

    def _title(self, line: Line) -> bool:
        skip = self.skip
        return skip is not None and len(line.text) < 2 * len(skip) + 8 and \
            _normal(line.text) == skip
