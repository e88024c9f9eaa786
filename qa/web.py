"""The search page `qa serve` serves at ``/``: server-rendered HTML, no CDN, no framework.

A question box with source and date filters; the findings with the answering sentence
marked, each with its citation (a link to the article's URL, or to ``/show`` — the stored
article text with the cited span marked — when it has none), date, outlet and "also reported
by"; a refusal with its reason and a "show the closest anyway" link; 👍/👎 buttons that post
to ``/feedback``. Every search is a plain GET (``/?q=…``), so results are permalinks and work
without JavaScript; the one small script only sends feedback. Labels, focus outlines, a
contrast ratio above 7:1 and a single column below 40em keep it usable by keyboard, screen
reader and phone.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any
from urllib.parse import urlencode

FIELDS = ("q", "source", "since", "until", "as_of", "k")

STYLE = """
:root { color-scheme: light; --ink: #1a1a1a; --muted: #4a4a4a; --line: #c8c8c8;
        --accent: #0b4f9c; --mark: #fff1a8; --bg: #ffffff; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 52em; padding: 1em; font: 17px/1.5 system-ui, sans-serif;
       color: var(--ink); background: var(--bg); }
h1 { font-size: 1.4em; margin: .2em 0 .6em; }
a { color: var(--accent); }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
form.search { display: grid; gap: .6em; grid-template-columns: 1fr 1fr 1fr; }
form.search .question { grid-column: 1 / -1; display: flex; gap: .5em; }
form.search .question input { flex: 1; }
label { display: block; font-size: .9em; color: var(--muted); }
input, button { font: inherit; padding: .45em .6em; border: 1px solid var(--muted);
                border-radius: 4px; min-height: 2.6em; }
input { width: 100%; background: #fff; color: var(--ink); }
button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; }
button.vote { background: #fff; color: var(--ink); border-color: var(--line); min-width: 3em; }
button.vote[aria-pressed="true"] { border-color: var(--accent); background: #e8f0fb; }
.status { margin: 1em 0; padding: .6em .8em; border-left: 4px solid var(--accent);
          background: #f3f6fa; }
.refused { border-left-color: #8a4b00; background: #fbf5ec; }
.note { margin: 1em 0; padding: .6em .8em; border-left: 4px solid #5a5a5a; background: #f4f4f4; }
ol.findings { list-style: none; padding: 0; }
ol.findings > li { border-top: 1px solid var(--line); padding: .8em 0; }
.passage { margin: .3em 0; }
mark { background: var(--mark); color: var(--ink); padding: 0 .1em; }
.cite, .also { font-size: .92em; color: var(--muted); }
.votes { display: flex; gap: .5em; align-items: center; margin-top: .4em; font-size: .9em; }
.thanks { color: var(--muted); }
.article { white-space: pre-wrap; }
@media (max-width: 40em) {
  body { font-size: 16px; padding: .7em; }
  form.search { grid-template-columns: 1fr; }
  form.search .question { flex-direction: column; }
}
"""

SCRIPT = """
document.querySelectorAll("[data-vote]").forEach(function (button) {
  button.addEventListener("click", function () {
    var box = button.closest(".votes");
    var body = {question: box.dataset.question, verdict: button.dataset.vote};
    if (box.dataset.rank) { body.rank = parseInt(box.dataset.rank, 10);
                            body.source = box.dataset.source; }
    if (box.dataset.asOf) { body.as_of = box.dataset.asOf; }
    fetch("/feedback", {method: "POST", headers: {"Content-Type": "application/json"},
                        body: JSON.stringify(body)})
      .then(function (response) {
        box.querySelectorAll("button").forEach(function (b) {
          b.setAttribute("aria-pressed", b === button ? "true" : "false"); });
        box.querySelector(".thanks").textContent =
          response.ok ? "Thanks, recorded." : "Could not record that (" + response.status + ").";
      });
  });
});
"""


def page(params: dict[str, str], answer: dict[str, Any] | None = None,
         error: str | None = None, weak: bool = False, notes: Sequence[str] = ()) -> str:
    """The search page: the form (filled from ``params``) and, after a search, the answer
    with its ``notes`` (the engine's warnings: a question cut to the model's window, only
    old articles for a question about now)."""
    question = params.get("q", "")
    title = f"{question} — archive search" if question else "Archive search"
    body = [f"<h1>Search the news archive</h1>{_form(params)}"]
    if error:
        body.append(f'<p class="status refused" role="alert">{escape(error)}</p>')
    elif answer is not None:
        body.append(_answer(params, answer, weak, notes))
    return _document(title, "".join(body))


def article_page(article: dict[str, Any], start: int | None, end: int | None) -> str:
    """``qa show`` as a page: the stored article text with the cited span marked."""
    text = article["text"]
    if start is not None and end is not None and 0 <= start <= end <= len(text):
        shown = (f"{escape(text[:start])}<mark id=\"cited\">{escape(text[start:end])}</mark>"
                 f"{escape(text[end:])}")
    else:
        shown = escape(text)
    facts = " · ".join(escape(str(article[k])) for k in ("publisher", "date", "author")
                       if article.get(k))
    link = (f'<p><a href="{escape(article["url"])}">{escape(article["url"])}</a></p>'
            if article.get("url") else "")
    body = (f'<p><a href="javascript:history.back()">← Back to the results</a></p>'
            f'<h1>{escape(article.get("title") or article["source"])}</h1>'
            f'<p class="cite">{facts}{" · " if facts else ""}{escape(article["source"])}</p>'
            f'{link}<div class="article">{shown}</div>')
    return _document(article.get("title") or article["source"], body)


def _document(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{body}</main><script>{SCRIPT}</script></body></html>"
    )


def _form(params: dict[str, str]) -> str:
    def field(name: str, label: str, kind: str = "text", hint: str = "") -> str:
        value = escape(params.get(name, ""), quote=True)
        extra = f' placeholder="{hint}"' if hint else ""
        return (f'<div><label for="{name}">{label}</label>'
                f'<input id="{name}" name="{name}" type="{kind}" value="{value}"{extra}></div>')

    question = escape(params.get("q", ""), quote=True)
    return (
        '<form class="search" action="/" method="get" role="search">'
        '<div class="question"><div style="flex:1"><label for="q">Question</label>'
        f'<input id="q" name="q" type="search" value="{question}" required '
        'placeholder="e.g. How many rockets landed at the Taji base?" autofocus></div>'
        '<button type="submit" style="align-self:end">Search</button></div>'
        + field("source", "Source or outlet", hint="e.g. voa")
        + field("since", "Published since", hint="YYYY-MM-DD")
        + field("until", "Published until", hint="YYYY-MM-DD")
        + "</form>"
    )


def _answer(params: dict[str, str], answer: dict[str, Any], weak: bool,
            notes: Sequence[str] = ()) -> str:
    passages = answer["passages"]
    parts = []
    as_of = params.get("as_of", "")
    if not answer["answered"]:
        reason = f": {escape(answer['reason'])}" if answer.get("reason") else ""
        closest = ""
        if not weak:
            link = "/?" + urlencode({**{k: v for k, v in params.items() if v}, "weak": "1"})
            closest = f' <a href="{escape(link, quote=True)}">Show the closest passages anyway</a>'
        parts.append(f'<p class="status refused" role="status">No confident answer in the '
                     f"archive{reason}.{closest}</p>")
        if passages:
            parts.append('<p class="cite">Closest passages (they may not answer the '
                         "question):</p>")
    else:
        link = "/?" + urlencode({k: v for k, v in params.items() if v})
        parts.append(f'<p class="status" role="status">{len(passages)} finding'
                     f'{"s" if len(passages) != 1 else ""} for “{escape(answer["question"])}”'
                     f' · <a href="{escape(link, quote=True)}" class="permalink">Permalink'
                     "</a></p>")
    # Below the status line, which stays the page's first: "the newest article shown is …".
    parts[1:1] = [f'<p class="note" role="note">Note: {escape(note)}</p>' for note in notes]
    if passages:
        items = "".join(_finding(answer["question"], p, as_of) for p in passages)
        parts.append(f'<ol class="findings">{items}</ol>')
    if answer["answered"] or passages:
        parts.append(_votes(answer["question"], None, as_of, "Was this answer useful?"))
    return "".join(parts)


def _finding(question: str, passage: dict[str, Any], as_of: str) -> str:
    cite = passage["citation"]
    text = passage["text"]
    highlight = passage.get("highlight")
    if highlight:
        offset = highlight["start"] - cite["start"]
        end = offset + len(highlight["text"])
        if 0 <= offset <= end <= len(text) and text[offset:end] == highlight["text"]:
            shown = (f"{escape(text[:offset])}<mark>{escape(highlight['text'])}</mark>"
                     f"{escape(text[end:])}")
        else:
            shown = escape(text)
    else:
        shown = escape(text)
    also = ""
    if passage.get("also"):
        names = ", ".join(_cite_link(c, short=True) for c in passage["also"])
        also = f'<p class="also">Also reported by {names}</p>'
    return (f'<li><p class="passage">{shown}</p><p class="cite">[{passage["rank"]}] '
            f"{_cite_link(cite)}</p>{also}"
            f'{_votes(question, passage, as_of, "Right finding?")}</li>')


def _cite_link(cite: dict[str, Any], short: bool = False) -> str:
    if cite.get("url"):
        href = cite["url"]
    else:
        href = "/show?" + urlencode({"source": cite["source"],
                                     "span": f"{cite['start']}:{cite['end']}"}) + "#cited"
    label = cite.get("publisher") or cite["source"] if short else (
        cite.get("title") or cite["source"])
    link = f'<a href="{escape(href, quote=True)}">{escape(label)}</a>'
    if short:
        return link
    facts = [escape(v) for v in (cite.get("publisher"), cite.get("date"), cite.get("author"))
             if v]
    return link + (" — " + ", ".join(facts) if facts else "")


def _votes(question: str, passage: dict[str, Any] | None, as_of: str, prompt: str) -> str:
    data = f' data-question="{escape(question, quote=True)}"'
    label = "this answer"
    if passage is not None:
        data += (f' data-rank="{passage["rank"]}"'
                 f' data-source="{escape(passage["citation"]["source"], quote=True)}"')
        label = f"finding {passage['rank']}"
    if as_of:
        data += f' data-as-of="{escape(as_of, quote=True)}"'
    return (f'<div class="votes"{data}><span>{prompt}</span>'
            f'<button type="button" class="vote" data-vote="up" aria-pressed="false" '
            f'aria-label="Yes, {label} is right">Yes</button>'
            f'<button type="button" class="vote" data-vote="down" aria-pressed="false" '
            f'aria-label="No, {label} is wrong">No</button>'
            '<span class="thanks" aria-live="polite"></span></div>')
