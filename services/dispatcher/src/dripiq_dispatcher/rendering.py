"""An email's two parts: the text the planner wrote, and safe HTML rendered from it.

SendGrid can report opens only through a pixel in a text/html part and clicks only through
links it rewrites there, so every email is multipart/alternative. The step's content is
Markdown-ish plain text (AI-written or explicit): CommonMark with tables and strikethrough
renders it (markdown-it, in Rust: about 15 microseconds a message, and no memory kept after
it; cmark-gfm's Python binding leaked each document's tree), with bare URLs made links and
line breaks kept; ammonia (nh3) then keeps only what a mail client should show. Raw HTML in
the content is shown as text, never interpreted: the parser has no HTML rules enabled.
Explicit HTML from the caller goes through the same cleaner.

The footer (postal address and unsubscribe link) is added after cleaning, because its link
carries SendGrid's `clicktracking="off"`: an unsubscribe must not pass through a redirect.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import nh3
from markdown_it_pyrs import MarkdownIt

# CommonMark without its raw-HTML rules (html_block, html_inline), plus bare-URL links.
_MARKDOWN = MarkdownIt("zero").enable_many(
    [
        "blockquote",
        "code",
        "fence",
        "heading",
        "hr",
        "lheading",
        "list",
        "paragraph",
        "reference",
        "autolink",
        "backticks",
        "emphasis",
        "entity",
        "escape",
        "image",
        "link",
        "newline",
        "linkify",
        "strikethrough",
        "table",
    ]  # fmt: skip
)
# A line break the writer typed is kept: two trailing spaces make it a hard break (CommonMark
# ignores one at the end of a block, so lists, headings and paragraph ends are unchanged).
_LINE_BREAK = re.compile(r"(?<=\S)[ \t]*\n(?=[ \t]*\S)")
_CLEANER = nh3.Cleaner(
    tags={
        "a",
        "b",
        "blockquote",
        "br",
        "code",
        "del",
        "div",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "hr",
        "i",
        "li",
        "ol",
        "p",
        "pre",
        "s",
        "span",
        "strong",
        "table",
        "tbody",
        "td",
        "th",
        "thead",
        "tr",
        "u",
        "ul",
    },  # fmt: skip
    attributes={"a": {"href", "title"}, "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan"}},
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer",
)
_TEXT_ONLY = nh3.Cleaner(tags=set(), clean_content_tags={"script", "style", "head", "title"})
_BLOCK_END = re.compile(r"<br\s*/?>|</(?:p|div|li|h[1-6]|tr|blockquote)\s*>", re.IGNORECASE)
_BLANK_LINES = re.compile(r"\n{3,}")
_DOCUMENT = (
    '<!DOCTYPE html><html><head><meta charset="utf-8"></head>'
    '<body style="font-family:Arial,Helvetica,sans-serif;font-size:14px;line-height:1.5">{body}{footer}</body></html>'
)


@dataclass(frozen=True)
class Footer:
    unsubscribe_url: str
    postal_address: str = ""


def html_body(text: str) -> str:
    """The content rendered as cleaned HTML; '<' is kept as a character, never as a tag."""
    return _CLEANER.clean(_MARKDOWN.render(_LINE_BREAK.sub("  \n", text)))


def clean_html(markup: str) -> str:
    """HTML given by the caller, with scripts, handlers, styles and foreign schemes removed."""
    return _CLEANER.clean(markup)


def plain_text(markup: str) -> str:
    """A readable text part for a caller that gave only HTML: its text, a line per block."""
    text = html.unescape(_TEXT_ONLY.clean(_BLOCK_END.sub("\n", markup)))
    return _BLANK_LINES.sub("\n\n", "\n".join(line.strip() for line in text.splitlines())).strip()


def text_part(text: str, footer: Footer) -> str:
    lines = [text.rstrip(), "", "--"]
    if footer.postal_address:
        lines.append(footer.postal_address.strip())
    lines.append(f"Unsubscribe: {footer.unsubscribe_url}")
    return "\n".join(lines) + "\n"


def html_part(body: str, footer: Footer) -> str:
    """A whole document: SendGrid puts its open pixel before </body>."""
    address = "<br>".join(html.escape(line.strip()) for line in footer.postal_address.strip().splitlines())
    href = html.escape(footer.unsubscribe_url, quote=True)
    parts = [f"{address}<br>" if address else "", f'<a clicktracking="off" href="{href}">Unsubscribe</a>']
    block = f'<p style="margin-top:24px;font-size:12px;color:#888">{"".join(parts)}</p>'
    return _DOCUMENT.format(body=body, footer=block)


def document(body: str) -> str:
    """A whole HTML document around `body`, without a footer (mail to our own users)."""
    return _DOCUMENT.format(body=body, footer="")


def quote_text(text: str) -> str:
    """Text quoted the way mail clients quote: each line prefixed with "> " (">" when blank)."""
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.strip("\n").splitlines())


def text_as_html(text: str) -> str:
    """Plain text shown as written in HTML: escaped, its line breaks kept, nothing interpreted."""
    return "<br>\n".join(html.escape(line) for line in text.strip("\n").splitlines())
