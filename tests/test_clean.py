import time
from pathlib import Path

import pytest
from conftest import DATA, SEEDS
from hypothesis import given, settings
from hypothesis import strategies as st

from index.ingest.clean import Segment, find_body
from index.ingest.meta import extract_metadata

SEED_FILES = sorted(SEEDS.glob("*.txt"))
DATA_FILES = sorted(DATA.glob("*.txt"))


def read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")  # keep "\r\n": offsets index the file as is


def seed(stem: str) -> str:
    return read(SEEDS / f"{stem}.txt")


def kept(text: str, segments: list[Segment], kind: str | None = None) -> list[str]:
    return [text[s.start : s.end] for s in segments if kind is None or s.kind == kind]


def assert_valid(text: str, segments: list[Segment]) -> None:
    previous_end = 0
    for s in segments:
        assert 0 <= s.start < s.end <= len(text)
        assert text[s.start : s.end] == text[s.start : s.end].strip()
        assert s.start >= previous_end, "segments must be sorted and non-overlapping"
        assert s.kind in {"text", "caption", "byline"}
        previous_end = s.end


@pytest.mark.parametrize("path", SEED_FILES + DATA_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("with_title", [False, True])
def test_segments_are_valid_offsets(path: Path, with_title: bool) -> None:
    text = read(path)
    title = extract_metadata(text).title if with_title else None
    assert_valid(text, find_body(text, title))


SEED_FURNITURE = [
    "Showing posts with label",
    "Accessibility links",
    "Labari da Dumi-Duminsa",
    "Related Stories",
    "Special Section",
    "US Slaps Sanctions on Cuba",
    "Robots Stole Blue Collar Jobs",
    "Iranian-Backed Protesters Withdraw",
    "Iraqi army soldiers are deployed in front of the U.S. embassy",
    "Mourners carry the coffins",
    "Carla Babb profile image",
    "Sign up for NTD Daily",
    "What you need to know, summarized in one email.",
    "By registering for the newsletter",
    "From The Epoch Times",
    "Leave a Reply",
    "Your email address will not be published",
    "Warning: Use of undefined constant",
    "27 − = 21",
    "By Carla Babb",
    "Updated January 02, 2020",
    "Thursday, 2 January 2020",
    "January 2, 2020US News",
]


@pytest.mark.parametrize("with_title", [False, True])
def test_seed_furniture_is_dropped(with_title: bool) -> None:
    for path in SEED_FILES:
        text = read(path)
        title = extract_metadata(text).title if with_title else None
        story = [s for s in find_body(text, title) if s.kind != "byline"]
        body = "\n".join(kept(text, story))
        for furniture in SEED_FURNITURE:
            assert furniture not in body, (path.name, furniture)


# Per seed: the first and last story lines, the headings between them (dropped) and the
# captions between them (kind "caption"); every other line in that range is story text.
SEED_STORY = {
    "000_3462dbd106702807": ("The predictable result", "“Thirty-one rockets", [], []),
    "001_ff616514b17d0e93": (
        "PENTAGON - The U.S.",
        "Despite the conflict",
        [],
        ["Chairman of the Joint Chiefs of Staff Gen.", "In this photo released"],
    ),
    "002_a3394f1d188f29c5": (
        "Iran might be planning",
        "“Let me speak directly",
        ["The headquarters of Kataeb Hezbollah", "NTD Photo"],
        ["The headquarters of Kataeb Hezbollah,", "U.S. Army Paratroopers", "Attackers and"],
    ),
    "003_a6f98cea0e1f5c95": ("Washington, D.C.", "That in turn led", [], []),
    "004_c31d4bc7025f9123": (
        "U.S. President Donald Trump has warned",
        '"It is my belief',
        ["Iranian condemnation"],
        ["FILE - "],
    ),
}


@pytest.mark.parametrize("stem", sorted(SEED_STORY))
def test_every_seed_story_line_is_kept_as_text(stem: str) -> None:
    first, last, headings, captions = SEED_STORY[stem]
    text = seed(stem)
    segments = find_body(text, extract_metadata(text).title)
    kinds = {text[s.start : s.end]: s.kind for s in segments}
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    end = next(i for i, line in enumerate(lines) if line.startswith(last))
    for line in lines[start : end + 1]:
        if line in headings:
            assert line not in kinds, line
        elif line.startswith(tuple(captions)):
            assert kinds.get(line) == "caption", line
        else:
            assert kinds.get(line) == "text", line


@pytest.mark.parametrize(
    "stem, sentence",
    [
        (
            "003_a6f98cea0e1f5c95",
            "Two American and one British soldier were killed and 14 other troops wounded when "
            "18 rockets landed at the base on Wednesday.",
        ),
        # The file's last line, without a trailing newline.
        ("000_3462dbd106702807", "“Thirty-one rockets aren’t designed as a warning shot"),
        ("002_a3394f1d188f29c5", "The Associated Press and Reuters contributed to this report."),
        ("003_a6f98cea0e1f5c95", "pro-Iranians in Iraq of which Kataib Hezbollah is a member."),
        ("004_c31d4bc7025f9123", "bringing the two rivals to the brink of full-fledged war."),
    ],
)
def test_key_sentences_survive_as_text(stem: str, sentence: str) -> None:
    text = seed(stem)
    assert any(sentence in line for line in kept(text, find_body(text), "text"))


def test_duplicated_file_caption_is_kept_once_as_caption() -> None:
    text = seed("004_c31d4bc7025f9123")
    segments = find_body(text)
    prefix = "FILE - This file photo taken on Jan. 3, 2020"
    matches = [s for s in segments if text[s.start : s.end].startswith(prefix)]
    assert len(matches) == 1
    assert matches[0].kind == "caption"


def test_header_byline_and_its_date_are_kept_as_byline() -> None:
    bylines = {
        path.stem: kept(read(path), find_body(read(path)), "byline") for path in SEED_FILES
    }
    assert bylines["001_ff616514b17d0e93"] == ["By Carla Babb", "Updated January 02, 2020 07:53 PM"]
    assert bylines["002_a3394f1d188f29c5"] == ["By Zachary Stieber", "January 2, 2020US News"]
    # A date stamp with no byline is metadata only; sidebar lines are never bylines.
    assert bylines["000_3462dbd106702807"] == []
    assert all("Babb profile" not in line for lines in bylines.values() for line in lines)


def test_present_tense_caption_below_byline() -> None:
    text = seed("001_ff616514b17d0e93")
    captions = kept(text, find_body(text), "caption")
    assert any(
        c.startswith("Secretary of Defense Mark Esper delivers a statement") for c in captions
    )


def test_captions_credited_photographer_first_are_captions() -> None:
    story = [
        "Crews worked through the night to clear the harbour after the storm, officials said.",
        "A Gazette/USA TODAY analysis of ten years of storms found that the harbour floods "
        "twice as often as it did in 2010.",
    ]
    captions = [
        "Smoke rises over the port of Riverton on Saturday, May 4, as crews work to clear the "
        "harbour after the worst storm to hit the coast in a decade. Jane Roe/AP",
        "Boats sit on the quay after the storm passed through the bay on Friday night, "
        "leaving the harbour closed to traffic, the coast guard said. John Doe/Bloomberg/Getty "
        "Images",
        "Ana Ruiz/Reuters People gather on the quay on Sunday. Lee Park/AFP/Getty Images Crews "
        "clear the harbour mouth.",
    ]
    short = "Smoke over the port. Jane Roe/AP"  # not prose: left out, as before
    lines = ["Storm Clears Harbour", "By Ana Ruiz", "May 5, 2024",
             story[0], captions[0], short, captions[1], story[1], captions[2]]
    text = "\n\n".join(lines) + "\n"
    segments = find_body(text, "Storm Clears Harbour")
    assert_valid(text, segments)
    assert kept(text, segments, "caption") == captions
    assert kept(text, segments, "text") == story
    assert all(short not in line for line in kept(text, segments))


def test_title_line_is_not_body() -> None:
    for path in SEED_FILES + DATA_FILES:
        text = read(path)
        title = extract_metadata(text).title
        assert title is not None
        assert title not in kept(text, find_body(text, title)), path.name


# Invented pages whose furniture has other shapes than the seeds'.
DATA_CASES = {
    "harbor_share_ads": (
        [
            "Skip to content",
            "Share this",
            "Advertisement",
            "Story continues below",
            "Read more:",
            "Related Articles",
            "Council members asked for a new environmental study",
            "Coastline Daily Staff",
            "All rights reserved",
            "Maria Okafor",
            "Published:",
        ],
        [
            "The harbor ferry carried its first passengers in two years on Friday",
            "Ridership fell sharply during the pandemic",
            # Truncated mid-sentence, no final punctuation: still prose.
            "The new boats were built at a shipyard upriver and each one carries up to two "
            "hundred riders along with forty bicycles and a small snack counter for the longer "
            "weekend runs",
            "Fares will stay at two dollars until the end of the year",
        ],
        ["Passengers board the Harbor Queen at the Pier 4 terminal on Friday morning."],
    ),
    "cookie_sidebar": (
        [
            "We use cookies",
            "Accept",
            "Reporting by",
            "originally published",
            "Most Read",
            "Officials warned that the spring melt",
            "Growers expect the strongest season",
        ],
        ["FRESNO, California - Growers in the valley", "State officials said reservoirs"],
        [],
    ),
    "comments_promo": (
        [
            "Sign up for our Morning Brief",
            "Get the top local stories",
            "Posted in",
            "Comments",
            "Finally some good news",
            "Sunday story hour",
            "Reply",
        ],
        [
            "The central library will stay open until nine",
            # The story goes on after the newsletter promo.
            "The board said the change was paid for by a state grant",
            "Branch libraries will keep their current hours for now",
        ],
        [],
    ),
    "wire_caption": (
        [
            "Home »",
            "By ASSOCIATED PRESS",
            "Updated 9:42 PM",
            "Copyright",
            "Trending",
            "Typhoon season starts early",
            "Coast guard rescues five fishermen",
        ],
        ["TAIPEI, Taiwan (AP) - Hundreds of fishing boats", "Schools in three cities will close"],
        [
            "A fishing boat is seen moored at the harbor in Keelung",
            "In this Jan. 12, 2021 photo, workers tie down boats",
            "FILE – A coast guard vessel patrols near Keelung",
        ],
    ),
    "wire_reuters": (
        [
            "Skip to main content",
            "World | Business",
            "Advertisement",
            "March 14, 2023 4:12 PM GMT",
            "Read more:",
            "Reporting by",
            "Our Standards",
            "Share this article",
            "Follow us on Twitter",
            "© 2023 Reuters",
            "Subscribe to our newsletter",
            "Most Read",
            "Stocks fall as bond yields climb",
            "Messi scores twice",
        ],
        [
            "SANTIAGO, March 14 (Reuters) - Chile's capital will ration tap water",
            "Households in 30 districts will have their supply cut",
            '"We are facing an unprecedented situation," governor Claudio Orrego told reporters',
        ],
        [],
    ),
    "crlf_warning": (
        ["Thursday, 4 March 2021"],
        ["The weather service issued a gale warning", "Winds were expected to reach fifty knots"],
        [],
    ),
    "squad_style": (
        [],
        ["Lighthouse keeping was the work", "From the late nineteenth century", "Automation in"],
        [],
    ),
}


@pytest.mark.parametrize("stem", sorted(DATA_CASES))
def test_rules_generalise_to_other_pages(stem: str) -> None:
    dropped, texts, captions = DATA_CASES[stem]
    text = read(DATA / f"{stem}.txt")
    segments = find_body(text, extract_metadata(text).title)
    body = "\n".join(kept(text, [s for s in segments if s.kind != "byline"]))
    for furniture in dropped:
        assert furniture not in body, furniture
    for sentence in texts:
        assert any(line.startswith(sentence) for line in kept(text, segments, "text")), sentence
    caption_lines = kept(text, segments, "caption")
    for caption in captions:
        assert sum(line.startswith(caption) for line in caption_lines) == 1, caption
    assert len(caption_lines) == len(captions)
    # Only a header with a byline becomes a byline passage (with its date stamp).
    byline = kept(text, segments, "byline")
    assert not byline or (len(byline) <= 2 and any(line.startswith("By ") for line in byline))


def test_byline_passage_of_an_invented_page() -> None:
    text = read(DATA / "harbor_share_ads.txt")
    assert kept(text, find_body(text), "byline") == [
        "By Maria Okafor | Staff Writer",
        "Published: March 5, 2021 at 10:14 a.m. ET",
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", []),
        ("   \n\t \r\n  ", []),
        ("One line and no newline at all.", ["One line and no newline at all."]),
        (
            "Title Here\r\n\r\nFirst story line ends here.\r\nSecond one too.\r\n",
            ["First story line ends here.", "Second one too."],
        ),
        (
            "\u00a0 Padded with odd spaces. \u00a0\u2028Next line here.",
            ["Padded with odd spaces.", "Next line here."],
        ),
    ],
)
def test_edge_inputs(text: str, expected: list[str]) -> None:
    segments = find_body(text)
    assert_valid(text, segments)
    assert kept(text, segments) == expected


def test_very_long_lines() -> None:
    prose = "the ministry said on Monday that talks would resume " * 10_000
    blob = "x" * 100_000
    text = f"Short Heading\n{prose}\n\n{blob}\n"
    segments = find_body(text)
    assert_valid(text, segments)
    assert kept(text, segments) == [prose.strip()]


@pytest.mark.parametrize(
    "line",
    [
        "Warning: " + " in /x" * 20_000,
        "(" * 100_000,
        "1/" * 50_000,
        "Jan. 1, " * 12_000,
        "In this " * 12_000,
        "a " * 50_000 + "(photo " * 5_000,
        " \t" * 50_000 + "x",
        "By " + "Aa " * 30_000,
        "From " + "The " * 30_000,
    ],
    ids=range(9),
)
def test_no_catastrophic_backtracking(line: str) -> None:
    text = f"Heading\n{line}\n{line}x\nA closing sentence is here."
    began = time.perf_counter()
    assert_valid(text, find_body(text))
    extract_metadata(text)
    assert time.perf_counter() - began < 2.0


def test_large_input_runs_in_linear_time() -> None:
    page = "\n".join(read(p) for p in SEED_FILES)
    # Without end markers every line is scanned: the worst case for speed.
    for marker in ("Leave a Reply", "contributed to", "Related Stories", "From The Epoch"):
        page = page.replace(marker, "x")
    copies = 10_000_000 // len(page)
    began = time.perf_counter()
    segments = find_body(page * copies)
    assert time.perf_counter() - began < 15.0
    assert len(segments) >= 0.9 * copies * len(find_body(page))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(
                [
                    "Related Stories",
                    "Share this:",
                    "By Jane Doe",
                    "FILE - A man walks, Jan. 1, 2020.",
                    "The minister said the talks would resume next week in the capital.",
                    "\r\n",
                    "\n\n",
                    "  ",
                    "\u2028",
                    "27 − = 21",
                    "Advertisement",
                    "(AP Photo)",
                ]
            ),
            st.text(max_size=40),
        ),
        max_size=30,
    )
)
def test_segments_valid_for_any_text(parts: list[str]) -> None:
    text = "\n".join(parts)
    assert_valid(text, find_body(text))
    assert_valid(text, find_body(text, extract_metadata(text).title))


@pytest.mark.parametrize(
    "text, expected",
    [
        # A sentence broken at a scraped subscript is one paragraph.
        (
            "Oxygen is present in the air as carbon dioxide (CO\n2). The crust is mostly oxides.",
            ["Oxygen is present in the air as carbon dioxide (CO\n2). The crust is mostly oxides."],
        ),
        (
            "The minister said the talks, which began in the spring and stalled twice, would\n"
            "resume next week in the capital.",
            [
                "The minister said the talks, which began in the spring and stalled twice, would\n"
                "resume next week in the capital."
            ],
        ),
        # A heading and its lowercase dek stay apart, and are both dropped.
        ("Iran's Militia Proxy Explained\na look at the history of the group", []),
        (
            "The library will open on Sundays from next month, the board said.\n"
            "Posted in: Local News\n12 Comments\nGreat article, thanks for writing it up so well.",
            ["The library will open on Sundays from next month, the board said."],
        ),
    ],
)
def test_lines_broken_mid_sentence(text: str, expected: list[str]) -> None:
    segments = find_body(text)
    assert_valid(text, segments)
    assert kept(text, segments) == expected


# Boxes news sites put inside stories (written after the kinds found in real news pages).
NEWS_FURNITURE = [
    "Need a break? Play the Daily Gazette Crossword Puzzle.",
    "What's everyone talking about? Sign up for our trending newsletter to get the latest "
    "news of the day.",
    "Sign up for the Gazette’s Night Sky science newsletter. Explore the universe with news on "
    "discoveries and more.",
    "Have feedback? Tell us what you think of this story.",
    "We occasionally recommend interesting products and services. If you make a purchase by "
    "clicking one of the links, we may earn an affiliate fee.",
    "Contributing: The Associated Press",
    "(This story was updated to add new information.)",
    "Contact reporter Ana Ruiz at (555) 123-4567, aruiz@gazette.example or on X @anaruiz.",
    "Lee Park is a breaking news reporter for the Gazette. Reach him at lpark@gazette.example "
    "and follow him on X @leepark.",
    "Thank you for supporting our journalism. You can subscribe to our print edition here.",
    "Follow Dana Fox on X and Threads: @danafox.",
    # Kinds found in news-a's pages after the first ones (networks' promos, editors' notes,
    # disclosures, reporters' addresses), written with made-up names.
    "Prep for the vote: See who is running for mayor and where they stand in our Voter Guide",
    "Sign-up for Your Ballot: Text with the Gazette elections team.",
    "Holiday deals: Shop this season’s top products curated by our editors.",
    "GAZETTE SPORTS CENTRAL: The latest scores, schedules, odds, stats and more.",
    "All things Hawks: Latest Riverton Hawks news, schedule, roster, stats, injury updates and "
    "more.",
    "Editor’s Note: Jane Roe is a professor of history at Riverton College. The views expressed "
    "in this commentary are her own.",
    "Editor's Note: This page is a summary of news on the storm for Tuesday, Jan. 30. For the "
    "latest news, view our live updates file for Wednesday.",
    "Subscribe to The Weekly Escape your echo chamber. Get the facts behind the news, plus "
    "analysis from many perspectives. SUBSCRIBE & SAVE Sign up for The Weekly's Free "
    "Newsletters From our morning briefing to a Good News Newsletter, get the best of The Weekly "
    "delivered to your inbox.",
    "Gazette Media may earn revenue from sports betting operators for audience referrals to "
    "betting services.",
    "Recommendations are chosen by our editors. Purchases you make through our links may earn "
    "us a commission.",
    "To empower the journalism behind the Gazette, please consider a subscription.",
    "Hit play on the player below to hear the podcast and follow along with the transcript.",
    "Our fact-check work is supported in part by a grant from the Example Foundation.",
    "The Gazette's river reporting project is made possible through the generous support of the "
    "Example Trust.",
    "Ana Ruiz is the Gazette's county reporter. She can be reached at aruiz@gazette.example.",
    "Check out my podcast “Gadgets Today” on Apple, Spotify, or your favorite podcast player.",
    "The Gazette app gets you to the heart of the news. Download for award-winning coverage, "
    "crosswords and more.",
    "For more on the mayor's speech, click here.",
    "For more game details and specifics, read here.",
]
NEWS_STORY = [
    "The county council voted on Tuesday to keep the old library open for another year.",
    "The newsletter the library sends to members will now come out every month, the director "
    "said, and the reading room will stay open until nine.",
    "Residents who want to follow the budget debate can attend the next meeting on May 3.",
    # Story lines that look like the boxes above: they stay.
    "Questions about the new hours can be sent to the county clerk at clerk@county.example, "
    "the notice said.",
    "Update: The council voted 5-2 on Thursday to approve the budget.",
    "Step 2: Follow the signs to the garage on Main Street.",
    "The library's website has a map of the new bus routes. Click here for a map of the stops.",
    "The bookshop may earn revenue from the café it plans to open next door, the owner said.",
]


def test_news_page_boxes_are_dropped_and_the_story_kept() -> None:
    lines = ["Library Stays Open", "By Ana Ruiz", "March 5, 2024"]
    for i, story in enumerate(NEWS_STORY):
        lines += [story, NEWS_FURNITURE[i % len(NEWS_FURNITURE)]]
    lines += NEWS_FURNITURE[len(NEWS_STORY):]
    text = "\n\n".join(lines) + "\n"
    segments = find_body(text, "Library Stays Open")
    assert_valid(text, segments)
    body = kept(text, segments, "text")
    assert body == NEWS_STORY
    everything = "\n".join(kept(text, segments))
    for box in NEWS_FURNITURE:
        assert box not in everything, box


@pytest.mark.parametrize(
    "credit",
    [
        "Reporting by Ana Ruiz in Riverton and Lee Park in Lakeside; Additional reporting by "
        "Dana Fox in Hill City and Kim Lee in Lakeside; Editing by Sam Roe, Jo Park and Max "
        "Stone",
        "Reporting by Ana Ruiz in Riverton; additional reporting by Lee Park. Editing by Sam Roe.",
        "With additional reporting by the Gazette’s Dana Fox in Hill City.",
        "(Writing by Lee Park; Editing by Kim Lee)",
    ],
)
def test_a_wire_credit_line_ends_the_story_and_is_not_kept(credit: str) -> None:
    story = [
        "The county council voted on Tuesday to keep the old library open for another year.",
        "The mural, designed by local students and painted by volunteers, was finished in May.",
    ]
    after = "Our Standards: The Gazette Trust Principles."
    text = "\n\n".join(["Library Stays Open", *story, credit, after]) + "\n"
    segments = find_body(text, "Library Stays Open")
    assert_valid(text, segments)
    assert kept(text, segments) == story


def test_a_story_sentence_that_opens_like_a_credit_line_is_kept() -> None:
    line = "Reporting by the Gazette found that the council had spent the grant on repairs."
    text = "\n\n".join(["Library Stays Open", NEWS_STORY[0], line]) + "\n"
    assert kept(text, find_body(text, "Library Stays Open"), "text") == [NEWS_STORY[0], line]


def test_the_promo_hints_let_through_every_line_the_promo_pattern_drops() -> None:
    from index.ingest.clean import _PROMO, _promo

    lines = NEWS_FURNITURE + NEWS_STORY
    assert sum(_promo(line) for line in lines) >= len(NEWS_FURNITURE) - 6  # most are promos
    for line in lines:
        assert _promo(line) == bool(_PROMO.search(line)), line
