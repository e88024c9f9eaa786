"""Property tests: cleaning + chunking keep valid offsets, cover the kept text and respect the
token limit of the real tokenizer; question cleaning and the CLI's ask path take any input."""

import json
import os
import unicodedata

import pytest
from conftest import FakeCli, fake_index
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from index.errors import QuestionError
from index.ingest.chunk import MAX_TOKENS, chunk_segments
from index.ingest.clean import Segment, find_body
from index.ingest.meta import extract_metadata
from index.models.embedder import count_tokens
from qa.engine import clean_question

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 60)), deadline=None,
                derandomize=bool(os.environ.get("CI")),
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

SENTENCES = [
    "The minister said the talks would resume next week in the capital.",
    "Gen. Mark Milley spoke on Dec. 29 in the U.S. capital.",
    '"We know," he said.',
    "Officials confirmed 18 rockets hit the base!",
    "Was it the Quds Force?",
    "Ёлка на площади — 12 м, сказал мэр.",
    "東京で地震が発生しました。",
    "Related Stories",
    "By Jane Doe",
    "Supercalifragilisticexpialidocious" * 12,  # one word longer than the budget
    "1234567890" * 40,
]
PIECES = st.one_of(
    st.sampled_from(SENTENCES),
    st.sampled_from(["\n", "\n\n", "\r\n", " ", "\t", "\u2028", "\x0c", ". ", "! "]),
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
)
TEXTS = st.lists(PIECES, max_size=40).map("".join)
SENTENCE = st.one_of(st.sampled_from(SENTENCES), st.text(min_size=1, max_size=80).map(
    lambda t: t.strip().capitalize() + "."))
# Article-like text: a title, then paragraphs of sentences, with junk lines in between.
ARTICLES = st.builds(
    lambda title, paragraphs: title + "\n\n" + "\n\n".join(paragraphs),
    st.sampled_from(["Harbour Reopens After Storm", "Ёлка", ""]),
    st.lists(
        st.one_of(st.lists(SENTENCE, min_size=1, max_size=12).map(" ".join), PIECES),
        min_size=1, max_size=12,
    ),
)


def _check_chunks(text, segments, max_tokens):
    chunks = chunk_segments(text, segments, count_tokens, max_tokens=max_tokens)
    event(f"passages: {min(len(chunks), 3)}{'+' if len(chunks) >= 3 else ''}")
    covered = set()
    for c in chunks:
        assert 0 <= c.start < c.end <= len(text)
        assert c.sentences and c.start == c.sentences[0][0] and c.end == c.sentences[-1][1]
        for (s, e), nxt in zip(c.sentences, c.sentences[1:] + ((c.end, c.end),)):
            assert c.start <= s < e <= nxt[0] or (s, e) == nxt
            assert any(g.start <= s and e <= g.end for g in segments), "span outside kept text"
            assert not text[s].isspace() and not text[e - 1].isspace()
            covered.update(range(s, e))
        assert count_tokens([text[c.start:c.end]])[0] <= max_tokens, text[c.start:c.end]
    kept = {i for g in segments for i in range(g.start, g.end) if not text[i].isspace()}
    assert kept <= covered, "kept text missing from every passage"


@FUZZ
@given(ARTICLES | TEXTS)
def test_cleaned_chunks_are_valid_cover_the_kept_text_and_fit_the_model(text):
    segments = find_body(text, extract_metadata(text).title)
    _check_chunks(text, segments, MAX_TOKENS)


@st.composite
def text_and_segments(draw):
    text = draw(ARTICLES | TEXTS)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=8))) | {0, len(text)})
    kinds = st.sampled_from(["text", "text", "caption"])
    segments = [Segment(a, b, draw(kinds)) for a, b in zip(cuts, cuts[1:])
                if b > a and draw(st.booleans())]
    return text, segments


@FUZZ
@given(text_and_segments(), st.sampled_from([24, 64, MAX_TOKENS]))
def test_chunking_any_segments_is_valid_and_fits_the_budget(case, max_tokens):
    text, segments = case
    _check_chunks(text, segments, max_tokens)


def _expected(question):
    """Question cleaning, restated independently: controls → space, bidi overrides dropped."""
    out = []
    for ch in question:
        if unicodedata.category(ch) in ("Cc", "Cs"):
            out.append(" ")
        elif not ("\u202a" <= ch <= "\u202e" or "\u2066" <= ch <= "\u2069"):
            out.append(ch)
    return " ".join("".join(out).split())


@FUZZ
@given(st.text(max_size=3000) | st.text(alphabet=st.characters(codec="utf-8"), max_size=50)
       | st.lists(st.sampled_from(["unbelievable", "Supercalifragilistic", "东京", "x\x00"]),
                  min_size=60, max_size=300).map(" ".join))
def test_clean_question_accepts_anything(question):
    full = _expected(question)
    try:
        text, warnings = clean_question(question)
    except QuestionError as error:
        assert "question is empty" in str(error) and full == ""
        return
    assert text and text == text.strip() and "  " not in text
    assert not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)
    text.encode("utf-8")
    assert count_tokens([text])[0] <= 256
    if warnings:
        assert full.startswith(text) and count_tokens([full])[0] > 256
    else:
        assert text == full


@pytest.fixture(scope="module")
def fake_cli(tmp_path_factory):
    return FakeCli(*fake_index(tmp_path_factory.mktemp("fuzz")))


@FUZZ
@given(st.text(max_size=400) | st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_cli_ask_handles_any_question(fake_cli, question):
    assume(question != "-")
    result = fake_cli(["ask", "--json", "-k", "2", "--", question])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    if result.exit_code == 1:
        assert result.stderr.strip().startswith("error: the question is empty")
        assert result.stdout == ""
        return
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["question"] == clean_question(question)[0]
    # A refused answer holds no passages (JSON contract without --show-weak).
    assert len(answer["passages"]) <= 2
    if not answer["answered"]:
        assert answer["passages"] == []


@FUZZ
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=80),
                max_size=6))
def test_cli_ask_stdin_handles_any_lines(fake_cli, lines):
    stdin = "\n".join(line.replace("\n", " ").replace("\r", " ") for line in lines) + "\n"
    result = fake_cli(["ask", "-", "--json", "-k", "1"], input=stdin)
    assert result.exit_code == 0, result.output
    expected = []
    for line in stdin.split("\n")[:-1]:  # the CLI reads lines ending in \n, as a file does
        try:
            expected.append(clean_question(line)[0])
        except QuestionError:
            pass
    assert [json.loads(o)["question"] for o in result.stdout.splitlines()] == expected
