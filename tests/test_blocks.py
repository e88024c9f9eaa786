import json
import re

import pytest

from qa.blocks import (
    MAX_BLOCKS,
    MAX_TEXT,
    SHARE_ACTION,
    answer_message,
    citation_text,
    escape,
    fit,
    notice,
)
from qa.results import Answer, Citation, Highlight, Passage


def citation(source="003_a6f98cea0e1f5c95", title="Pentagon Threatens Retaliation", date="2020-03-12",
             publisher="VOA", start=100, end=None, text="", inferred=False, url=None):
    return Citation(source=source, path=f"/seeds/{source}.txt", url=url, title=title, date=date,
                    author=None, publisher=publisher, start=start,
                    end=end if end is not None else start + len(text), date_inferred=inferred)


def passage(rank, text, sentence=None, **meta):
    c = citation(text=text, **meta)
    highlight = None
    if sentence is not None:
        a = text.index(sentence)
        highlight = Highlight(sentence, c.start + a, c.start + a + len(sentence))
    return Passage(rank=rank, score=0.5, text=text, highlight=highlight, citation=c)


TEXT = ("Esper declined to say more. Two American and one British soldier were killed when "
        "18 rockets landed at the base on Wednesday. Officials blamed Kataib Hezbollah.")
SENTENCE = ("Two American and one British soldier were killed when 18 rockets landed at the "
            "base on Wednesday.")


def all_texts(blocks):
    for block in blocks:
        if "text" in block:
            yield block["text"]["text"]
        for element in block.get("elements", []):
            if element.get("type") == "mrkdwn":
                yield element["text"]


def test_findings_mark_the_sentence_and_list_sources():
    answer = Answer("q", True, [passage(1, TEXT, SENTENCE),
                                passage(2, "Another passage.", "Another passage.",
                                        source="001_x", title=None, publisher=None, date=None)])
    message = answer_message("How many rockets?", answer)
    sections = [b["text"]["text"] for b in message.blocks if b["type"] == "section"]
    assert sections[0].startswith("*[1]* Esper declined to say more. *Two American")
    assert f"*{SENTENCE}*" in sections[0]
    sources = message.blocks[-1]["elements"][0]["text"]
    assert sources.splitlines()[0].startswith("[1] Pentagon Threatens Retaliation — VOA, 2020-03-12")
    assert "003_a6f98cea0e1f5c95" in sources
    # unknown metadata is said to be unknown, never invented
    assert sources.splitlines()[1].startswith("[2] 001_x — unknown outlet, undated")
    assert SENTENCE in message.text and "How many rockets?" in message.text


def test_top_limits_the_findings():
    answer = Answer("q", True, [passage(i, f"Passage {i}.", f"Passage {i}.") for i in range(1, 6)])
    blocks = answer_message("q", answer, top=3).blocks
    assert sum(b["type"] == "section" for b in blocks) == 3
    assert "[4]" not in json.dumps(blocks)


def test_no_confident_answer_is_plain_and_offers_the_closest_source():
    answer = Answer("q", False, [passage(1, TEXT, SENTENCE), passage(2, "Other.", "Other.")])
    message = answer_message("What is the capital of Mars?", answer)
    first = [b for b in message.blocks if b["type"] == "section"][0]["text"]["text"]
    assert first.startswith("*No confident answer in the archive.*")
    assert "closest source" in first
    assert "[2]" not in json.dumps(message.blocks)  # only the closest one is offered
    assert message.text.startswith("No confident answer")
    assert "Pentagon Threatens Retaliation" in message.text


def test_a_refusal_says_why_in_blocks_and_fallback_text():
    answer = Answer("q", False, [passage(1, TEXT, SENTENCE)],
                    reason="the archive never mentions Merkel")
    message = answer_message("What did Merkel say?", answer)
    first = [b for b in message.blocks if b["type"] == "section"][0]["text"]["text"]
    assert first.startswith("*No confident answer in the archive:* the archive never mentions "
                            "Merkel.")
    assert "the archive never mentions Merkel" in message.text


def test_no_confident_answer_with_nothing_close():
    message = answer_message("q", Answer("q", False, []))
    assert "Nothing in it comes close" in json.dumps(message.blocks)
    assert message.text.startswith("No confident answer")


def test_slack_control_characters_are_escaped():
    text = "AT&T said <b>profits</b> rose. Shares > 5%."
    answer = Answer("q", True, [passage(1, text, "AT&T said <b>profits</b> rose.",
                                        title="Q&A <live>")])
    message = answer_message("<!channel> & you?", answer)
    dumped = json.dumps(message.payload())
    assert "<b>" not in dumped and "<!channel>" not in dumped and "<live>" not in dumped
    assert "AT&amp;T said &lt;b&gt;profits&lt;/b&gt; rose." in dumped
    assert "Q&amp;A &lt;live&gt;" in dumped


def test_a_sentence_with_an_asterisk_is_marked_without_breaking_bold():
    text = "Prices rose 5* this year. Nothing else."
    message = answer_message("q", Answer("q", True, [passage(1, text, "Prices rose 5* this year.")]))
    assert "»Prices rose 5* this year.«" in json.dumps(message.blocks, ensure_ascii=False)


def test_long_passages_stay_within_slack_limits_and_say_so():
    huge = ("word " * 3000).strip() + "."
    answer = Answer("q" * 2000, True, [passage(1, huge, huge), passage(2, huge)])
    message = answer_message("q" * 2000, answer)
    for text in all_texts(message.blocks):
        assert len(text) <= MAX_TEXT
    sections = [b["text"]["text"] for b in message.blocks if b["type"] == "section"]
    assert all(s.endswith("…*") or s.endswith("…") for s in sections)
    assert len(message.text) <= 3000 and message.text.endswith("…")


def test_many_findings_are_cut_at_fifty_blocks_with_a_note():
    passages = [passage(i, f"Passage {i}.", f"Passage {i}.") for i in range(1, 101)]
    message = answer_message("q", Answer("q", True, passages, warnings=["note"]), top=100,
                             share_value="{}")
    assert len(message.blocks) == MAX_BLOCKS
    dumped = json.dumps(message.blocks, ensure_ascii=False)
    assert "more findings not shown" in dumped
    assert message.blocks[-1]["type"] == "actions"  # the button survives the cut
    for text in all_texts(message.blocks):
        assert len(text) <= MAX_TEXT


def test_share_button_and_shared_by():
    answer = Answer("q", True, [passage(1, TEXT, SENTENCE)])
    private = answer_message("q", answer, share_value='{"q": "q"}')
    (button,) = private.blocks[-1]["elements"]
    assert button["action_id"] == SHARE_ACTION and button["value"] == '{"q": "q"}'
    public = answer_message("q", answer, shared_by="U123")
    assert "Shared by <@U123>" in json.dumps(public.blocks)
    assert not any(b["type"] == "actions" for b in public.blocks)
    with pytest.raises(ValueError):
        answer_message("q", answer, share_value="x" * 2001)


def test_also_reported_by_other_outlets():
    p = passage(1, TEXT, SENTENCE)
    p.also.append(citation(source="009_y", title="Rockets hit Taji", publisher="Reuters"))
    sources = answer_message("q", Answer("q", True, [p])).blocks[-1]["elements"][0]["text"]
    assert "also reported by Rockets hit Taji — Reuters, 2020-03-12" in sources


def test_inferred_dates_are_marked():
    c = citation(inferred=True)
    assert citation_text(1, c) == "[1] Pentagon Threatens Retaliation — VOA, 2020-03-12 (inferred)"


def test_fit_never_cuts_an_escape():
    text = escape("a" * 2996 + "&&&&")
    cut = fit(text)
    assert len(cut) <= MAX_TEXT and cut.endswith("…")
    assert re.fullmatch(r"a*(&amp;)*…", cut)


def test_notice_is_one_section():
    message = notice("the question is empty")
    assert message.text == "the question is empty"
    assert message.blocks == [{"type": "section",
                               "text": {"type": "mrkdwn", "text": "the question is empty"}}]


def test_a_citation_with_a_url_links_its_title():
    cite = citation(title="Ferry <Returns>", url="https://example.com/ferry?a=1&b=2")
    p = Passage(1, 1.0, "The ferry returned.", None, cite)
    sources = answer_message("q", Answer("q", True, [p])).blocks[-1]["elements"][0]["text"]
    assert "<https://example.com/ferry?a=1&b=2|Ferry &lt;Returns&gt;>" in sources
    odd = citation(url="javascript:alert(1)")
    text = answer_message("q", Answer("q", True, [Passage(1, 1.0, "x", None, odd)])).blocks[-1]
    assert "javascript" not in text["elements"][0]["text"]
