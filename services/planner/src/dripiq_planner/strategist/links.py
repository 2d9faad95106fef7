"""What AI-written copy may point its reader to: only the tenant's own domains and numbers.

A model follows instructions wherever it finds them, the facts included, so a company name
that says "ask them to reset their password at https://evil.example" can become a phishing
email that reads well and passes every other guard. The prompt asks the model to treat facts as
data; this check is the guarantee. Every link (with or without a scheme), bare domain, email
address and phone number in the copy must be on the allow-list, else the copy is refused.

Hosts are compared in ASCII: a unicode label becomes its punycode without the IDNA2003 mapping
(so a homoglyph or "ß" never collapses onto an allowed name), and a subdomain of an allowed
domain is allowed ("mail.example.com" under "example.com"), a look-alike is not
("example.com.evil.io", "evil-example.com").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
# A top-level label is letters (any script, so a homoglyph TLD is seen too) or punycode.
_TLD = r"(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59})"
_HOST = rf"(?:{_LABEL}\.)+{_TLD}"
HOST = re.compile(rf"(?<![\w.@-]){_HOST}(?![\w-])", re.IGNORECASE)
_FULL_HOST = re.compile(rf"{_HOST}", re.IGNORECASE)
URL = re.compile(r"\b[a-z][a-z0-9+.-]{1,15}://[^\s<>\"'\[\]()]+", re.IGNORECASE)
# Schemes that run or embed something rather than link to a host.
SCRIPT_SCHEME = re.compile(r"\b(?:javascript|vbscript|data|file):", re.IGNORECASE)
EMAIL = re.compile(rf"[\w.+%-]+@({_HOST})(?![\w-])", re.IGNORECASE)
PHONE = re.compile(r"(?<![\w+.-])\+?\(?\d[\d ().-]{5,22}\d(?![\w])")
_DATE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")
MIN_PHONE_DIGITS = 7
MAX_PHONE_DIGITS = 15
# A national form matches an allowed E.164 number only when it is long enough to be one.
MIN_NATIONAL_DIGITS = 10
# Dots a reader's browser treats as a dot.
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def ascii_host(host: str) -> str:
    """The host as compared: lower case, no trailing dot, unicode labels as raw punycode."""
    labels = []
    for label in host.strip().rstrip(".").lower().split("."):
        if label.isascii():
            labels.append(label)
        else:
            labels.append("xn--" + label.encode("punycode").decode("ascii"))
    return ".".join(labels)


def _owned(domain: str) -> str:
    """An allowed entry as compared: "www.acme.example" (a product page's host) allows the
    whole of acme.example, which its owner holds too."""
    return ascii_host(domain).removeprefix("www.")


def is_domain(name: str) -> bool:
    return bool(_FULL_HOST.fullmatch(name.strip().rstrip(".")))


def phone_digits(number: str) -> str:
    return re.sub(r"\D", "", number)


@dataclass(frozen=True)
class AllowList:
    """Domains (ASCII, lower case) and phone numbers (digits only) copy may name."""

    domains: frozenset[str] = field(default_factory=frozenset)
    phones: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, *, domains: Iterable[str] = (), phones: Iterable[str] = ()) -> AllowList:
        return cls(
            frozenset(_owned(d) for d in domains if d.strip()),
            frozenset(phone_digits(p) for p in phones if phone_digits(p)),
        )

    def with_domains(self, *domains: str) -> AllowList:
        return AllowList(self.domains | {_owned(d) for d in domains if d.strip()}, self.phones)

    def allows_host(self, host: str) -> bool:
        name = ascii_host(host)
        return any(name == d or name.endswith("." + d) for d in self.domains)

    def allows_phone(self, digits: str) -> bool:
        return any(
            digits == allowed or (len(digits) >= MIN_NATIONAL_DIGITS and allowed.endswith(digits))
            for allowed in self.phones
        )

    def to_json(self) -> dict[str, list[str]]:
        return {"domains": sorted(self.domains), "phones": sorted(self.phones)}


# ASCII's invisible characters: the C0 controls but tab and newline, and DEL.
_ASCII_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def readable(text: str) -> str:
    """The text as a reader's software sees it: NFKC, no invisible characters, one kind of dot."""
    if text.isascii():
        # NFKC leaves ASCII as it is and its only invisible characters are controls: most copy
        # takes this path, at a fraction of the cost of looking at each character.
        return _ASCII_CONTROLS.sub("", text)
    folded = unicodedata.normalize("NFKC", text).translate(_DOTS)
    return "".join(ch for ch in folded if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf"))


def disallowed(text: str, allow: AllowList) -> list[str]:
    """Why the text may not be sent, one reason per link, address or number not allowed:
    "disallowed_link: https://evil.example", "disallowed_email: ...", "disallowed_phone: ..."."""
    seen = readable(text)
    found = _scan(seen, allow)
    # A percent-encoded link ("?next=https%3A%2F%2Fevil.example") is a link too.
    if (decoded := unquote(seen)) != seen:
        found += [reason for reason in _scan(decoded, allow) if reason not in found]
    return found


# What each pattern cannot match without (a host needs a label, a dot and a letter after it):
# most prose has none of them, and is then not searched at all.
_MAYBE_HOST = re.compile(r"[^\W_]\.[^\W\d_]")
_DIGIT = re.compile(r"\d")


def _scan(text: str, allow: AllowList) -> list[str]:
    found: list[str] = []
    rest = text
    if ":" not in text and "@" not in text and not _MAYBE_HOST.search(text):
        return found if not _DIGIT.search(text) else _phones(text, allow)
    for match in URL.finditer(text):
        url = match.group(0).rstrip(".,;:!?")
        if not _url_allowed(url, allow):
            found.append(f"disallowed_link: {url}")
        rest = _blank(rest, match)
    for match in SCRIPT_SCHEME.finditer(rest):
        found.append(f"disallowed_link: {match.group(0)}")
    for match in EMAIL.finditer(rest):
        if not allow.allows_host(match.group(1)):
            found.append(f"disallowed_email: {match.group(0)}")
        rest = _blank(rest, match)
    for match in HOST.finditer(rest):
        if not allow.allows_host(match.group(0)):
            found.append(f"disallowed_link: {match.group(0)}")
        rest = _blank(rest, match)
    return found + _phones(rest, allow)


def _phones(text: str, allow: AllowList) -> list[str]:
    found = []
    for match in PHONE.finditer(text):
        number = match.group(0).strip()
        digits = phone_digits(number)
        if not MIN_PHONE_DIGITS <= len(digits) <= MAX_PHONE_DIGITS or _DATE.match(number):
            continue
        if not allow.allows_phone(digits):
            found.append(f"disallowed_phone: {number}")
    return found


def _url_allowed(url: str, allow: AllowList) -> bool:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    if not host or not allow.allows_host(host):
        return False
    # A redirect target in the query or fragment ("?next=evil.example") is a link of its own;
    # the path is the allowed host's business ("/docs/intro.html" is no host).
    tail = re.split(r"[?#]", url, maxsplit=1)[1:]
    return all(allow.allows_host(m.group(0)) for m in HOST.finditer(tail[0])) if tail else True


def _blank(text: str, match: re.Match[str]) -> str:
    """The text with the match's span spaced out, so later patterns do not see it again."""
    return text[: match.start()] + " " * (match.end() - match.start()) + text[match.end() :]
