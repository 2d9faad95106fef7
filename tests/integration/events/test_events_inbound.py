"""Inbound Parse replies and one-click unsubscribes on real PostgreSQL."""

from __future__ import annotations

import json

import pytest
from events_helpers import (
    MAIL_DOMAIN,
    T0,
    events_of,
    forward_commands,
    multipart,
    outboxed,
    outcome,
    raw_webhook,
    suppress_commands,
)
from sqlalchemy import select

from dripiq.events.v1 import messages_pb2
from dripiq_common.bus.contract import Subjects
from dripiq_common.errors import PermanentMessageError
from dripiq_common.tokens import reply_address
from dripiq_events.models import inbound_emails
from dripiq_events.replies import AwaitingOutcome

INBOUND = messages_pb2.RawWebhook.KIND_SENDGRID_INBOUND
UNSUBSCRIBE = messages_pb2.RawWebhook.KIND_UNSUBSCRIBE


def inbound_post(*, to: str, headers: str = "", subject: str = "Re: Hello", text: str = "Sounds good") -> bytes:
    body, content_type = multipart(
        {
            "headers": (f"From: Ada <ada@example.com>\r\nTo: {to}\r\nSubject: {subject}\r\n" + headers).encode(),
            "from": b"Ada <ada@example.com>",
            "to": to.encode(),
            "subject": subject.encode(),
            "text": text.encode("iso-8859-1"),
            "envelope": json.dumps({"to": [to], "from": "ada@example.com"}).encode(),
            "charsets": b'{"text": "iso-8859-1", "subject": "UTF-8"}',
        }
    )
    return raw_webhook(INBOUND, body=body, content_type=content_type)


async def stored_mail(engine, tenant_id: str):  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return (await conn.execute(select(inbound_emails).where(inbound_emails.c.tenant_id == tenant_id))).all()


async def test_reply_to_a_token_address_is_a_reply_engagement(engine, ingest, send, signer, tenant_id):
    sent = await send(tenant_id)
    post = inbound_post(to=reply_address(signer, sent.message_id, MAIL_DOMAIN), text="Très bien")
    result = await ingest.handle_webhook(post)
    assert (result.stored, result.published) == (1, 1)
    (fact,) = await outboxed(engine, tenant_id, "reply")
    assert (fact.message_id, fact.campaign_id, fact.step_index, fact.contact_id) == (
        sent.message_id,
        "camp-1",
        2,
        "contact-1",
    )
    (mail,) = await stored_mail(engine, tenant_id)
    assert (mail.matched, mail.is_auto_reply, mail.message_id, mail.from_email) == (
        True,
        False,
        sent.message_id,
        "ada@example.com",
    )
    assert mail.text_body == "Très bien"
    assert ["Subject", "Re: Hello"] in mail.headers
    (event,) = await events_of(engine, tenant_id=tenant_id, event_type="reply")
    assert (event.provider, event.occurred_at) == ("sendgrid-inbound", T0)

    # SendGrid retrying the same post stores and publishes nothing more.
    assert (await ingest.handle_webhook(post)).stored == 0
    assert len(await outboxed(engine, tenant_id, "reply")) == 1


async def test_a_reply_before_its_sent_outcome_waits_for_it(engine, ingest, send, signer, tenant_id):
    sent = await send(tenant_id, recorded=False)
    post = inbound_post(to=reply_address(signer, sent.message_id, MAIL_DOMAIN))

    with pytest.raises(AwaitingOutcome):
        await ingest.handle_webhook(post, last_attempt=False)
    assert await stored_mail(engine, tenant_id) == []

    # The SENT outcome arrives; the redelivered reply is matched and published.
    assert await ingest.record_outcome(outcome(sent))
    assert (await ingest.handle_webhook(post, last_attempt=False)).published == 1
    (fact,) = await outboxed(engine, tenant_id, "reply")
    assert fact.message_id == sent.message_id


async def test_a_reply_whose_outcome_never_comes_is_kept_unmatched_on_the_last_attempt(
    engine, ingest, send, signer, tenant_id
):
    sent = await send(tenant_id, recorded=False)
    post = inbound_post(to=reply_address(signer, sent.message_id, MAIL_DOMAIN))
    result = await ingest.handle_webhook(post, last_attempt=True)
    assert (result.stored, result.unmatched, result.published) == (1, 1, 0)

    # Its signed address still names the message: the dispatcher, which knows whose message it
    # is, forwards it to a person. The command names no tenant; nothing is published by tenant.
    [command] = [
        c
        for c in await forward_commands(engine, Subjects.DISPATCHER_FORWARD_BY_MESSAGE)
        if c.message_id == sent.message_id
    ]
    assert (command.tenant_id, command.campaign_id, command.from_email, command.text) == (
        "",
        "",
        "ada@example.com",
        "Sounds good",
    )
    async with engine.connect() as conn:
        (mail,) = (
            await conn.execute(select(inbound_emails).where(inbound_emails.c.message_id == sent.message_id))
        ).all()
    assert (mail.matched, command.inbound_id) == (False, str(mail.id))
    assert await forward_commands(engine, Subjects.dispatcher_forward(tenant_id)) == []


async def test_a_persons_reply_is_forwarded_and_an_automatic_one_is_not(engine, ingest, send, signer, tenant_id):
    human, automatic = await send(tenant_id), await send(tenant_id)
    await ingest.handle_webhook(inbound_post(to=reply_address(signer, human.message_id, MAIL_DOMAIN)))
    await ingest.handle_webhook(
        inbound_post(
            to=reply_address(signer, automatic.message_id, MAIL_DOMAIN),
            subject="Automatic reply: Hello",
            headers="Auto-Submitted: auto-replied\r\n",
        )
    )

    [command] = await forward_commands(engine, Subjects.dispatcher_forward(tenant_id))
    (mail,) = [m for m in await stored_mail(engine, tenant_id) if not m.is_auto_reply]
    assert (command.tenant_id, command.message_id, command.campaign_id, command.inbound_id) == (
        tenant_id,
        human.message_id,
        "camp-1",
        str(mail.id),
    )
    assert (command.subject, command.text, command.reply_class) == ("Re: Hello", "Sounds good", mail.classification)


async def test_reply_threaded_by_in_reply_to(engine, ingest, send, tenant_id):
    sent = await send(tenant_id)
    post = inbound_post(
        to="sales@dripiq.test",
        headers=f"In-Reply-To: {sent.rfc_message_id}\r\nReferences: <older@elsewhere> {sent.rfc_message_id}\r\n",
    )
    assert (await ingest.handle_webhook(post)).published == 1
    (fact,) = await outboxed(engine, tenant_id, "reply")
    assert fact.message_id == sent.message_id


async def test_out_of_office_is_an_auto_reply(engine, ingest, send, signer, tenant_id):
    sent = await send(tenant_id)
    post = inbound_post(
        to=reply_address(signer, sent.message_id, MAIL_DOMAIN),
        subject="Automatic reply: Hello",
        headers="Auto-Submitted: auto-replied\r\n",
    )
    await ingest.handle_webhook(post)
    assert await outboxed(engine, tenant_id, "reply") == []
    (fact,) = await outboxed(engine, tenant_id, "auto_reply")
    assert fact.reason == "auto-submitted: auto-replied"
    (mail,) = await stored_mail(engine, tenant_id)
    assert mail.is_auto_reply


async def test_raw_mode_mail_is_parsed_from_its_mime_message(engine, ingest, send, tenant_id):
    sent = await send(tenant_id)
    mime = (
        f"From: Ada <ada@example.com>\r\nTo: sales@dripiq.test\r\nSubject: Re: Hello\r\n"
        f"In-Reply-To: {sent.rfc_message_id}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYes please\r\n"
    ).encode()
    body, content_type = multipart({"email": mime, "to": b"sales@dripiq.test"})
    await ingest.handle_webhook(raw_webhook(INBOUND, body=body, content_type=content_type))
    (mail,) = await stored_mail(engine, tenant_id)
    assert (mail.subject, mail.text_body.strip(), mail.from_email) == ("Re: Hello", "Yes please", "ada@example.com")


async def test_unmatched_mail_is_kept_without_an_event(engine, ingest, signer):
    forged = reply_address(signer, "00000000-0000-4000-8000-000000000000", MAIL_DOMAIN).replace("reply+", "reply+x")
    post = inbound_post(to=forged, headers="In-Reply-To: <nobody@nowhere.test>\r\n", subject="Who is this?")
    result = await ingest.handle_webhook(post)
    assert (result.stored, result.unmatched, result.published) == (1, 1, 0)
    async with engine.connect() as conn:
        (mail,) = (await conn.execute(select(inbound_emails).where(inbound_emails.c.to_email == forged))).all()
    assert (mail.matched, mail.tenant_id, mail.message_id) == (False, None, None)
    # No valid signed address, no known thread: nobody's to forward.
    assert not [
        c for c in await forward_commands(engine, Subjects.DISPATCHER_FORWARD_BY_MESSAGE) if c.subject == "Who is this?"
    ]
    with pytest.raises(PermanentMessageError):
        await ingest.handle_webhook(raw_webhook(INBOUND, body=b"junk", content_type="text/plain"))


async def test_unsubscribe_is_stored_once_with_the_address(engine, ingest, send, tenant_id):
    sent = await send(tenant_id)
    click = raw_webhook(UNSUBSCRIBE, tenant_id=tenant_id, message_id=sent.message_id)
    assert (await ingest.handle_webhook(click)).published == 1
    assert (await ingest.handle_webhook(click)).published == 0
    (fact,) = await outboxed(engine, tenant_id, "unsubscribe")
    assert (fact.message_id, fact.email, fact.contact_id) == (sent.message_id, "ada@example.com", "contact-1")
    (event,) = await events_of(engine, tenant_id=tenant_id, event_type="unsubscribe")
    assert (event.provider, event.provider_event_id) == ("dripiq", f"unsub:{sent.message_id}")
    # The fact names the address: the dispatcher suppresses it from there, nothing else is asked.
    assert await suppress_commands(engine, tenant_id) == []


@pytest.mark.parametrize("why", ["never recorded", "another tenant's"])
async def test_unsubscribe_without_our_copy_asks_the_dispatcher_to_suppress(engine, ingest, send, tenant_id, why):
    """Past retention, or before the SENT outcome came: the signed link still proves tenant and
    message, and the dispatcher, which keeps every message, finds the address."""
    if why == "never recorded":
        sent = await send(tenant_id, recorded=False)
        tenant = tenant_id
    else:
        # A copy under another tenant is no copy of this tenant's message.
        sent = await send(tenant_id)
        tenant = f"{tenant_id}-x"
    click = raw_webhook(UNSUBSCRIBE, tenant_id=tenant, message_id=sent.message_id)
    assert (await ingest.handle_webhook(click)).published == 2
    assert (await ingest.handle_webhook(click)).published == 0
    (command,) = await suppress_commands(engine, tenant)
    assert (command.tenant_id, command.message_id, command.reason) == (tenant, sent.message_id, "unsubscribe")
    assert command.occurred_at.ToDatetime(tzinfo=T0.tzinfo) == T0
    (fact,) = await outboxed(engine, tenant, "unsubscribe")
    assert (fact.message_id, fact.email) == (sent.message_id, "")


async def test_unsubscribe_fields_are_validated(ingest):
    with pytest.raises(PermanentMessageError):
        await ingest.handle_webhook(raw_webhook(UNSUBSCRIBE, tenant_id="bad tenant!", message_id="m"))
    with pytest.raises(PermanentMessageError):
        await ingest.handle_webhook(raw_webhook(UNSUBSCRIBE, tenant_id="t-1"))
    with pytest.raises(PermanentMessageError):
        await ingest.handle_webhook(raw_webhook(UNSUBSCRIBE, tenant_id="t-1", message_id="m" * 300))
