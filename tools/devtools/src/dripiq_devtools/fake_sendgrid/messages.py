"""An accepted Mail Send request as the fake keeps it: its recipients, merged custom args and
headers, and whether SendGrid could report an open or a click for it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dripiq_devtools.fake_sendgrid.tracking import TrackedLink, html_tracked_urls, text_urls
from dripiq_devtools.fake_sendgrid.validation import RECIPIENT_KINDS


def new_message_id() -> str:
    """SendGrid's X-Message-Id: 22 characters of base64url (16 random bytes, unpadded)."""
    return secrets.token_urlsafe(16)[:22]


@dataclass(frozen=True, slots=True)
class AcceptedMessage:
    """One Mail Send request the fake answered 202 to, as the sender would want to assert on it.

    The account's tracking settings are those in force when it was sent: they apply wherever
    the request's tracking_settings say nothing.
    """

    x_message_id: str
    payload: dict[str, Any]
    received_at: datetime
    account_open_tracking: bool = False
    account_click_tracking: bool = False
    # The username of the account (or subuser) that sent it.
    account: str = ""

    @property
    def personalizations(self) -> list[dict[str, Any]]:
        return list(self.payload.get("personalizations") or [])

    @property
    def to_emails(self) -> list[str]:
        return [a["email"] for p in self.personalizations for a in p.get("to") or []]

    @property
    def recipient_emails(self) -> list[str]:
        """Everyone SendGrid delivers a copy to: to, cc and bcc of every personalization."""
        return [a["email"] for p in self.personalizations for kind in RECIPIENT_KINDS for a in p.get(kind) or []]

    @property
    def from_email(self) -> str:
        return str(self.payload["from"]["email"])

    @property
    def subject(self) -> str | None:
        """The first personalization's subject, which overrides the top-level one as in SendGrid."""
        first = self.personalizations[0] if self.personalizations else {}
        return first.get("subject") or self.payload.get("subject")

    @property
    def custom_args(self) -> dict[str, str]:
        """Top-level custom_args overlaid with the first personalization's, as SendGrid merges."""
        return self._merged("custom_args", self._personalization_for(None))

    @property
    def headers(self) -> dict[str, str]:
        return self._merged("headers", self._personalization_for(None))

    @property
    def reply_to(self) -> str | None:
        reply_to = self.payload.get("reply_to")
        if isinstance(reply_to, dict):
            return reply_to.get("email")
        reply_to_list = self.payload.get("reply_to_list") or []
        return reply_to_list[0].get("email") if reply_to_list else None

    @property
    def categories(self) -> list[str]:
        return list(self.payload.get("categories") or [])

    def custom_args_for(self, email: str | None) -> dict[str, str]:
        """Custom args as SendGrid attaches them to the events of one recipient."""
        return self._merged("custom_args", self._personalization_for(email))

    def open_untracked_reason(self) -> str | None:
        """Why SendGrid could not report an open of this message, or None when it could."""
        html = self._content("text/html")
        if html is None:
            return "it has no text/html part, which is where SendGrid puts its open-tracking pixel"
        if not self._tracking_on("open_tracking", self.account_open_tracking):
            return self._tracking_off_reason("open_tracking")
        tag = self._tracking_setting("open_tracking").get("substitution_tag")
        if tag and tag not in html:
            return f"its text/html part lacks the open_tracking substitution_tag {tag!r}, which the pixel replaces"
        return None

    def click_untracked_reason(self) -> str | None:
        """Why SendGrid could not report a click in this message, or None when it could."""
        if self.tracked_links():
            return None
        if not self._tracking_on("click_tracking", self.account_click_tracking):
            return self._tracking_off_reason("click_tracking")
        if self._text_clicks_tracked():
            return "it has no http(s) link SendGrid rewrites, in its text/html or its text/plain part"
        return (
            "it has no <a href> to an http(s) URL without clicktracking=off in a text/html part "
            "(URLs in the text/plain part count only with click_tracking.enable_text)"
        )

    def tracked_links(self) -> list[TrackedLink]:
        """The links SendGrid rewrites for click tracking, html part first, in document order.

        In the text/html part: every `<a href="http(s)://...">` except those marked
        `clicktracking=off`; in the text/plain part, only with click_tracking.enable_text: every
        http(s) URL.
        """
        if not self._tracking_on("click_tracking", self.account_click_tracking):
            return []
        html, text = self._content("text/html"), self._content("text/plain")
        links = [TrackedLink(url, "html", i) for i, url in enumerate(html_tracked_urls(html or ""))]
        if self._text_clicks_tracked():
            links += [TrackedLink(url, "text", i) for i, url in enumerate(text_urls(text or ""))]
        return links

    def _content(self, mime_type: str) -> str | None:
        for block in self.payload.get("content") or []:
            if str(block.get("type", "")).lower() == mime_type:
                return str(block.get("value", ""))
        return None

    def _tracking_setting(self, name: str) -> dict[str, Any]:
        return (self.payload.get("tracking_settings") or {}).get(name) or {}

    def _tracking_on(self, name: str, account_default: bool) -> bool:
        enable = self._tracking_setting(name).get("enable")
        return account_default if enable is None else enable is True

    def _text_clicks_tracked(self) -> bool:
        return self._tracking_setting("click_tracking").get("enable_text") is True

    def _tracking_off_reason(self, name: str) -> str:
        if self._tracking_setting(name).get("enable") is False:
            return f"the request turns it off (tracking_settings.{name}.enable is false)"
        return f"the request leaves {name} to the account, where it is off"

    def _personalization_for(self, email: str | None) -> dict[str, Any]:
        for personalization in self.personalizations:
            if email is not None and email.lower() in _recipients(personalization):
                return personalization
        return self.personalizations[0] if self.personalizations else {}

    def _merged(self, key: str, personalization: dict[str, Any]) -> dict[str, str]:
        return {**(self.payload.get(key) or {}), **(personalization.get(key) or {})}

    def to_json(self) -> dict[str, Any]:
        return {
            "x_message_id": self.x_message_id,
            "account": self.account,
            "received_at": self.received_at.isoformat(),
            "to_emails": self.to_emails,
            "from_email": self.from_email,
            "subject": self.subject,
            "custom_args": self.custom_args,
            "headers": self.headers,
            "reply_to": self.reply_to,
            "categories": self.categories,
            "open_untracked_reason": self.open_untracked_reason(),
            "tracked_links": [link.to_json() for link in self.tracked_links()],
            "payload": self.payload,
        }


def _recipients(personalization: dict[str, Any]) -> set[str]:
    return {
        str(address.get("email", "")).lower() for kind in RECIPIENT_KINDS for address in personalization.get(kind) or []
    }
