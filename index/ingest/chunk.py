"""Split an article's kept segments into sentence-aware passages with exact file offsets.
(When the passages it makes change, bump ``index.storage.manifest.CHUNK_VERSION``.)"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..models.spec import PASSAGE_BUDGET
from .clean import Segment

# Word pieces per passage by default (a model's ``passage_budget``), before the title/date
# prefix and [CLS]/[SEP] (the default model's window is 256).
MAX_TOKENS = PASSAGE_BUDGET
OVERLAP_SENTENCES = 1

Span = tuple[int, int]
Counter = Callable[[list[str]], list[int]]

_ABBREVIATIONS = frozenset(
    """mr mrs ms dr gen sen rep gov lt col capt sgt st jan feb mar apr jun jul aug sep sept oct
    nov dec u.s u.k u.n d.c inc co corp jr sr no vs etc e.g i.e a.m p.m fig ft mt prof pres
    adm maj cmdr gens reps sens""".split()
)
_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)")
_WORD_BEFORE = re.compile(r"([\w.]+)$")
# A "sentence" longer than this is a run of text with no sentence breaks (a dump, a log,
# text without punctuation): it is cut into windows of at most this many characters, at
# whitespace, before its word pieces are counted. A tokenizer call keeps an encoding of the
# whole string (hundreds of bytes a word piece), so a 1,000,000-character line cost ~250 MB.
LONG_SENTENCE = 10_000
_LAST_SPACE = re.compile(r"\s(?=\S*$)")


@dataclass(frozen=True)
class Chunk:
    start: int
    end: int
    kind: str
    sentences: tuple[Span, ...]


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Sentence spans (offsets into ``text``) within ``text[start:end]``, whitespace trimmed."""
    end = len(text) if end is None else end
    spans: list[Span] = []
    begin = start
    for match in _BOUNDARY.finditer(text, start, end):
        stop = match.end()
        after = text[stop:end].lstrip()
        if after and not (after[0].isupper() or after[0].isdigit() or after[0] in "\"'“‘(["):
            continue
        word = _WORD_BEFORE.search(text, begin, match.start() + 1)
        if match.group().startswith(".") and word:
            token = word.group(1).lower().rstrip(".")
            if token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
                continue
        spans.append((begin, stop))
        begin = stop
    spans.append((begin, end))
    return [trimmed for span in spans if (trimmed := _trim(text, *span))]


def _trim(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _runs(text: str, segments: Sequence[Segment]) -> list[list[Segment]]:
    """Group segments that follow each other with only whitespace between them, so a passage
    never spans dropped furniture (its cited file span must equal its text)."""
    runs: list[list[Segment]] = []
    for segment in segments:
        previous = runs[-1][-1] if runs else None
        if (
            previous is not None
            and previous.kind == segment.kind
            and not text[previous.end : segment.start].strip()
        ):
            runs[-1].append(segment)
        else:
            runs.append([segment])
    return runs


def _count(count_tokens: Counter, text: str, spans: list[Span],
           chars: int = 20 * LONG_SENTENCE) -> list[int]:
    """``count_tokens`` of the spans' texts, in calls of at most ``chars`` characters (or one
    span): a call's encodings all stay alive until it returns."""
    counts: list[int] = []
    i = 0
    while i < len(spans):
        j, size = i, 0
        while j < len(spans) and (j == i or size + spans[j][1] - spans[j][0] <= chars):
            size += spans[j][1] - spans[j][0]
            j += 1
        counts.extend(count_tokens([text[s:e] for s, e in spans[i:j]]))
        i = j
    return counts


def _windows(text: str, span: Span, size: int = LONG_SENTENCE) -> list[Span]:
    """``span`` itself, or when it is longer than ``size`` characters, consecutive pieces of
    at most ``size`` characters each ending at whitespace where the window has any."""
    start, end = span
    if end - start <= size:
        return [span]
    out: list[Span] = []
    while end - start > size:
        space = _LAST_SPACE.search(text, start + size // 2, start + size)
        cut = space.start() if space else start + size
        if (piece := _trim(text, start, cut)) is not None:
            out.append(piece)
        start = cut
    if (piece := _trim(text, start, end)) is not None:
        out.append(piece)
    return out


def _split_long(text: str, span: Span, tokens: int, budget: int) -> list[Span]:
    """Cut a sentence longer than the budget at whitespace into roughly equal pieces."""
    start, end = span
    pieces = -(-tokens // budget)
    words = [m.span() for m in re.finditer(r"\S+", text[start:end])]
    per_piece = -(-len(words) // pieces)
    out = []
    for i in range(0, len(words), per_piece):
        group = words[i : i + per_piece]
        out.append((start + group[0][0], start + group[-1][1]))
    return out


def _hard_cut(
    text: str, span: Span, tokens: int, budget: int, count_tokens: Counter
) -> list[tuple[Span, int]]:
    """Cut a span into character runs that each fit ``budget``, checking every run: a cut
    inside a word can tokenize into more pieces than the word had whole."""
    start, end = span
    step = max(1, (end - start) * budget // (tokens + 1))
    cuts = [c for s in range(start, end, step) if (c := _trim(text, s, min(s + step, end)))]
    out: list[tuple[Span, int]] = []
    for cut, n in zip(cuts, count_tokens([text[s:e] for s, e in cuts]), strict=True):
        if n <= budget or cut[1] - cut[0] <= 1:
            out.append((cut, n))
        else:
            out.extend(_hard_cut(text, cut, n, budget, count_tokens))
    return out


def chunk_segments(
    text: str,
    segments: Sequence[Segment],
    count_tokens: Counter,
    max_tokens: int = MAX_TOKENS,
    overlap: int = OVERLAP_SENTENCES,
) -> list[Chunk]:
    """Pack sentences into passages of at most ``max_tokens`` word pieces.

    Passages prefer to end at a paragraph break once they are half full, and repeat the last
    ``overlap`` sentences of the previous passage when they continue the same paragraph run.
    """
    chunks: list[Chunk] = []
    for run in _runs(text, segments):
        sentences: list[Span] = []
        paragraph_start: set[int] = set()
        for segment in run:
            spans = [piece for span in split_sentences(text, segment.start, segment.end)
                     for piece in _windows(text, span)]
            if spans:
                paragraph_start.add(len(sentences))
                sentences.extend(spans)
        counts = _count(count_tokens, text, sentences)
        units: list[tuple[Span, int, bool]] = []
        for i, (span, n) in enumerate(zip(sentences, counts, strict=True)):
            if n <= max_tokens:
                units.append((span, n, i in paragraph_start))
                continue
            pieces = _split_long(text, span, n, max_tokens)
            piece_counts = count_tokens([text[s:e] for s, e in pieces])
            for j, (piece, m) in enumerate(zip(pieces, piece_counts, strict=True)):
                if m > max_tokens:  # pathological tokenisation: hard cut by characters
                    units.extend(
                        (cut, n, False)
                        for cut, n in _hard_cut(text, piece, m, max_tokens, count_tokens)
                    )
                else:
                    units.append((piece, m, i in paragraph_start and j == 0))
        chunks.extend(_pack(units, run[0].kind, max_tokens, overlap))
    return chunks


def _pack(
    units: list[tuple[Span, int, bool]], kind: str, max_tokens: int, overlap: int
) -> list[Chunk]:
    chunks: list[Chunk] = []
    current: list[tuple[Span, int, bool]] = []
    total = 0

    def flush() -> None:
        spans = tuple(span for span, _, _ in current)
        chunks.append(Chunk(spans[0][0], spans[-1][1], kind, spans))

    i = 0
    while i < len(units):
        span, n, starts_paragraph = units[i]
        fits = total + n <= max_tokens
        paragraph_break = starts_paragraph and total >= max_tokens // 2 and not _fits_paragraph(
            units, i, max_tokens - total
        )
        if current and (not fits or paragraph_break):
            flush()
            keep: list[tuple[Span, int, bool]] = []
            if not starts_paragraph and overlap:
                keep = [u for u in current[-overlap:] if u[1] <= max_tokens // 3]
                if sum(u[1] for u in keep) + n > max_tokens:
                    keep = []
            current, total = keep, sum(u[1] for u in keep)
            continue
        current.append(units[i])
        total += n
        i += 1
    if current:
        flush()
    return chunks


def _fits_paragraph(units: list[tuple[Span, int, bool]], i: int, room: int) -> bool:
    """Whether the paragraph starting at unit ``i`` fits whole in ``room`` tokens."""
    size = units[i][1]
    for _, n, starts in units[i + 1 :]:
        if starts:
            break
        size += n
    return size <= room
