"""The day an out-of-office auto-reply says its author is back: no I/O.

A date counts only next to a phrase that speaks of returning or being away ("back on", "until",
"de retour le", "bis einschließlich", "hasta el"), so that any other date in the message (a
conference, a deadline, our own quoted mail) is never taken for the return. The phrase finds the
date; dateparser reads it. dateparser is slow to import and slower the more text it is given, so
it is imported once here and only ever sees the few words of one date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import IntEnum

import dateparser

from dripiq_events.reply_text import new_text

# An auto-reply says when in its first lines; the cap bounds the work on a pasted newsletter.
_MAX_TEXT = 4000
# dateparser calls per reply: each phrase after the best few is unlikely to be the one.
_MAX_PARSES = 4
_MAX_CUES = 20
# How far after its phrase a date may start ("back in the office on Monday").
_MAX_GAP = 40
_WINDOW = 120
_HORIZON = timedelta(days=365)


class _Kind(IntEnum):
    """What the date after a phrase is, and how sure we are of it (lower is surer)."""

    BACK = 1  # the first day back: "back on Dec 3"
    UNTIL = 2  # the last day away: "out until Dec 3" means back Dec 4
    FROM = 3  # "ab dem 3.12.", "à partir du 3": usually the return, sometimes the leaving


@dataclass(frozen=True)
class _Cue:
    pattern: re.Pattern[str]
    kind: _Kind
    language: str


def _cues(language: str, kind: _Kind, *patterns: str) -> list[_Cue]:
    return [_Cue(re.compile(pattern, re.IGNORECASE), kind, language) for pattern in patterns]


_CUES = [
    *_cues(
        "en",
        _Kind.BACK,
        # Not "get back to you", "write back", "call you back": a promise to answer, not a return.
        r"(?<!\bget\s)(?<!\bgot\s)(?<!getting\s)(?<!\bwrite\s)(?<!\bcall\syou\s)\bback\b(?!\s+to\s+(?:you|u)\b)",
        r"\breturn(?:s|ing)?\b",
        r"\bresum(?:e|ing)\b",
        r"\b(?:available|reachable|contactable)\b(?:\s+again)?",
    ),
    *_cues(
        "en",
        _Kind.UNTIL,
        r"\b(?:until|till|til|through|thru)\b(?:\s+and\s+including|\s+including)?",
        r"\bfrom\s+(?=[^\n]{0,20}\d)(?:\S+\s+){1,3}?to\b",
    ),
    *_cues(
        "fr",
        _Kind.BACK,
        r"\b(?:de\s+)?retour\b",
        r"\b(?:reviens|reviendrai|rentre|rentrerai|reprendrai|reprise)\b",
        r"\b(?:à|a|de)\s+nouveau\b",
    ),
    *_cues("fr", _Kind.UNTIL, r"\bjusqu['’]\s*(?:au|à|a)\b", r"\bdu\s+(?:\S+\s+){1,3}?au\b"),
    *_cues("fr", _Kind.FROM, r"(?:\b(?:à|a)\s+partir\s+du?\b|\bdès\s+le\b)"),
    *_cues(
        "de",
        _Kind.BACK,
        r"\b(?:zurück|zurueck)\b(?:\s+(?:am|ab))?(?:\s+(?:dem|den))?",
        # German puts "wieder" after the date: "Ab dem 3.12. bin ich wieder im Büro". The
        # look-ahead stops at another preposition so "am 1.12. weg und ab 4.12. wieder" reads 4.12.
        r"\b(?:am|ab)(?:\s+(?:dem|den))?(?=\s(?:(?!\b(?:am|ab|bis|vom)\b)[^\n]){1,40}?\b(?:wieder|zurück)\b)",
        r"\bwieder\b(?:\s+(?:im\s+Büro|erreichbar|da|verfügbar|im\s+Haus))?(?:\s+(?:am|ab))?(?:\s+(?:dem|den))?",
    ),
    *_cues(
        "de",
        _Kind.UNTIL,
        r"\bbis\b(?:\s+(?:einschlie(?:ß|ss)lich|inklusive|inkl\.|einschl\.|zum|zur|am|auf\s+weiteres))*",
    ),
    *_cues("de", _Kind.FROM, r"\bab\b(?:\s+(?:dem|den))?"),
    *_cues(
        "es",
        _Kind.BACK,
        r"\bde\s+(?:vuelta|regreso)\b",
        r"\b(?:regreso|regresaré|regresare|regresando|vuelvo|volveré|volvere|retorno)\b",
        r"\breincorpor\w*",
    ),
    *_cues("es", _Kind.UNTIL, r"\bhasta\b(?:\s+el)?(?:\s+día)?", r"\bdel\s+(?:\S+\s+){1,3}?al\b"),
    *_cues("es", _Kind.FROM, r"\ba\s+partir\s+del?\b"),
]

_MONTH = (
    r"\b(?:january|february|march|april|may|june|july|august|september|october|november|december"
    r"|jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec"
    r"|janvier|février|fevrier|mars|avril|mai|juin|juillet|août|aout|septembre|octobre|novembre|décembre|decembre"
    r"|janv|févr|fevr|avr|juil|déc"
    r"|januar|jänner|februar|märz|juni|juli|oktober|dezember|okt|dez"
    r"|enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre"
    r"|ene|abr|ago|dic)\b\.?"
)
_WEEKDAY = (
    # "mon", "wed", "sat", "sun" only with a dot or comma: else "mon bureau" or "I sat" is a day.
    r"\b(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|tues?|thu|fri|(?:mon|wed|sat|sun)(?=[.,])"
    r"|lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche"
    r"|montag|dienstag|mittwoch|donnerstag|freitag|samstag|sonnabend|sonntag"
    r"|lunes|martes|miércoles|miercoles|jueves|viernes|sábado|sabado|domingo)\b\.?"
)
_ARTICLE = r"(?:the|le|den|dem|el)\s+"
_ORDINAL = r"(?:st|nd|rd|th|er|º|°)"
# A weekday before a full date is dropped: the date is the more precise of the two.
_LEADING_WEEKDAY = rf"(?:{_WEEKDAY},?\s+(?:{_ARTICLE})?)?"
# "Monday 10:00", "lundi 9h", "8 days": a number that is not a day of the month.
_NOT_A_DAY = rf"(?![\d:])(?![./-]\d)(?!\s*(?:h|am|pm|uhr|days?|weeks?|hours?|jours?|semaines?|tage?n?|wochen|d[ií]as|semanas)\b)(?!\.?\s*(?:of\s+|de\s+)?{_MONTH})"
_DATE = re.compile(
    rf"""
    (?P<iso>(?<!\d)\d{{4}}-\d{{1,2}}-\d{{1,2}}(?!\d))
    | {_LEADING_WEEKDAY}(?P<numeric>(?<![\d.])(?P<n1>\d{{1,2}})(?P<sep>[./-])(?P<n2>\d{{1,2}})
        (?:(?P=sep)(?P<n3>\d{{4}}|\d{{2}}))?(?![\d]))
    | {_LEADING_WEEKDAY}(?P<day_month>(?<!\d)[0-3]?\d{_ORDINAL}?\.?\s*(?:of\s+|de\s+)?{_MONTH}
        (?:,?\s*(?:de\s+|del\s+)?(?P<dm_year>\d{{4}}))?)
    | {_LEADING_WEEKDAY}(?P<month_day>{_MONTH}\s*(?:the\s+)?[0-3]?\d{_ORDINAL}?(?!\d)(?:,?\s*(?P<md_year>\d{{4}}))?)
    | (?P<weekday_day>{_WEEKDAY},?\s+(?:{_ARTICLE})?(?P<wd_day>[0-3]?\d)(?:{_ORDINAL}|\.)?{_NOT_A_DAY})
    | (?P<weekday>{_WEEKDAY})
    | (?P<relative>day\s+after\s+tomorrow|tomorrow|après-demain|apres-demain|demain|übermorgen|morgen
        |(?<!pasado\s)mañana|(?<!pasado\s)manana
        |(?:in|dans|en)\s+(?:\d{{1,2}}|one|two|three|four|a)\s+(?:days?|weeks?|jours|semaines|tagen|wochen|días|dias|semanas)\b)
    | (?:{_ARTICLE}|am\s+|zum\s+)?(?P<day>(?<![\d.])[0-3]?\d)(?:{_ORDINAL}|\.){_NOT_A_DAY}
    | (?:le|el)\s+(?P<bare_day>[0-3]?\d){_NOT_A_DAY}
    """,
    re.IGNORECASE | re.VERBOSE,
)
# A sentence ends between the phrase and the date: they are not about each other.
_SENTENCE_END = re.compile(r"[.!?;](?:\s|$)|\n\s*\n")
_INCLUSIVE = re.compile(
    r"\b(?:inclusive|including|inclus|incluse?s?|einschlie(?:ß|ss)lich|inkl|incluido|incluida)\b", re.IGNORECASE
)
_EXCLUSIVE = re.compile(
    r"^\W{0,3}(?:exclusive|exclu|exclue?s?|ausschlie(?:ß|ss)lich|excluido|excluida)\b", re.IGNORECASE
)
# "I won't be back until", "no estaré hasta": until a day, read as the day they are back.
_NEGATION = {
    "en": re.compile(r"\b(?:not|no|never|cannot)\b|n['’]t\b", re.IGNORECASE),
    "es": re.compile(r"\b(?:no|nunca)\b", re.IGNORECASE),
}


def return_date(text: str, *, received_at: datetime) -> date | None:
    """The first day the author of an out-of-office reply says they are back, or None.

    received_at is when they sent it in their own UTC offset (their Date header): weekday names
    and year-less dates are read from their calendar. Only a day after that day and at most a
    year ahead counts.
    """
    body = new_text(text[:_MAX_TEXT])
    base = received_at.replace(tzinfo=None)
    found = sorted(
        ((cue.kind, match.start(), match, cue) for cue in _CUES for match in cue.pattern.finditer(body)),
        key=lambda candidate: (candidate[0], candidate[1]),
    )[:_MAX_CUES]
    parses = 0
    for _, _, match, cue in found:
        token = _date_after(body, match.end())
        if token is None:
            continue
        if parses == _MAX_PARSES:
            break
        parses += 1
        day = _read(token, language=cue.language, base=base)
        if day is None:
            continue
        if _kind(body, match, cue, token) is _Kind.UNTIL:
            day += timedelta(days=1)
        if base.date() < day <= base.date() + _HORIZON:
            return day
    return None


def warm_up() -> None:
    """Load dateparser's data for each language now: the first date read in a language takes
    50-300 ms, which a service start can pay instead of the first auto-reply it reads."""
    for sample in (
        "back on 3 December",
        "de retour le 3 décembre",
        "zurück am 3. Dezember",
        "de vuelta el 3 de diciembre",
    ):
        return_date(sample, received_at=datetime(2026, 12, 1, tzinfo=UTC))


def _date_after(body: str, start: int) -> re.Match[str] | None:
    window = body[start : start + _WINDOW]
    token = _DATE.search(window)
    if token is None or token.start() > _MAX_GAP or _SENTENCE_END.search(window, 0, token.start()):
        return None
    return token


def _kind(body: str, cue_match: re.Match[str], cue: _Cue, token: re.Match[str]) -> _Kind:
    """Whether the date is the first day back (kept) or the last day away (the day after is)."""
    after = token.string[token.end() : token.end() + 20]
    if _EXCLUSIVE.search(after):
        return _Kind.BACK
    if cue.kind is not _Kind.UNTIL:
        return cue.kind
    if _INCLUSIVE.search(cue_match.group(0)) or _INCLUSIVE.search(after):
        return _Kind.UNTIL
    negation = _NEGATION.get(cue.language)
    clause = re.split(r"[.!?;\n]", body[max(cue_match.start() - 60, 0) : cue_match.start()])[-1]
    if negation is not None and negation.search(clause):
        return _Kind.BACK
    return _Kind.UNTIL


def _read(token: re.Match[str], *, language: str, base: datetime) -> date | None:
    """The date a matched date expression names, its year filled in from base when missing."""
    if token["day"] or token["bare_day"] or token["weekday_day"]:
        return _next_day_of_month(int(token["day"] or token["bare_day"] or token["wd_day"]), after=base.date())
    if token["numeric"] and not token["n3"]:
        # dateparser reads "4.12." as a time of day; with a year it is a date.
        words, has_year = f"{token['n1']}{token['sep']}{token['n2']}{token['sep']}{base.year}", False
    elif token["numeric"]:
        words, has_year = token["numeric"], True
    elif token["day_month"]:
        words, has_year = token["day_month"], bool(token["dm_year"])
    elif token["month_day"]:
        words, has_year = token["month_day"], bool(token["md_year"])
    else:
        # ISO dates, weekday names and relative words: dateparser reads them against base.
        words, has_year = token.group(0), True
    parsed = dateparser.parse(
        words,
        languages=[language],
        settings={
            "PREFER_DATES_FROM": "future",
            "RELATIVE_BASE": base,
            "DATE_ORDER": "MDY" if language == "en" else "DMY",
            "PARSERS": ["relative-time", "absolute-time"],
            # Never the host's zone: dateparser asks tzlocal for it, which fails on a TZ such as
            # "UTC0" (the dates read here carry no time of day anyway).
            "TIMEZONE": "UTC",
        },
    )
    if parsed is None:
        return None
    day = parsed.date()
    return day if has_year else _in_coming_year(day, after=base.date())


def _in_coming_year(day: date, *, after: date) -> date:
    """A year-less date on or after `after` this year, else next year."""
    try:
        this_year = day.replace(year=after.year)
        return this_year if this_year >= after else this_year.replace(year=after.year + 1)
    except ValueError:
        # 29 February: dateparser already chose the next leap year.
        return day


def _next_day_of_month(day_of_month: int, *, after: date) -> date | None:
    """The first date after `after` that falls on that day of the month ("back on the 8th")."""
    year, month = after.year, after.month
    for _ in range(13):
        try:
            candidate = date(year, month, day_of_month)
        except ValueError:
            candidate = None
        if candidate is not None and candidate > after:
            return candidate
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return None
