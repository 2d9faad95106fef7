"""The words a reply's author wrote, and its HTML made safe to show: no I/O.

Replies carry the whole thread below them and often a signature; what a person says is the part
above. Rules here read that part only, so that our own words quoted back never count as theirs.
"""

from __future__ import annotations

import html as html_entities
import re

import nh3

_ATTRIBUTIONS = (
    # Gmail, Apple Mail, Thunderbird: "On Tue, 1 Dec 2026 at 10:00, Sam <sam@acme.example> wrote:"
    re.compile(r"^\s*On\s.{4,300}?\swrote\s*:\s*$", re.IGNORECASE),
    re.compile(r"^\s*Le\s.{4,300}?\sa\s+écrit\s*:\s*$", re.IGNORECASE),
    re.compile(r"^\s*Am\s.{4,300}?\sschrieb\b.{0,200}:\s*$", re.IGNORECASE),
    re.compile(r"^\s*El\s.{4,300}?\sescribió\s*:\s*$", re.IGNORECASE),
)
# A client wraps a long attribution, so its first word may start a line that does not end it.
_ATTRIBUTION_START = re.compile(r"^\s*(?:On|Le|Am|El)\s", re.IGNORECASE)
_ORIGINAL_MESSAGE = re.compile(
    r"^\s*-{2,}\s*(?:Original Message|Message d['’]origine|Ursprüngliche Nachricht|Mensaje original)\s*-{2,}\s*$",
    re.IGNORECASE,
)
# Outlook's "________________________________" above its header block.
_UNDERSCORE_RULE = re.compile(r"^\s*_{10,}\s*$")
_OUTLOOK_FROM = re.compile(r"^\s*\*?(?:From|De|Von)\s*:", re.IGNORECASE)
_OUTLOOK_SENT = re.compile(r"^\s*\*?(?:Sent|Date|Envoyé|Gesendet|Datum|Enviado|Fecha)\s*:", re.IGNORECASE)
# The same block flattened onto one line by some HTML-to-text conversions.
_OUTLOOK_ONE_LINE = re.compile(
    r"^\s*\*?(?:From|De|Von)\s*:.{1,300}?\s\*?(?:Sent|Envoyé|Gesendet|Enviado)\s*:", re.IGNORECASE
)
# RFC 3676 says "-- " with the space; many clients trim trailing spaces, so "--" counts too.
_SIGNATURE = re.compile(r"^-- ?$")
_ELLIPSIS = "…"

_BLOCK_END = re.compile(r"<\s*(?:br\s*/?|/\s*(?:p|div|li|tr|h[1-6]|blockquote|table|ul|ol))\s*>", re.IGNORECASE)
_SHOWN_TAGS = {
    *("p", "br", "div", "span", "b", "strong", "i", "em", "u"),
    *("ul", "ol", "li", "blockquote", "a"),
    *("table", "thead", "tbody", "tr", "td", "th"),
}
# Removed with everything inside them: their text is code, styling or controls, never prose.
_DROPPED_WITH_CONTENT = {
    *("script", "style", "title", "head", "noscript", "template"),
    *("form", "textarea", "select", "button", "iframe", "object", "embed", "svg", "math"),
}
# No <img> at all: a remote source is a tracking pixel that tells the sender when the
# salesperson read the reply, and an inline (cid:) image cannot be shown without its part.
_CLEANER = nh3.Cleaner(
    tags=_SHOWN_TAGS,
    clean_content_tags=_DROPPED_WITH_CONTENT,
    attributes={"a": {"href", "title"}, "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan"}},
    url_schemes={"http", "https", "mailto"},
    # A relative link in a mail points nowhere we know; it would resolve against our own site.
    url_relative="deny",
    link_rel="noopener noreferrer",
    strip_comments=True,
)
_TEXT_ONLY = nh3.Cleaner(tags=set(), clean_content_tags=_DROPPED_WITH_CONTENT, attributes={})


def new_text(text: str) -> str:
    """What the reply's author wrote: no quoted history, no signature. The whole text when
    nothing else is left, since a reply that is only quoted is still what they sent."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    for index, line in enumerate(lines):
        if _ends_new_text(lines, index):
            break
        if not line.lstrip().startswith(">"):
            kept.append(line.rstrip())
    written = "\n".join(kept).strip()
    return written or text.strip()


def snippet(text: str, limit: int = 200) -> str:
    """The new text on one line of at most limit characters, cut between words with "…"."""
    flat = " ".join(new_text(text).split())
    if len(flat) <= limit:
        return flat
    room = flat[: max(limit - len(_ELLIPSIS), 0)]
    ends_between_words = flat[len(room)] == " "
    cut = room if ends_between_words or " " not in room else room.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-–") + _ELLIPSIS


def sanitized_html(html: str) -> str:
    """The reply's HTML with only plain formatting and http(s)/mailto links left."""
    return _CLEANER.clean(html)


def plain_text(html: str) -> str:
    """The text of an HTML-only reply, a line per paragraph, for the rules that read text."""
    flowed = _BLOCK_END.sub("\n", " ".join(html.split()))
    text = html_entities.unescape(_TEXT_ONLY.clean(flowed))
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _ends_new_text(lines: list[str], index: int) -> bool:
    line = lines[index]
    if _SIGNATURE.match(line) or _ORIGINAL_MESSAGE.match(line) or _UNDERSCORE_RULE.match(line):
        return True
    if any(pattern.match(line) for pattern in _ATTRIBUTIONS):
        return True
    following = lines[index + 1] if index + 1 < len(lines) else ""
    if _ATTRIBUTION_START.match(line) and following.strip():
        joined = f"{line.rstrip()} {following.strip()}"
        if any(pattern.match(joined) for pattern in _ATTRIBUTIONS):
            return True
    if _OUTLOOK_ONE_LINE.match(line):
        return True
    return bool(_OUTLOOK_FROM.match(line)) and any(
        _OUTLOOK_SENT.match(next_line) for next_line in lines[index + 1 : index + 4]
    )
