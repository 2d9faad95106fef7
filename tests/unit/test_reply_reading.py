"""Reading a reply: what its author wrote, when an auto-reply says they are back, what they want."""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime, timedelta, timezone

import dateparser.utils
import pytest

from dripiq_events import autoreply_dates
from dripiq_events.autoreply_dates import return_date
from dripiq_events.reply_classes import ReplyClass, classify_by_rules
from dripiq_events.reply_text import new_text, plain_text, sanitized_html, snippet

PARIS = timezone(timedelta(hours=1))


@pytest.fixture(autouse=True)
def no_host_time_zone(monkeypatch):
    """Every reading here must work on a host whose time zone tzlocal cannot name (a TZ such as
    "UTC0", or /etc/timezone and /etc/localtime that disagree): the events process reads return
    dates, and warms the reader up at start-up, on whatever host it runs."""

    def unknown() -> None:
        raise zoneinfo.ZoneInfoNotFoundError("no time zone configuration on this host")

    monkeypatch.setattr(dateparser.utils, "get_localzone", unknown)


# A Tuesday.
RECEIVED = datetime(2026, 12, 1, 10, 0, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Thank you for your email. I will be back on 3 December.", date(2026, 12, 3)),
        ("I'm back on Monday.", date(2026, 12, 7)),
        # Sent on a Tuesday: the next Tuesday, not today.
        ("Out of the office, back Tuesday.", date(2026, 12, 8)),
        ("Out of the office, back Tuesday 8th.", date(2026, 12, 8)),
        ("I am returning on 12/03/2026.", date(2026, 12, 3)),
        ("I am out of the office until 2026-12-03.", date(2026, 12, 4)),
        ("I am out of the office until December 3rd with limited access to email.", date(2026, 12, 4)),
        ("I am away until the 2nd.", date(2026, 12, 3)),
        ("I won't be back until Monday 7 December.", date(2026, 12, 7)),
        ("I'm out from Dec 1 to Dec 5.", date(2026, 12, 6)),
        ("Je suis de retour le 3 décembre.", date(2026, 12, 3)),
        ("Je serai absent jusqu'au 5 décembre inclus.", date(2026, 12, 6)),
        # Day first outside English: 7 December, not 12 July.
        ("Je serai de retour le 07/12/2026.", date(2026, 12, 7)),
        ("Je serai joignable à partir du 7 décembre.", date(2026, 12, 7)),
        ("Ich bin zurück am 3. Dezember.", date(2026, 12, 3)),
        ("Ich bin bis einschließlich 4.12. nicht im Büro.", date(2026, 12, 5)),
        ("Ab dem 07.12.2026 bin ich wieder im Büro.", date(2026, 12, 7)),
        ("Ich bin am 1.12. unterwegs und ab 4.12. wieder da.", date(2026, 12, 4)),
        ("Estaré de vuelta el 3 de diciembre.", date(2026, 12, 3)),
        ("Estoy fuera de la oficina hasta el 4 de diciembre.", date(2026, 12, 5)),
        ("Regreso el lunes.", date(2026, 12, 7)),
        # In the past (its year says so), more than a year ahead, the very day it was sent.
        ("I will be back on 3 December 2025.", None),
        ("I am out of the office until 2028-06-01.", None),
        ("Back on 1 December.", None),
        # A date, but not about the return.
        ("I am out of the office. I was at the conference on 4 December.", None),
        ("I'll get back to you on Monday.", None),
        ("I am out of the office.\n\n> Can we talk when you are back on 4 December?", None),
        ("I am out of the office with limited access to email.", None),
        ("", None),
        ("I'm on parental leave until further notice.", None),
    ],
)
def test_the_return_date_of_an_auto_reply(text: str, expected: date | None):
    assert return_date(text, received_at=RECEIVED) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I'll be back on 3 January.", date(2027, 1, 3)),
        ("Out of the office until 31 December.", date(2027, 1, 1)),
    ],
)
def test_a_year_less_date_before_the_reply_is_next_years(text: str, expected: date):
    assert return_date(text, received_at=datetime(2026, 12, 28, 9, 0, tzinfo=PARIS)) == expected


def test_relative_words_read_in_the_senders_own_time_zone():
    # Already 2 December in UTC, still 1 December where it was written.
    late_in_california = datetime(2026, 12, 1, 23, 30, tzinfo=timezone(timedelta(hours=-8)))
    assert return_date("Out today, back tomorrow.", received_at=late_in_california) == date(2026, 12, 2)


@pytest.mark.parametrize(
    ("subject", "text", "expected"),
    [
        ("Re: Hello", "Please take me off your list.", ReplyClass.UNSUBSCRIBE_REQUEST),
        ("Re: Hello", "Stop emailing me.", ReplyClass.UNSUBSCRIBE_REQUEST),
        ("Re: Hello", "I don't know how to unsubscribe from this.", ReplyClass.UNSUBSCRIBE_REQUEST),
        ("Unsubscribe", "", ReplyClass.UNSUBSCRIBE_REQUEST),
        ("Re: Hello", "Merci de me désabonner.", ReplyClass.UNSUBSCRIBE_REQUEST),
        ("Re: Hello", "Je ne veux plus recevoir vos e-mails.", ReplyClass.UNSUBSCRIBE_REQUEST),
        ("AW: Hallo", "Bitte abmelden.", ReplyClass.UNSUBSCRIBE_REQUEST),
        ("RE: Hola", "Por favor, quiero darme de baja.", ReplyClass.UNSUBSCRIBE_REQUEST),
        # Unsubscribe beats a "no": someone who asks to be removed is removed.
        ("Re: Hello", "Not interested. Remove me.", ReplyClass.UNSUBSCRIBE_REQUEST),
        ("Re: Hello", "Don't remove me, I'm interested!", ReplyClass.INTERESTED),
        ("Re: Hello", "Please don't unsubscribe me.", ReplyClass.OTHER),
        ("Re: Hello", "Not interested, thanks.", ReplyClass.NOT_INTERESTED),
        ("Re: Hello", "No thanks, we already have a provider.", ReplyClass.NOT_INTERESTED),
        ("Re: Hello", "Je ne suis pas intéressé.", ReplyClass.NOT_INTERESTED),
        ("Re: Hello", "Ça ne m'intéresse pas.", ReplyClass.NOT_INTERESTED),
        ("AW: Hallo", "Nein danke, kein Interesse. Gerne ein anderes Mal.", ReplyClass.NOT_INTERESTED),
        ("RE: Hola", "No me interesa.", ReplyClass.NOT_INTERESTED),
        ("Re: Hello", "You should talk to Jane, she runs ops.", ReplyClass.REFERRAL),
        ("Re: Hello", "I'm not the right person - please reach out to jane@acme.example", ReplyClass.REFERRAL),
        ("Re: Hello", "cc'ing my colleague Jane who handles this.", ReplyClass.REFERRAL),
        ("Re: Hello", "Please contact Jane instead.", ReplyClass.REFERRAL),
        ("Re: Hello", "Je mets ma collègue en copie.", ReplyClass.REFERRAL),
        ("RE: Hola", "No soy la persona adecuada, hable con María.", ReplyClass.REFERRAL),
        ("Re: Hello", "Sounds good, let's talk.", ReplyClass.INTERESTED),
        ("Re: Hello", "How about Tuesday at 10?", ReplyClass.INTERESTED),
        ("Re: Hello", "Send me more info.", ReplyClass.INTERESTED),
        ("Re: Hello", "Très intéressé, on peut en parler ?", ReplyClass.INTERESTED),
        ("AW: Hallo", "Gerne, rufen Sie mich an.", ReplyClass.INTERESTED),
        ("RE: Hola", "Me interesa, hablemos.", ReplyClass.INTERESTED),
        ("Re: Hello", "How much does it cost?", ReplyClass.QUESTION),
        ("AW: Hallo", "Was kostet das", ReplyClass.QUESTION),
        ("RE: Hola", "¿Cuánto cuesta?", ReplyClass.QUESTION),
        ("Re: Hello", "Thanks.", ReplyClass.OTHER),
        ("Re: Hello", "We already spoke last week; happy to chat again.", ReplyClass.INTERESTED),
        ("Re: Hello", "Happy to chat, you can talk to me on Tuesday.", ReplyClass.INTERESTED),
        # Our own "book a call" quoted below the reply, and in the "Re:" subject, is not theirs.
        (
            "Re: Let's book a call",
            "Thanks!\n\nOn Tue, 1 Dec 2026 at 10:00, Sam <sam@acme.example> wrote:\n> Shall we book a call?",
            ReplyClass.OTHER,
        ),
    ],
)
def test_rule_classification(subject: str, text: str, expected: ReplyClass):
    assert classify_by_rules(subject, text) is expected


@pytest.mark.parametrize(
    "text",
    [
        "Sounds good.\n\nOn Tue, 1 Dec 2026 at 10:00, Sam <sam@acme.example> wrote:\n> Hi Ada,\n> a call?",
        # Wrapped by the client over two lines.
        "Sounds good.\n\nOn Tue, 1 Dec 2026 at 10:00, Sam Sender <sam@acme.example>\nwrote:\n> a call?",
        "Sounds good.\n\nLe mar. 1 déc. 2026 à 10:00, Sam <sam@acme.example> a écrit :\n> Bonjour",
        "Sounds good.\n\nAm 01.12.2026 um 10:00 schrieb Sam <sam@acme.example>:\n> Hallo",
        "Sounds good.\n\nEl mar, 1 dic 2026 a las 10:00, Sam (<sam@acme.example>) escribió:\n> Hola",
        "Sounds good.\r\n\r\n________________________________\r\nFrom: Sam <sam@acme.example>\r\n"
        "Sent: Tuesday, December 1, 2026 10:00 AM\r\nTo: Ada\r\nSubject: Hello\r\n\r\nA call?",
        "Sounds good.\n\nDe : Sam <sam@acme.example>\nEnvoyé : mardi 1 décembre 2026 10:00\nObjet : Bonjour\n\nUn appel ?",
        "Sounds good.\n-----Original Message-----\nFrom: Sam\nA call?",
        "Sounds good.\n-- \nAda Lovelace\nCTO, Acme",
    ],
)
def test_new_text_drops_quoted_history_and_signature(text: str):
    assert new_text(text) == "Sounds good."


def test_new_text_keeps_answers_between_quoted_lines():
    assert new_text("> Tuesday?\nYes.\n> And Wednesday?\nNo.") == "Yes.\nNo."


def test_a_reply_that_is_only_quoted_is_kept():
    assert new_text("> only quoted\n> text\n") == "> only quoted\n> text"


def test_snippet_is_one_line_of_new_text_cut_between_words():
    assert snippet("  Sounds\n\ngood,   thanks.\n> quoted") == "Sounds good, thanks."
    cut = snippet("alpha beta gamma delta epsilon", limit=18)
    assert cut == "alpha beta gamma…"
    assert len(snippet("word " * 100, limit=30)) <= 30
    assert snippet("x" * 50, limit=10) == "x" * 9 + "…"


def test_sanitized_html_keeps_formatting_and_drops_what_runs_or_tracks():
    dirty = (
        '<div onclick="steal()"><p>Hi <b>there</b></p><script>alert(1)</script>'
        '<a href="javascript:alert(1)">bad</a> <a href="https://acme.example/x" target="_blank">site</a> '
        '<a href="mailto:ada@acme.example">mail</a><img src="https://track.example/p.gif" width="1">'
        "<style>p { color: red }</style><form><input name=q><button>Go</button></form></div>"
    )
    clean = sanitized_html(dirty)
    for gone in (
        "onclick",
        "script",
        "alert",
        "javascript:",
        "<img",
        "track.example",
        "<style",
        "<form",
        "Go",
        "target",
    ):
        assert gone not in clean
    assert '<a href="https://acme.example/x" rel="noopener noreferrer">site</a>' in clean
    assert 'href="mailto:ada@acme.example"' in clean
    assert "<p>Hi <b>there</b></p>" in clean


def test_plain_text_of_html_keeps_paragraphs():
    html = "<div>Hi &amp;\n  hello<br>there</div><p>Second</p><style>p {}</style>"
    assert plain_text(html) == "Hi & hello\nthere\nSecond"


def test_the_start_up_warm_up_needs_no_host_time_zone():
    autoreply_dates.warm_up()
