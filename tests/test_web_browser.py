"""The search page in a real headless Chromium (Debian's chromium + chromedriver, driven by
Selenium; no browser download) against a real `qa serve` on loopback: ask, read a cited
finding, follow the citation, filter, get refused and look anyway, give feedback and find
it recorded. Screenshots at desktop and phone width are written to docs/screenshots/."""

import shutil

import pytest
from conftest import ROOT, start_cli, stop

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
TAJI = "How many rockets landed at the Taji base?"
TAJI_SOURCE = "003_a6f98cea0e1f5c95"
SHOTS = ROOT / "docs" / "screenshots"

if not (CHROMIUM and DRIVER):
    pytest.skip("Chromium and chromedriver are not installed (apt-get install chromium "
                "chromium-driver; .ci/run does)", allow_module_level=True)


@pytest.fixture(scope="module")
def site(real_index, tmp_path_factory):
    """(base URL, index folder) of a real `qa serve` over a copy of the seeds index."""
    folder = tmp_path_factory.mktemp("web")
    index = folder / "index"
    shutil.copytree(real_index[1], index)
    process, url, _ = start_cli(
        ["serve", "--port", "0", "--index", str(index), "--docs", str(real_index[0])], folder,
        r"API at (http://\S+) ")
    try:
        yield url.rstrip("/"), index
    finally:
        stop(process)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic",
                 f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.implicitly_wait(10)
    yield driver
    driver.quit()


def _ask(browser, base, question, **fields):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(base + "/")
    for name, value in fields.items():
        box = browser.find_element(By.ID, name)
        box.clear()
        box.send_keys(value)
    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys(question, Keys.ENTER)  # keyboard only
    return browser.find_element(By.CSS_SELECTOR, "p.status")


def test_ask_read_a_cited_finding_and_follow_its_citation(site, browser):
    from selenium.webdriver.common.by import By

    base, _ = site
    status = _ask(browser, base, TAJI)
    assert "finding" in status.text
    assert browser.current_url.startswith(base + "/?q=How+many+rockets")  # a permalink
    permalink = browser.find_element(By.CSS_SELECTOR, "a.permalink").get_attribute("href")
    assert permalink.startswith(base + "/?q=How+many+rockets")
    findings = browser.find_elements(By.CSS_SELECTOR, "ol.findings > li")
    assert findings
    taji = next(f for f in findings if "18 rockets" in f.text)
    assert "18 rockets" in taji.find_element(By.TAG_NAME, "mark").text or \
        taji.find_element(By.TAG_NAME, "mark").text
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "search-desktop.png"))
    passage = taji.find_element(By.CSS_SELECTOR, "p.passage").text
    taji.find_element(By.CSS_SELECTOR, "p.cite a").click()
    cited = browser.find_element(By.ID, "cited")
    assert " ".join(cited.text.split()) == " ".join(passage.split())
    assert TAJI_SOURCE in browser.page_source


def test_filters_restrict_the_sources(site, browser):
    from selenium.webdriver.common.by import By

    base, _ = site
    _ask(browser, base, "What did Esper say about Iran?", source="voa")
    cites = [a.get_attribute("href") for a in
             browser.find_elements(By.CSS_SELECTOR, "ol.findings p.cite a")]
    assert cites and all("001_ff616514b17d0e93" in href for href in cites)
    assert "source=voa" in browser.current_url


def test_a_refusal_says_why_and_shows_the_closest_on_request(site, browser):
    from selenium.webdriver.common.by import By

    base, _ = site
    status = _ask(browser, base, "What did Angela Merkel say about the rockets?")
    assert "No confident answer" in status.text and "never mentions Angela Merkel" in status.text
    assert not browser.find_elements(By.CSS_SELECTOR, "ol.findings > li")
    browser.find_element(By.LINK_TEXT, "Show the closest passages anyway").click()
    assert browser.find_elements(By.CSS_SELECTOR, "ol.findings > li")


def test_feedback_buttons_record_a_row(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    from qa.feedback import Feedback

    base, index = site
    _ask(browser, base, TAJI)
    first = browser.find_element(By.CSS_SELECTOR, "ol.findings > li .votes")
    source = first.get_attribute("data-source")
    first.find_element(By.CSS_SELECTOR, "button[data-vote='up']").click()
    WebDriverWait(browser, 20).until(
        seen.text_to_be_present_in_element((By.CSS_SELECTOR, "ol.findings > li .thanks"),
                                           "Thanks"))
    assert first.find_element(By.CSS_SELECTOR, "button[data-vote='up']").get_attribute(
        "aria-pressed") == "true"
    db = Feedback.of_index(index)
    [row] = list(db.judged())
    db.close()
    assert (row.question, row.verdict, row.rank, row.source, row.via) == (
        TAJI, "up", 1, source, "api")


def test_the_page_fits_a_phone(site, browser):
    base, _ = site
    browser.set_window_size(390, 844)
    try:
        _ask(browser, base, TAJI)
        width = browser.execute_script("return document.documentElement.scrollWidth")
        inner = browser.execute_script("return window.innerWidth")
        assert width <= inner
        browser.save_screenshot(str(SHOTS / "search-phone.png"))
    finally:
        browser.set_window_size(1280, 900)


def test_a_question_about_now_answered_from_old_articles_carries_a_note(site, browser):
    from selenium.webdriver.common.by import By

    base, _ = site
    # The seeds are from 2020; the page asks as of today unless told otherwise.
    status = _ask(browser, base, "What did Esper recently say about Iran?")
    assert "finding" in status.text
    note = browser.find_element(By.CSS_SELECTOR, "p.note")
    assert "recent events" in note.text and "the newest article shown is from 2020-" in note.text
    _ask(browser, base, "What did Esper say about Iran?")  # no cue: no note
    assert not browser.find_elements(By.CSS_SELECTOR, "p.note")
