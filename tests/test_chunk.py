from conftest import word_count

from index.ingest.chunk import chunk_segments, split_sentences
from index.ingest.clean import Segment


def test_split_sentences_keeps_abbreviations_together():
    text = 'Gen. Mark Milley spoke on Dec. 29 in the U.S. capital. "We know," he said. Then he left!'
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == [
        "Gen. Mark Milley spoke on Dec. 29 in the U.S. capital.",
        '"We know," he said.',
        "Then he left!",
    ]


def test_split_sentences_respects_bounds_and_trims():
    text = "xx  First one. Second one.  yy"
    spans = split_sentences(text, 2, 27)
    assert [text[s:e] for s, e in spans] == ["First one.", "Second one."]


def _paragraphs(n_paragraphs: int, sentences: int) -> tuple[str, list[Segment]]:
    text, segments = "", []
    for p in range(n_paragraphs):
        body = " ".join(f"Paragraph {p} sentence {s} has some words in it." for s in range(sentences))
        segments.append(Segment(len(text), len(text) + len(body), "text"))
        text += body + "\n\n"
    return text, segments


def test_chunks_fit_the_budget_and_cover_every_sentence():
    text, segments = _paragraphs(6, 5)
    chunks = chunk_segments(text, segments, word_count, max_tokens=40)
    assert all(sum(word_count([text[s:e] for s, e in c.sentences])) <= 40 for c in chunks)
    covered = {span for c in chunks for span in c.sentences}
    expected = {span for seg in segments for span in split_sentences(text, seg.start, seg.end)}
    assert covered == expected
    for c in chunks:
        assert c.start == c.sentences[0][0] and c.end == c.sentences[-1][1]
        assert text[c.start:c.end] == text[c.start:c.end].strip()


def test_chunks_overlap_within_a_paragraph():
    text, segments = _paragraphs(1, 12)
    chunks = chunk_segments(text, segments, word_count, max_tokens=40, overlap=1)
    assert len(chunks) > 2
    for a, b in zip(chunks, chunks[1:]):
        assert a.sentences[-1] == b.sentences[0]


def test_chunks_never_span_dropped_text():
    text = "First kept sentence here.\nRELATED STORIES SIDEBAR\nSecond kept sentence here."
    segments = [Segment(0, 25, "text"), Segment(50, len(text), "text")]
    chunks = chunk_segments(text, segments, word_count, max_tokens=100)
    assert len(chunks) == 2
    assert all("SIDEBAR" not in text[c.start:c.end] for c in chunks)


def test_captions_are_chunked_apart_from_story():
    text = "Story sentence one.\nA caption of a photo.\nStory sentence two."
    segments = [Segment(0, 19, "text"), Segment(20, 41, "caption"), Segment(42, len(text), "text")]
    chunks = chunk_segments(text, segments, word_count, max_tokens=100)
    assert [c.kind for c in chunks] == ["text", "caption", "text"]


def test_a_sentence_longer_than_the_budget_is_cut_at_whitespace():
    words = " ".join(f"w{i}" for i in range(300)) + "."
    chunks = chunk_segments(words, [Segment(0, len(words), "text")], word_count, max_tokens=50)
    assert len(chunks) >= 6
    assert all(word_count([words[c.start:c.end]])[0] <= 50 for c in chunks)
    assert " ".join(words[c.start:c.end] for c in chunks) == words


def test_a_line_without_sentence_breaks_is_counted_a_window_at_a_time():
    """A 500,000-character "sentence" (issue 34: a tokenizer call keeps an encoding of all it
    is given, and one such line cost gigabytes): no text the counter sees is longer than
    LONG_SENTENCE, no call holds more than 20 of them, and the passages still cover the
    line word for word within the budget."""
    from index.ingest.chunk import LONG_SENTENCE

    words = " ".join(f"lorem{i % 97}" for i in range(70_000))
    calls = []

    def counting(texts):
        calls.append([len(t) for t in texts])
        return word_count(texts)

    chunks = chunk_segments(words, [Segment(0, len(words), "text")], counting, max_tokens=200)
    assert len(words) > 500_000
    assert max(max(call) for call in calls) <= LONG_SENTENCE
    assert max(sum(call) for call in calls) <= 20 * LONG_SENTENCE
    assert all(word_count([words[c.start:c.end]])[0] <= 200 for c in chunks)
    assert " ".join(words[c.start:c.end] for c in chunks) == words
