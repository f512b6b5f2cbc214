"""The words of the emails, the archive and the subscriber's pages and mails in the publication's
language (`site.language`): gettext catalogues.

Catalogues live in `templates/locale/<code>/LC_MESSAGES/publisher.po` (and the compiled `.mo`
beside it, `make translations`); English, French, German and Spanish are shipped. A language
without a catalogue (or a region of one: "fr-CA" uses "fr") falls back to English. Templates call
`_()` and `ngettext()` (Jinja's i18n extension, installed by `publisher.templates.environment`);
Python code calls `translations(language)`.
"""

from __future__ import annotations

import gettext
from datetime import datetime
from functools import lru_cache

from publisher.resources import templates_dir

DOMAIN = "publisher"
SHIPPED = ("en", "fr", "de", "es")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def code(language: str) -> str:
    """The catalogue a `site.language` uses: "fr-CA" → "fr"; unknown languages → "en"."""
    primary = language.replace("_", "-").split("-")[0].strip().lower()
    return primary if primary in SHIPPED else "en"


@lru_cache(maxsize=16)
def translations(language: str) -> gettext.NullTranslations:
    """The catalogue for `language`, or English (the messages themselves) when there is none."""
    wanted = code(language)
    if wanted == "en":
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, localedir=str(templates_dir() / "locale"), languages=[wanted], fallback=True)


def day_month(moment: datetime, language: str = "en", *, year: bool = False) -> str:
    _ = translations(language).gettext
    month = _(MONTHS[moment.month - 1])
    if year:
        return _("{day} {month} {year}").format(day=moment.day, month=month, year=moment.year)
    return _("{day} {month}").format(day=moment.day, month=month)


def long_date(moment: datetime, language: str = "en") -> str:
    _ = translations(language).gettext
    weekday = _(DAYS[moment.weekday()])
    return _("{weekday} {date}").format(weekday=weekday, date=day_month(moment, language, year=True))
