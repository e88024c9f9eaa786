"""Countries and US states, as a question asking "which country / which state …" wants one
named: a gazetteer from pycountry (ISO 3166 names, no download), matched as whole words."""

from __future__ import annotations

import re
from functools import cache

# Short forms news text uses for countries whose ISO name is longer ("Russian Federation",
# "Syrian Arab Republic", "Korea, Democratic People's Republic of").
_SHORT_FORMS = (
    "US", "U.S.", "USA", "America", "UK", "Britain", "Great Britain", "England", "Scotland",
    "Wales", "Russia", "Syria", "Iran", "North Korea", "South Korea", "Taiwan", "Vietnam",
    "Laos", "Bolivia", "Venezuela", "Tanzania", "Moldova", "Czech Republic", "Palestine",
    "Gaza", "Vatican", "Ivory Coast", "Congo", "Micronesia", "Holland",
)


@cache
def _pattern(kind: str) -> re.Pattern[str]:
    import pycountry

    if kind == "state":
        names = {s.name for s in pycountry.subdivisions.get(country_code="US")}
    else:
        names = set(_SHORT_FORMS)
        for country in pycountry.countries:
            for field in ("name", "common_name"):
                value = getattr(country, field, None)
                if value:
                    names.add(value.split(",")[0])  # "Korea, Republic of" → "Korea"
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    # Names start with a capital: other positions fail at the lookahead, not 300 times.
    return re.compile(rf"(?<![\w.])(?=[A-Z])(?:{alternatives})(?![\w])")


def named(text: str, kind: str) -> frozenset[str]:
    """The countries (``kind`` "country") or US states ("state") ``text`` names."""
    return frozenset(_pattern(kind).findall(text))
