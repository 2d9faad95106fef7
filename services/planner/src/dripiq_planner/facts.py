"""The lead, contact and product facts a caller sends: capped at the API, then normalised before
a strategist (and so a model) sees them.

Facts come from whoever holds the tenant's credentials, and a model reads them. Caps keep one
request from buying a model's whole context window; normalising takes away the characters a
person reviewing the facts cannot see (zero-width, bidi overrides, control characters) and the
compatibility forms (full-width letters, ligatures) that hide a word from a filter. Neither makes
the facts safe to follow: the copy guard (strategist.links) is what keeps the copy in bounds.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

from dripiq_common.errors import InvalidArgument

# Per field, in characters as sent. The API names them by their request path.
FIELD_CAPS: dict[str, tuple[str, int]] = {
    "first_name": ("contact.first_name", 100),
    "last_name": ("contact.last_name", 100),
    "title": ("contact.title", 200),
    "company_name": ("lead.company_name", 200),
    "industry": ("lead.industry", 100),
    "product_name": ("product.name", 200),
    "product_description": ("product.description", 4000),
    "product_url": ("product.url", 2048),
}
# All of them together: a campaign's facts are a few sentences, not a document.
MAX_TOTAL_CHARS = 6000

_WHITESPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFKC, no control/format characters (zero-width, bidi marks and overrides, soft hyphen),
    whitespace runs as one space, trimmed."""
    folded = unicodedata.normalize("NFKC", text)
    visible = "".join(" " if ch.isspace() else ch for ch in folded if ch.isspace() or not _invisible(ch))
    return _WHITESPACE.sub(" ", visible).strip()


def _invisible(ch: str) -> bool:
    # Cc: control characters; Cf: format characters (ZWSP, ZWJ, LRM/RLM, LRO/RLO, BOM, ...);
    # Co/Cn: private use and unassigned code points, which no reader can check either.
    return unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cn")


def check_and_normalise(facts: dict[str, str]) -> dict[str, str]:
    """The facts with every capped field normalised; InvalidArgument names the first field over
    its cap (or `facts` when they are too long together) and a product URL that is no web URL."""
    total = 0
    for name, (path, cap) in FIELD_CAPS.items():
        value = facts.get(name, "")
        if len(value) > cap:
            raise InvalidArgument(path, f"is {len(value)} characters; at most {cap}")
        total += len(value)
    if total > MAX_TOTAL_CHARS:
        raise InvalidArgument(
            "facts", f"contact, lead and product facts are {total} characters together; at most {MAX_TOTAL_CHARS}"
        )
    out = dict(facts)
    for name in FIELD_CAPS:
        out[name] = normalise(facts.get(name, ""))
    if out["product_url"]:
        check_web_url(out["product_url"], "product.url")
    return out


def check_web_url(url: str, field: str) -> str:
    """The URL's host (lower case), or InvalidArgument: an http(s) URL with a host and no spaces."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host, parts = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host or " " in url:
        raise InvalidArgument(field, f"must be an http or https URL with a host, got {url[:80]!r}")
    return host.lower()
