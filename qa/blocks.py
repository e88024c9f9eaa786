"""Answers as Slack messages: Block Kit blocks (slack_sdk's models) plus the plain-text
fallback. Pure functions.

Slack's limits are respected here, not by whoever posts: at most ``MAX_BLOCKS`` blocks, at most
``MAX_TEXT`` characters in a section or context text, ``MAX_VALUE`` in a button value; whatever
is cut ends with "…".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .cite import citation_text
from .results import Answer, Passage

MAX_BLOCKS = 50
MAX_TEXT = 3000
MAX_VALUE = 2000
MAX_FALLBACK = 3000
CONTEXT_CHARS = 240  # passage text shown on each side of the highlighted sentence
MAX_HIGHLIGHT = 1200
SHARE_ACTION = "share_answer"
# Feedback: 👍/👎 on the whole answer, the same on one finding (its overflow menu), and after
# a 👎 "which finding would have been right?" (a finding's rank, or 0 for none of them).
VOTE_ACTION = "vote_answer"
VOTE_FINDING_ACTION = "vote_finding"
RIGHT_ONE_ACTION = "right_finding"
ELLIPSIS = "…"

Block = dict[str, Any]


@dataclass(frozen=True)
class SlackMessage:
    """What ``chat.postMessage`` and ``response_url`` take: ``text`` is the notification and
    screen-reader fallback, ``blocks`` the layout."""

    text: str
    blocks: list[Block] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


def escape(text: str) -> str:
    """Slack's three control characters; everything else is shown as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fold(text: str) -> str:
    return " ".join(text.split())


def fit(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters with "…", never inside an ``&amp;``-style escape."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    cut = re.sub(r"&[a-z]{0,4}$", "", cut)
    return cut.rstrip() + ELLIPSIS


def _linked(rank: int | None, c: Any) -> str:
    """The citation, its title a link to the article where it has a URL."""
    text = escape(citation_text(rank, c))
    if c.url and re.match(r"https?://[^\s<>|]+$", c.url):
        title = escape(c.title or c.source)
        text = text.replace(title, f"<{c.url}|{title}>", 1)
    return text


def _source_line(p: Passage) -> str:
    line = _linked(p.rank, p.citation) + f" · `{escape(p.citation.source)}`"
    if p.also:
        others = "; ".join(_linked(None, c) for c in p.also)
        line += f" (also reported by {others})"
    return line


def _head(text: str, n: int) -> str:
    if len(text) <= n:
        return text
    cut = text[:n]
    space = cut.rfind(" ")
    return (cut[:space] if space > n // 2 else cut).rstrip() + ELLIPSIS


def _tail(text: str, n: int) -> str:
    if len(text) <= n:
        return text
    cut = text[-n:]
    space = cut.find(" ")
    return ELLIPSIS + (cut[space + 1 :] if 0 <= space < n // 2 else cut).lstrip()


def finding_text(p: Passage) -> str:
    """The passage around its highlighted sentence, the sentence in bold (mrkdwn)."""
    text = p.text
    if p.highlight is not None:
        a = p.highlight.start - p.citation.start
        b = p.highlight.end - p.citation.start
    if p.highlight is None or not 0 <= a < b <= len(text):
        return f"*[{p.rank}]* " + escape(_head(fold(text), 2 * CONTEXT_CHARS + MAX_HIGHLIGHT))
    before = _tail(fold(text[:a]), CONTEXT_CHARS)
    hit = _head(fold(text[a:b]), MAX_HIGHLIGHT)
    after = _head(fold(text[b:]), CONTEXT_CHARS)
    # mrkdwn has no escape for "*": a sentence containing one is marked like the CLI does.
    marked = f"*{escape(hit)}*" if "*" not in hit else f"»{escape(hit)}«"
    parts = [escape(before), marked, escape(after)]
    return f"*[{p.rank}]* " + " ".join(part for part in parts if part)


def _section(text: str, accessory: Any = None) -> Block:
    from slack_sdk.models.blocks import MarkdownTextObject, SectionBlock

    return SectionBlock(text=MarkdownTextObject(text=fit(text)), accessory=accessory).to_dict()


def _vote(answer: int, verdict: str, rank: int | None = None) -> str:
    import json

    return json.dumps({"a": answer, "v": verdict, **({"r": rank} if rank else {})})


def _vote_menu(answer: int, rank: int) -> Any:
    from slack_sdk.models.blocks import Option, OverflowMenuElement

    return OverflowMenuElement(action_id=VOTE_FINDING_ACTION, options=[
        Option(text=f"👍 [{rank}] is right", value=_vote(answer, "up", rank)),
        Option(text=f"👎 [{rank}] is wrong", value=_vote(answer, "down", rank)),
    ])


def vote_actions(answer: int) -> Block:
    """👍 / 👎 for the whole answer; ``value`` carries the recorded answer's id."""
    from slack_sdk.models.blocks import ActionsBlock, ButtonElement

    return ActionsBlock(block_id=f"votes-{answer}", elements=[
        ButtonElement(text="👍 Helpful", action_id=VOTE_ACTION, value=_vote(answer, "up")),
        ButtonElement(text="👎 Not right", action_id=VOTE_ACTION, value=_vote(answer, "down")),
    ]).to_dict()


def which_was_right(answer: int, ranks: list[int]) -> SlackMessage:
    """After a 👎: which finding would have been right, or none of them."""
    from slack_sdk.models.blocks import ActionsBlock, ButtonElement

    buttons = [ButtonElement(text=f"[{rank}]", action_id=RIGHT_ONE_ACTION,
                             value=_vote(answer, "up", rank)) for rank in ranks[:10]]
    buttons.append(ButtonElement(text="None of them", action_id=RIGHT_ONE_ACTION,
                                 value=_vote(answer, "none")))
    text = "Thanks. Which finding would have been right?"
    return SlackMessage(text, [_section(text), ActionsBlock(elements=buttons).to_dict()])


def _context(text: str) -> Block:
    from slack_sdk.models.blocks import ContextBlock, MarkdownTextObject

    return ContextBlock(elements=[MarkdownTextObject(text=fit(text))]).to_dict()


def answer_message(
    question: str,
    answer: Answer,
    top: int = 3,
    *,
    share_value: str | None = None,
    shared_by: str | None = None,
    notes: list[str] | None = None,
    feedback: int | None = None,
) -> SlackMessage:
    """The top ``top`` findings of ``answer`` with their sources, or a plain "no confident
    answer" with the closest source. ``share_value`` adds a "Share in channel" button carrying
    it; ``shared_by`` (a user id) notes who shared the answer; ``notes`` are shown under the
    question (what was searched, the channel's scope); ``feedback`` (the recorded answer's
    id) adds 👍/👎 buttons for the answer and a 👍/👎 menu on each finding."""
    head: list[Block] = [_context(f"*Question:* {escape(fold(question))}")]
    if shared_by:
        head.append(_context(f"Shared by <@{escape(shared_by)}>"))
    head += [_context(escape(note)) for note in notes or []]
    tail: list[Block] = []
    for warning in answer.warnings:
        tail.append(_context(f"Note: {escape(warning)}"))
    if share_value is not None:
        tail.append(share_actions(share_value))
    if feedback is not None and answer.passages:
        tail.append(vote_actions(feedback))

    if answer.answered:
        shown = answer.passages[: max(1, top)]
        intro: list[Block] = []
    else:
        shown = answer.passages[:1]
        closest = (
            " The closest source is below; it may not answer the question."
            if shown else "" if answer.reason else " Nothing in it comes close."
        )
        head_line = (f"*No confident answer in the archive:* {escape(answer.reason)}."
                     if answer.reason else "*No confident answer in the archive.*")
        intro = [_section(head_line + closest)]

    room = MAX_BLOCKS - len(head) - len(intro) - len(tail) - (1 if shown else 0)
    cut = len(shown) > room
    if cut:
        room -= 1  # for the note saying more were found
        shown = shown[:room]
    findings = [_section(finding_text(p), _vote_menu(feedback, p.rank) if feedback else None)
                for p in shown]
    if cut:
        findings.append(_context(f"{ELLIPSIS} more findings not shown (Slack's block limit)"))
    sources = [_context("\n".join(_source_line(p) for p in shown))] if shown else []
    blocks = head + intro + findings + sources + tail
    return SlackMessage(fallback_text(question, answer, shown), blocks)


def fallback_text(question: str, answer: Answer, shown: list[Passage]) -> str:
    """Plain text for notifications and clients without blocks."""
    if not answer.answered:
        why = f": {answer.reason}" if answer.reason else ""
        text = f"No confident answer in the archive to “{fold(question)}”{why}."
        if shown:
            text += " Closest source: " + citation_text(None, shown[0].citation) + "."
        return fit(escape(text), MAX_FALLBACK)
    lines = [f"Top findings for “{fold(question)}”:"]
    for p in shown:
        sentence = fold(p.highlight.text) if p.highlight else _head(fold(p.text), 300)
        lines.append(f"{sentence} — {citation_text(p.rank, p.citation)}")
    return fit(escape("\n".join(lines)), MAX_FALLBACK)


def share_actions(value: str) -> Block:
    """The "Share in channel" button; ``value`` comes back in the block_actions payload."""
    from slack_sdk.models.blocks import ActionsBlock, ButtonElement

    if len(value) > MAX_VALUE:
        raise ValueError(f"button value has {len(value)} characters; Slack allows {MAX_VALUE}")
    button = ButtonElement(
        text="Share in channel", action_id=SHARE_ACTION, value=value, style="primary"
    )
    return ActionsBlock(elements=[button]).to_dict()


def notice(text: str) -> SlackMessage:
    """A one-sentence message (usage hints, errors)."""
    return SlackMessage(fit(escape(text), MAX_FALLBACK), [_section(escape(text))])
