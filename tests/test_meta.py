from pathlib import Path

import pytest
from conftest import DATA, SEEDS, SHARED

from index.ingest.clean import Segment, find_body
from index.ingest.meta import Metadata, extract_metadata, infer_date


def read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


@pytest.mark.parametrize(
    "stem, expected",
    [
        (
            "000_3462dbd106702807",
            Metadata(
                "US warns of preemptive attack against forces allegedly backed by Iran",
                "2020-01-02",
                None,
                None,
            ),
        ),
        (
            "001_ff616514b17d0e93",
            Metadata(
                "Esper: US Prepared to Take 'Preemptive' Action on Iran",
                "2020-01-02",
                "Carla Babb",
                "VOA",
            ),
        ),
        (
            "002_a3394f1d188f29c5",
            Metadata(
                "Iran May be Planning More Attacks on US Interests: Secretary of Defense",
                "2020-01-02",
                "Zachary Stieber",
                "The Epoch Times",
            ),
        ),
        (
            "003_a6f98cea0e1f5c95",
            Metadata("Pentagon Threatens Retaliation After Attack In Iraq", None, None, None),
        ),
        (
            "004_c31d4bc7025f9123",
            Metadata(
                "US President Donald Trump Warns Iran over Rocket Attacks on Embassy in Iraq",
                None,
                None,
                None,
            ),
        ),
    ],
)
def test_seed_metadata(stem: str, expected: Metadata) -> None:
    assert extract_metadata(read(SEEDS / f"{stem}.txt")) == expected


@pytest.mark.parametrize(
    "stem, expected",
    [
        (
            "harbor_share_ads",
            Metadata(
                "Harbor Ferry Service Returns After Two-Year Shutdown",
                "2021-03-05",
                "Maria Okafor",
                "Coastline Daily",
            ),
        ),
        (
            "cookie_sidebar",
            Metadata(
                "Can the Drought-Hit Farms of the Valley Survive Another Dry Summer?",
                "2021-02-08",
                None,
                "The Valley Ledger",
            ),
        ),
        (
            "comments_promo",
            Metadata(
                "Library Extends Weekend Hours After Record Summer Demand",
                "2021-06-14",
                "Priya Raman and Tom Ellis",
                None,
            ),
        ),
        (
            "wire_caption",
            Metadata(
                "Fishing Fleet Stays in Port as Typhoon Nears Coast", "2021-01-13", None,
                "The Associated Press",  # its copyright notice; the dateline says "(AP)"
            ),
        ),
        (
            "wire_reuters",
            Metadata(
                "Drought forces city to ration water for first time in 40 years", "2023-03-14",
                "Maria Gonzalez", "Reuters",  # date line with "Updated 2 hours ago"; © notice
            ),
        ),
        (
            "crlf_warning",
            Metadata("Gale Warning Issued for Northern Ports", "2021-03-04", None, None),
        ),
        ("squad_style", Metadata("Lighthouse keeping", None, None, None)),
    ],
)
def test_invented_page_metadata(stem: str, expected: Metadata) -> None:
    assert extract_metadata(read(DATA / f"{stem}.txt")) == expected


SQUAD = sorted((SHARED / "bench" / "squad-a" / "docs").glob("*.txt"))


@pytest.mark.skipif(not SQUAD, reason="shared SQuAD bench not present")
@pytest.mark.parametrize("path", SQUAD, ids=lambda p: p.stem)
def test_squad_style_file(path: Path) -> None:
    text = read(path)
    meta = extract_metadata(text)
    first, *rest = [line.strip() for line in text.splitlines() if line.strip()]
    assert meta == Metadata(first, None, None, None)
    body = "\n".join(text[s.start : s.end] for s in find_body(text, meta.title))
    assert all(line in body for line in rest)
    assert first not in body.splitlines()


DOC = (
    "{line}\nA Headline About the Harbor Plan\n\nThe council approved the harbor plan on a vote.\n"
)


@pytest.mark.parametrize(
    "line, expected",
    [
        ("Updated January 02, 2020 07:53 PM", "2020-01-02"),
        (" date 2020-01-02 USA", "2020-01-02"),
        ("Thursday, 2 January 2020", "2020-01-02"),
        ("January 2, 2020US News", "2020-01-02"),
        ("Wed, 01/01/2020 - 11:10", "2020-01-01"),
        ("2020-01-02", "2020-01-02"),
        ("Published: Sept. 9, 2019 at 8:00 a.m. ET", "2019-09-09"),
        ("Posted 13/04/2021", "2021-04-13"),
        ("Posted 03/04/2021", None),  # March 4th or 3 April: not invented
        ("February 30, 2020", None),
        ("Home | World", None),
    ],
)
def test_header_date_lines(line: str, expected: str | None) -> None:
    assert extract_metadata(DOC.format(line=line)).date == expected


def test_dates_in_story_prose_are_not_the_header_date() -> None:
    text = (
        "Harbor Plan Approved After Long Debate\n\n"
        "The council approved the plan on Jan. 5, 2021, after a year of hearings.\n"
        "Work starts in the spring, officials said on Tuesday.\n"
    )
    meta = extract_metadata(text)
    assert meta.date is None and meta.date_inferred is False


@pytest.mark.parametrize(
    "line, expected",
    [
        ("By Carla Babb", "Carla Babb"),
        ("By Jane Doe, Reuters", "Jane Doe"),
        ("BY Mary-Ann O’Neil | Staff Writer", "Mary-Ann O’Neil"),
        ("By VOA News", None),
        ("By Associated Press", None),
        ("By registering for the newsletter, you agree to the Privacy Policy.", None),
        # Names run together, then listed: a scraped multi-author byline.
        ("By Joe Johns Aileen Graef Holly Yan, Joe Johns, Aileen Graef, Holly Yan",
         "Joe Johns, Aileen Graef, Holly Yan"),
        ("By Reuters Robert Shackelford, Robert Shackelford", "Robert Shackelford"),
    ],
)
def test_author_bylines(line: str, expected: str | None) -> None:
    assert extract_metadata(DOC.format(line=line)).author == expected


def test_bylines_after_the_story_are_not_the_author() -> None:
    text = (
        DOC.format(line="Local News") + "Related Stories\nSomething Else Happened\nBy Jeff Seldin\n"
    )
    assert extract_metadata(text).author is None


def test_publisher_needs_logo_and_house_byline() -> None:
    assert extract_metadata(DOC.format(line="Reuters logo")).publisher is None
    both = DOC.format(line="Harbor Times logo") + "\nMore\nBy Harbor Times Staff\n"
    assert extract_metadata(both).publisher == "Harbor Times"


NEWS_PAGE = (
    "{title}\n\nBy Matt Mcfarland\nPublished March 23, 2022\n\n{dateline}\n\n"
    "Tesla recently issued four vehicle recalls in a 12-day span, the company said on Monday.\n\n"
    "Owners did not have to rush their cars to a dealership to fix the safety issues.\n"
)


@pytest.mark.parametrize(
    "title, dateline, shown, publisher",
    [
        # A headline cut short at the top is still the title; a dateline line never is.
        ("High-tech cars take the pain out of recalls, but there's a catch ...", "CNN —",
         "High-tech cars take the pain out of recalls, but there's a catch …", None),
        ("Volkswagen recalls over 114,000 Beetles, Passats with Takata air …",
         "New York CNN Business —", "Volkswagen recalls over 114,000 Beetles, Passats with "
         "Takata air …", None),
        ("5 things to know for Jan. 31: Ukraine, SCOTUS, Spotify, North Korea ...",
         "Washington CNN —", "5 things to know for Jan. 31: Ukraine, SCOTUS, Spotify, North "
         "Korea …", None),
        # Right above the byline: the headline, in two sentences too.
        ("Is watermelon healthy? A nutritionist on the benefits of the fruit.", "CNN —",
         "Is watermelon healthy? A nutritionist on the benefits of the fruit.", None),
        # The outlet a title ends with is the publisher when a dateline line names it too.
        ("High-tech cars take the pain out of recalls, but there's a catch | CNN ...",
         "Tokyo CNN —", "High-tech cars take the pain out of recalls, but there's a catch",
         "CNN"),
        ("Why Wall Street shouldn't sweat the midterms | CNN Business", "New York CNN Business —",
         "Why Wall Street shouldn't sweat the midterms", "CNN Business"),
        # Named once only: the title keeps its ending and nobody is the publisher.
        ("What to know about the recall | Fact check", "CNN —",
         "What to know about the recall | Fact check", None),
        ("How the recalls work | The Week", "WASHINGTON —", "How the recalls work | The Week",
         None),
    ],
)
def test_news_page_title_and_outlet(title, dateline, shown, publisher) -> None:
    text = NEWS_PAGE.format(title=title, dateline=dateline)
    meta = extract_metadata(text)
    assert (meta.title, meta.publisher, meta.date) == (shown, publisher, "2022-03-23")
    body = "\n".join(text[s.start : s.end] for s in meta.body)
    assert body.startswith("By Matt Mcfarland") and "Tesla recently" in body
    assert title not in body and dateline not in body


def test_a_round_ups_credit_line_is_not_its_title() -> None:
    text = ("50 States\n\nPublished December 24, 2019\n\nFrom USA TODAY Network and wire "
            "reports\n\nAlabama\n\nRogersville: The lodge and marina of the state park that "
            "a tornado hit on Dec. 14 will reopen in the spring, officials said.\n")
    assert extract_metadata(text).title == "50 States"


def test_a_story_sentence_ending_in_an_ellipsis_is_not_a_title() -> None:
    # Cut short at the top but with no byline or date stamp below: a story's first line.
    text = "The council met on Tuesday and then ...\n\nIt approved the harbor plan on a vote.\n"
    assert extract_metadata(text).title is None


@pytest.mark.parametrize("text", ["", "  \n \r\n", "x", "One sentence only.", "\u2028\u2029"])
def test_empty_and_tiny_inputs(text: str) -> None:
    meta = extract_metadata(text)
    assert meta.date is None and meta.author is None and meta.publisher is None


@pytest.mark.parametrize(
    "stem, expected",
    [
        ("004_c31d4bc7025f9123", "2020-11-27"),  # "Nov. 27, 2020" in a caption
        ("003_a6f98cea0e1f5c95", None),  # "January 3" has no year
        ("000_3462dbd106702807", None),
    ],
)
def test_infer_date_from_seed_prose(stem: str, expected: str | None) -> None:
    text = read(SEEDS / f"{stem}.txt")
    assert infer_date(text, find_body(text, extract_metadata(text).title)) == expected


def test_extract_metadata_infers_only_when_asked() -> None:
    text = read(SEEDS / "004_c31d4bc7025f9123.txt")
    meta = extract_metadata(text)
    assert meta.date is None and not meta.date_inferred
    meta = extract_metadata(text, infer=True)
    assert meta.date == "2020-11-27" and meta.date_inferred
    # A stated header date is never replaced or flagged.
    stated = extract_metadata(read(SEEDS / "001_ff616514b17d0e93.txt"), infer=True)
    assert stated.date == "2020-01-02" and not stated.date_inferred
    undated = extract_metadata(read(SEEDS / "003_a6f98cea0e1f5c95.txt"), infer=True)
    assert undated.date is None and not undated.date_inferred


@pytest.mark.parametrize(
    "body, expected",
    [
        ("Talks began on March 3, 2021 and ended on 9 March 2021.", "2021-03-09"),
        ("The deal was signed on 03/04/2021 in the capital.", None),  # day/month ambiguous
        ("The deal was signed on 13/04/2021 in the capital.", "2021-04-13"),
        ("Talks began on March 3, 2021 and the new rules apply from 2022.", None),
        ("Talks began in March and ended last week.", None),
    ],
)
def test_infer_date_only_when_unambiguous(body: str, expected: str | None) -> None:
    assert infer_date(body, [Segment(0, len(body), "text")]) == expected


def test_infer_date_reads_only_the_given_segments() -> None:
    text = "Dated 1 May 2021 in the header.\nThe story says nothing about when."
    assert infer_date(text, [Segment(32, len(text), "text")]) is None


@pytest.mark.parametrize(("story", "publisher"), [
    ("WASHINGTON (AP) — The Senate voted on Tuesday to pass the bill that had stalled.", "AP"),
    ("BEIJING, Jan. 3 (Xinhua) -- Officials said the new rail line would open next year.",
     "Xinhua"),
    ("The Senate (upper house) - voted on Tuesday to pass the bill that had stalled.", None),
])
def test_wire_dateline_names_the_agency(story: str, publisher: str | None) -> None:
    text = f"A Headline For The Story\n\n{story}\n\nA second long sentence follows the first.\n"
    assert extract_metadata(text).publisher == publisher


def test_copyright_notice_names_the_owner_only_with_a_year() -> None:
    story = ("A Headline For The Story\n\nThe council voted on Tuesday to pass the budget.\n\n"
             "A second long sentence follows the first one here.\n\n")
    assert extract_metadata(story + "© Getty Images\n").publisher is None
    assert extract_metadata(story + "Copyright © 2020 NTD. All Rights Reserved.\n").publisher == "NTD"
