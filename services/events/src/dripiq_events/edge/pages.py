"""The pages a person sees at an unsubscribe link: plain HTML, no script, strict headers."""

from __future__ import annotations

import html

from aiohttp import web

from dripiq_common.tokens import TokenProblem

OTHER_WAY = "To stop these emails, reply to one of them and ask to be removed."


def refused_link(problem: TokenProblem) -> web.Response:
    """The page for an unsubscribe link we refuse, saying why."""
    if problem == TokenProblem.UNKNOWN_KEY:
        return page(
            403,
            "Link expired",
            "This unsubscribe link is no longer accepted: the key it was signed with has been retired "
            f"(or the link was damaged). Use the link in a more recent email from us. {OTHER_WAY}",
        )
    why = {
        TokenProblem.MALFORMED: "it is incomplete or altered",
        TokenProblem.BAD_SIGNATURE: "its signature does not match",
    }.get(problem, str(problem))
    return page(
        400,
        "Link not valid",
        f"This unsubscribe link is not valid or has been damaged: {why}. Copy the whole link from the "
        f"email, or open it from there again. {OTHER_WAY}",
    )


_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def page(status: int, title: str, message: str, *, form: str = "") -> web.Response:
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}"
        "button{font-size:1rem;padding:.5rem 1.25rem}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>{form}</body></html>"
    )
    return web.Response(status=status, text=page, content_type="text/html", headers=_SECURITY_HEADERS)
