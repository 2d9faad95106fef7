"""Click tracking: which links SendGrid rewrites in a message's html and text parts, and where
each sits, as a click event reports it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class TrackedLink:
    """A link SendGrid rewrote for click tracking; a click on it reports where it sits."""

    url: str
    part: Literal["html", "text"]
    # Its position among the tracked links of its part, as the event's url_offset.index.
    index: int

    @property
    def url_offset(self) -> dict[str, Any]:
        return {"index": self.index, "type": self.part}

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "url_offset": self.url_offset}


_HTTP_URL = re.compile(r"^https?://\S", re.IGNORECASE)
_TEXT_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
# Punctuation that ends a sentence around a URL in plain text rather than belonging to it.
_TRAILING_PUNCTUATION = ".,;:!?)]}"


class _TrackedAnchors(HTMLParser):
    """Collects the href of each anchor SendGrid's click tracking rewrites, in document order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a":
            return
        attributes = {name: (value or "") for name, value in attrs}
        href = attributes.get("href", "").strip()
        if _HTTP_URL.match(href) and attributes.get("clicktracking", "").lower() != "off":
            self.urls.append(href)


def html_tracked_urls(html: str) -> list[str]:
    parser = _TrackedAnchors()
    parser.feed(html)
    parser.close()
    return parser.urls


def text_urls(text: str) -> list[str]:
    return [match.group().rstrip(_TRAILING_PUNCTUATION) for match in _TEXT_URL.finditer(text)]
