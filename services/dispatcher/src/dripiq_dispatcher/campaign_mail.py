"""The Mail Send body of a campaign email, and what may stop it going out: the sender
identity, the tenant's postal address. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dripiq_common import tokens
from dripiq_common.tokens import TokenSigner
from dripiq_dispatcher import rendering
from dripiq_dispatcher.domain import EMAIL, NewMessage, is_task


@dataclass(frozen=True)
class Identity:
    id: str
    from_email: str
    from_name: str
    verified: bool
    # The SendGrid account it sends through (accounts.py); empty: the default one.
    provider_config_id: str = ""
    per_minute: int = 0
    per_day: int = 0
    # Where replies to its emails are forwarded; empty: the tenant's catch-all.
    forward_to: str = ""


def sendable_identity(identity: Identity | None, sender_identity_id: str) -> Identity | str:
    """The identity when it may send, else why it may not."""
    if identity is None:
        return f"sender identity {sender_identity_id!r} does not exist for this tenant"
    if not identity.verified:
        return f"sender identity {identity.id!r} ({identity.from_email}) is not verified"
    return identity


@dataclass(frozen=True)
class MailSettings:
    reply_domain: str
    message_id_domain: str
    unsubscribe_base_url: str
    # SendGrid rewrites links in the text part too (they then look like tracking links).
    click_tracking_text: bool = False
    # CAN-SPAM: mail to the real SendGrid must carry the sender's postal address.
    require_postal_address: bool = False


def unsubscribe_url(signer: TokenSigner, settings: MailSettings, message: NewMessage) -> str:
    return settings.unsubscribe_base_url + signer.unsubscribe_token(message.tenant_id, message.message_id)


def mail_problem(message: NewMessage, settings: MailSettings) -> str | None:
    """Why this email may not go out through this dispatcher's SendGrid, or None."""
    if settings.require_postal_address and not message.postal_address and not is_task(message):
        return (
            "the tenant has no postal address, which every commercial email must carry (CAN-SPAM): "
            "set it with CampaignService/UpdateTenantSettings (postal_address)"
        )
    return None


def opens_untracked_reason(message: NewMessage | Any) -> str:
    """Why SendGrid cannot report this message's opens; empty when it can (every email has HTML)."""
    if message.channel != EMAIL:
        return f"a {message.channel} task has no opens"
    return "" if message.track_opens else "open tracking is off for this tenant"


def clicks_untracked_reason(message: NewMessage | Any) -> str:
    if message.channel != EMAIL:
        return f"a {message.channel} task has no clicks"
    return "" if message.track_clicks else "click tracking is off for this tenant"


def address(email: str, name: str) -> dict[str, str]:
    return {"email": email, "name": name} if name else {"email": email}


def build_mail(
    message: NewMessage, identity: Identity, *, signer: TokenSigner, settings: MailSettings
) -> dict[str, Any]:
    """The Mail Send body: multipart/alternative with tracking set explicitly. Every tracking
    key rides along so webhooks find their message: custom_args for SendGrid's events (on the
    personalization, where SendGrid's published schema types them as an object), our
    Message-ID and reply-to token for replies."""
    url = unsubscribe_url(signer, settings, message)
    footer = rendering.Footer(unsubscribe_url=url, postal_address=message.postal_address)
    text = message.body_text or rendering.plain_text(message.body_html)
    body = rendering.clean_html(message.body_html) if message.body_html else rendering.html_body(message.body_text)
    headers = {
        "Message-ID": rfc_message_id(message, settings),
        "List-Unsubscribe": f"<{url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    if message.thread_message_ids:
        thread = [tokens.rfc_message_id(m, settings.message_id_domain) for m in message.thread_message_ids]
        headers["In-Reply-To"] = thread[-1]
        headers["References"] = " ".join(thread)
    mail: dict[str, Any] = {
        "personalizations": [
            {
                "to": [address(message.to_email, message.to_name)],
                "custom_args": {
                    "tenant_id": message.tenant_id,
                    "campaign_id": message.campaign_id,
                    "step_index": str(message.step_index),
                    "message_id": message.message_id,
                },
            }
        ],
        "from": address(identity.from_email, identity.from_name),
        # Named like the sender, so replies look addressed to them.
        "reply_to": address(
            tokens.reply_address(signer, message.message_id, settings.reply_domain), identity.from_name
        ),
        "subject": message.subject,
        "content": [
            {"type": "text/plain", "value": rendering.text_part(text, footer)},
            {"type": "text/html", "value": rendering.html_part(body, footer)},
        ],
        "headers": headers,
        "tracking_settings": {
            "open_tracking": {"enable": message.track_opens},
            "click_tracking": {
                "enable": message.track_clicks,
                "enable_text": message.track_clicks and settings.click_tracking_text,
            },
            # Unsubscribes are ours (List-Unsubscribe, the footer link): SendGrid adds no link of its own.
            "subscription_tracking": {"enable": False},
        },
    }
    if message.categories:
        mail["categories"] = list(message.categories)
    return mail


def rfc_message_id(message: NewMessage, settings: MailSettings) -> str:
    return tokens.rfc_message_id(message.message_id, settings.message_id_domain)
