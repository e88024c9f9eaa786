"""What kind of answer a question asks for (a person, a place, an organisation, a number, a
date, money, or any other name: "which US popstar …") and whether a sentence states one it
does not already give.

No tagger ships offline, so the kinds are read from the surface: a place is a country or US
state named by name or by its people's adjective ("the Spanish government" states Spain), a
person two capitalised words in a row, an organisation a capitalised name or an acronym, a
number a figure or number word, a date a month, weekday or year, money an amount.
"""

from __future__ import annotations

import re
from functools import cache

from . import places

KINDS = ("person", "place", "org", "number", "date", "money", "name")

_PERSON_NOUNS = (
    "person|man|woman|actor|actress|singer|rapper|musician|player|athlete|star|celebrity|"
    "president|leader|ceo|executive|chief|senator|lawmaker|politician|judge|official|minister|"
    "candidate|author|writer|director|coach|quarterback|pitcher|driver|golfer|boxer|comedian|"
    "host|anchor|journalist|billionaire|founder|entrepreneur|governor|mayor|king|queen|prince|"
    "princess|pope|general|commander|scientist|artist|designer|chef|model|influencer|"
    "figure|suspect|victim|nominee|member|justice|speaker|spokesperson|prime minister"
)
_PLACE_NOUNS = (
    "country|nation|state|city|town|village|region|province|island|islands|county|capital|"
    "territory|continent|sea|ocean|river|mountain|volcano|lake|neighborhood|district|"
    "location|place|port|area"
)
_ORG_NOUNS = (
    "company|companies|retailer|automaker|carmaker|airline|bank|firm|brand|chain|network|"
    "organization|organisation|group|team|club|agency|party|union|university|college|school|"
    "store|startup|manufacturer|carrier|maker|giant|app|platform|outlet|newspaper|magazine|"
    "league|studio|publisher|restaurant|service|site|website|channel|broadcaster|"
    "government|court|department|ministry|institution|charity|foundation|corporation|"
    "conglomerate|supplier|distributor|insurer|lender|exchange|business|franchise|"
    "streaming service|social media platform|tech company"
)
_HEAD = r"\b(?:which|what)\s+(?:[\w.’'-]+\s+){0,2}?(%s)s?\b"
_ASKS_PLACE = re.compile(_HEAD % _PLACE_NOUNS + r"|^\s*where\b|\bin which\b(?! year)", re.I)
_ASKS_PERSON = re.compile(
    r"^\s*(?:who|whom|whose)\b|\bwho\s+(?:is|was|has|had|will|became|won)\b"
    r"|\bname of the (?:" + _PERSON_NOUNS + r")\b|" + _HEAD % _PERSON_NOUNS, re.I
)
_ASKS_ORG = re.compile(_HEAD % _ORG_NOUNS, re.I)
_ASKS_MONEY = re.compile(
    r"(?i)\bhow much (?:money|did|does|do|will|is|was|were|are)\b[^?]{0,60}?\b(?:cost|spen[dt]"
    r"|pa(?:y|id)|worth|price|fine[ds]?|charge[ds]?|earn|raise|sell|sold|owe)|\bwhat (?:price|"
    r"amount|sum)\b|\bhow much\b[^?]{0,30}\b(?:dollars|money)\b"
)
_ASKS_NUMBER = re.compile(
    r"(?i)\bhow (?:many|much|old|long|tall|high|far|deep|big|large|fast)\b"
    r"|\bwhat (?:percentage|percent|number|share|age|proportion|fraction)\b"
)
# "Which …" of any other noun ("which US popstar", "which iconic venue"): a name.
_ASKS_NAME = re.compile(r"\bwhich\b|\bwhat(?:'s|’s| is| was) the name\b", re.I)
_ASKS_DATE = re.compile(
    r"(?i)^\s*when\b|\bwhen (?:did|does|do|will|is|was|were)\b"
    r"|\b(?:what|which) (?:year|month|day|date|decade|century)\b"
)


def asked(question: str) -> str | None:
    """The kind of answer ``question`` asks for (one of ``KINDS``), or None."""
    for kind, pattern in (("money", _ASKS_MONEY), ("number", _ASKS_NUMBER),
                          ("date", _ASKS_DATE), ("place", _ASKS_PLACE),
                          ("person", _ASKS_PERSON), ("org", _ASKS_ORG),
                          ("name", _ASKS_NAME)):
        if pattern.search(question):
            return kind
    return None


# A country's people and adjective, as news names the country by them ("the Spanish
# government", "Israeli strikes"): pycountry has names but no demonyms.
DEMONYMS = {
    "Afghan": "Afghanistan", "Albanian": "Albania", "Algerian": "Algeria",
    "American": "United States", "Argentine": "Argentina", "Argentinian": "Argentina",
    "Armenian": "Armenia", "Australian": "Australia", "Austrian": "Austria",
    "Azerbaijani": "Azerbaijan", "Bangladeshi": "Bangladesh", "Belarusian": "Belarus",
    "Belgian": "Belgium", "Bolivian": "Bolivia", "Bosnian": "Bosnia", "Brazilian": "Brazil",
    "British": "United Kingdom", "Bulgarian": "Bulgaria", "Burmese": "Myanmar",
    "Cambodian": "Cambodia", "Cameroonian": "Cameroon", "Canadian": "Canada",
    "Chilean": "Chile", "Chinese": "China", "Colombian": "Colombia", "Congolese": "Congo",
    "Croatian": "Croatia", "Cuban": "Cuba", "Cypriot": "Cyprus", "Czech": "Czechia",
    "Danish": "Denmark", "Dutch": "Netherlands", "Ecuadorian": "Ecuador",
    "Egyptian": "Egypt", "Emirati": "United Arab Emirates", "English": "United Kingdom",
    "Eritrean": "Eritrea", "Estonian": "Estonia", "Ethiopian": "Ethiopia",
    "Filipino": "Philippines", "Finnish": "Finland", "French": "France",
    "Georgian": "Georgia", "German": "Germany", "Ghanaian": "Ghana", "Greek": "Greece",
    "Guatemalan": "Guatemala", "Haitian": "Haiti", "Honduran": "Honduras",
    "Hungarian": "Hungary", "Icelandic": "Iceland", "Indian": "India",
    "Indonesian": "Indonesia", "Iranian": "Iran", "Iraqi": "Iraq", "Irish": "Ireland",
    "Israeli": "Israel", "Italian": "Italy", "Jamaican": "Jamaica", "Japanese": "Japan",
    "Jordanian": "Jordan", "Kazakh": "Kazakhstan", "Kenyan": "Kenya", "Korean": "Korea",
    "Kuwaiti": "Kuwait", "Latvian": "Latvia", "Lebanese": "Lebanon", "Libyan": "Libya",
    "Lithuanian": "Lithuania", "Malaysian": "Malaysia", "Malian": "Mali",
    "Mexican": "Mexico", "Moldovan": "Moldova", "Mongolian": "Mongolia",
    "Moroccan": "Morocco", "Nepalese": "Nepal", "Nepali": "Nepal", "Nicaraguan": "Nicaragua",
    "Nigerian": "Nigeria", "Norwegian": "Norway", "Pakistani": "Pakistan",
    "Palestinian": "Palestine", "Panamanian": "Panama", "Paraguayan": "Paraguay",
    "Peruvian": "Peru", "Polish": "Poland", "Portuguese": "Portugal", "Qatari": "Qatar",
    "Romanian": "Romania", "Russian": "Russia", "Rwandan": "Rwanda", "Saudi": "Saudi Arabia",
    "Scottish": "United Kingdom", "Senegalese": "Senegal", "Serbian": "Serbia",
    "Singaporean": "Singapore", "Slovak": "Slovakia", "Slovenian": "Slovenia",
    "Somali": "Somalia", "Spanish": "Spain", "Sri Lankan": "Sri Lanka",
    "Sudanese": "Sudan", "Swedish": "Sweden", "Swiss": "Switzerland", "Syrian": "Syria",
    "Taiwanese": "Taiwan", "Thai": "Thailand", "Tunisian": "Tunisia", "Turkish": "Turkey",
    "Ugandan": "Uganda", "Ukrainian": "Ukraine", "Uruguayan": "Uruguay",
    "Uzbek": "Uzbekistan", "Venezuelan": "Venezuela", "Vietnamese": "Vietnam",
    "Welsh": "United Kingdom", "Yemeni": "Yemen", "Zambian": "Zambia",
    "Zimbabwean": "Zimbabwe",
}


@cache
def _demonym_pattern() -> re.Pattern[str]:
    alternatives = "|".join(sorted(DEMONYMS, key=len, reverse=True))
    return re.compile(rf"(?<![\w])(?:{alternatives})s?(?![\w])")


def countries(text: str) -> frozenset[str]:
    """The countries and US states ``text`` names, by name or by demonym (as names)."""
    found = set(places.named(text, "country")) | set(places.named(text, "state"))
    found.update(DEMONYMS[m if m in DEMONYMS else m[:-1]]
                 for m in _demonym_pattern().findall(text))
    return frozenset(found)


CAPITALISED = re.compile(r"(?<![\w’'])[A-Z][\w’'.&-]*")
# Capitalised words that name nobody: days, months, and words that open a clause.
NOT_NAMES = frozenset(
    "monday tuesday wednesday thursday friday saturday sunday january february march april "
    "may june july august september october november december the a an i he she it they we "
    "this that these those but and or in on at for of to by as if when while after before mr "
    "mrs ms dr".split()
)
# ... and words that open a name's run without being part of it ("His Excellency", "New").
_RUN_BREAKS = NOT_NAMES | {"his", "her", "its", "their", "our", "my", "new"}
_ACRONYM = re.compile(r"(?<![\w])[A-Z][A-Z0-9&]{1,6}(?![\w])")
_ORG_WORDS = re.compile(
    r"\b(?:Inc|Corp|Corporation|Co|Company|Group|Bank|Airlines?|Motors|Holdings|Ltd|LLC"
    r"|Association|Agency|Council|Party|Union|University|Institute|Foundation|Department"
    r"|Ministry|Commission|Committee|Federation|League|Network|Studios?|Technologies)\b"
)
_DIGIT_NUMBER = re.compile(r"\d")
_NUMBER_WORDS = re.compile(
    r"(?i)\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|dozen|dozens"
    r"|twenty|thirty|forty|fifty|hundred|hundreds|thousand|thousands|million|billion)\b"
)
_MONEY = re.compile(
    r"[$£€¥]\s?\d|\b\d[\d,.]*\s*(?:dollars|euros|pounds|cents|yuan|yen|rupees)\b"
    r"|\b\d[\d,.]*\s*(?:million|billion|trillion)\b"
)
_DATE = re.compile(
    r"\b(?:January|February|March|April|May|June|July|August|September|October|November"
    r"|December|Jan\.|Feb\.|Aug\.|Sept?\.|Oct\.|Nov\.|Dec\.|Monday|Tuesday|Wednesday"
    r"|Thursday|Friday|Saturday|Sunday|(?:1[89]|20)\d\d)\b|(?i:\b(?:yesterday|today|last "
    r"(?:week|month|year)|this (?:week|month|year))\b)"
)


def names(sentence: str, given: frozenset[str]) -> list[str]:
    """The names ``sentence`` gives that the question (its casefolded words ``given``) does
    not: runs of capitalised words after the sentence's first, joined ("Texas Rangers")."""
    return [" ".join(run) for run in _names(sentence, given)]


def _names(sentence: str, given: frozenset[str]) -> list[list[str]]:
    """Runs of capitalised words (after the sentence's first word) the question does not
    use: "… said Prime Minister Pedro Sánchez on …" → [["Prime", "Minister", "Pedro", …]]."""
    runs: list[list[str]] = []
    last_end = -2
    for match in CAPITALISED.finditer(sentence):
        word = match.group().rstrip(".’'")
        folded = word.casefold()
        if not match.start() or folded in _RUN_BREAKS:
            last_end = -2
            continue
        if folded in given:
            last_end = -2
            continue
        if runs and match.start() == last_end + 1:
            runs[-1].append(word)
        else:
            runs.append([word])
        last_end = match.end()
    return runs


def states(sentence: str, kind: str | None, given: frozenset[str],
           places_given: frozenset[str] = frozenset()) -> bool:
    """Whether ``sentence`` states an answer of ``kind`` the question (its casefolded words
    ``given``, the places it names ``places_given``) does not already give."""
    if kind is None:
        return False
    if kind == "place":
        return bool(countries(sentence) - places_given)
    if kind == "person":
        return any(len(run) >= 2 for run in _names(sentence, given))
    if kind == "org":
        if _ORG_WORDS.search(sentence):
            return True
        return any(m.group().casefold() not in given for m in _ACRONYM.finditer(sentence)) \
            or bool(_names(sentence, given))
    if kind == "number":
        return bool(_DIGIT_NUMBER.search(sentence) or _NUMBER_WORDS.search(sentence))
    if kind == "money":
        return _MONEY.search(sentence) is not None
    if kind == "date":
        return any(m.group().casefold() not in given for m in _DATE.finditer(sentence))
    if kind == "name":
        return bool(_names(sentence, given))
    return False
