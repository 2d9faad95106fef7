"""Where a reply is forwarded and what the forward looks like: to the identity's forward_to, else
the tenant's catch-all, else nowhere (unroutable); never through another tenant's message or
identity, nor an unverified identity; the forwarded mail's sender, reply-to, summary, quoted
reply and subject. On real PostgreSQL and NATS against the fake SendGrid over HTTP.

A campaign email is sent through the real send pipeline first, so the forward finds the
message row and its identity as production does. The forward handler is called directly
with the bytes JetStream would deliver; "the worker retries" is calling it again, as a
redelivery would.
"""

from __future__ import annotations

import uuid

import pytest
from forwarding_support import T0, content, forward_row, forwarded, forwards, new_identity, reply, sent_email
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq_common.bus.contract import Subjects
from dripiq_common.clock import ManualClock
from dripiq_dispatcher import domain, forward_mail, repository
from dripiq_dispatcher.forwarding import ReplyForwardingSettings


@pytest.fixture
def settings(engine: AsyncEngine) -> ReplyForwardingSettings:
    return ReplyForwardingSettings(engine, ManualClock(T0))


async def test_reply_is_forwarded_once_to_the_identitys_mailbox(engine, fake, sender, forwarder, tenant_id):
    identity_id = await new_identity(engine, tenant_id, forward_to="sam@acme-corp.test")
    message_id = await sent_email(engine, sender, tenant_id, identity_id)
    cmd = reply(tenant_id, message_id)
    before = forwarded("sent")

    await forwarder.handle(cmd.SerializeToString(), subject=Subjects.dispatcher_forward(tenant_id))
    await forwarder.handle(cmd.SerializeToString())  # a redelivery

    [mail] = forwards(fake, cmd.inbound_id)
    [campaign_mail] = [m for m in fake.messages if m.custom_args.get("message_id") == message_id]
    assert mail.from_email == campaign_mail.from_email
    assert mail.payload["from"]["name"] == "Sam at Acme"
    assert mail.to_emails == ["sam@acme-corp.test"]
    assert mail.payload["reply_to"] == {"email": "ada@example.com", "name": "Ada Lovelace"}
    assert mail.subject == "Fwd: Re: Hello Ada"
    # Nothing about it looks like a campaign step's mail to the events service.
    assert mail.custom_args == {"tenant_id": tenant_id, "inbound_id": cmd.inbound_id, "kind": "reply_forward"}
    assert mail.categories == ["reply-forward"]
    assert mail.headers["Auto-Submitted"] == "auto-forwarded"
    assert "List-Unsubscribe" not in mail.headers
    assert mail.payload["tracking_settings"] == {
        "open_tracking": {"enable": False},
        "click_tracking": {"enable": False, "enable_text": False},
        "subscription_tracking": {"enable": False},
    }

    summary = (
        'Reply from Ada Lovelace <ada@example.com> to step 2 of campaign camp-7 ("Hello Ada"), '
        "classified interested, received 2030-01-02 09:30 UTC."
    )
    text = content(mail, "text/plain")
    assert text.startswith(summary + "\n")
    assert "> Yes, let's talk on Tuesday.\n>\n> Ada\n" in text
    assert "Unsubscribe" not in text
    markup = content(mail, "text/html")
    assert "Reply from Ada Lovelace &lt;ada@example.com&gt;" in markup
    assert "<blockquote><p>Yes, let's talk on <b>Tuesday</b>.</p><p>Ada</p></blockquote>" in markup.replace(
        "&#39;", "'"
    )
    assert "<script" not in markup and "Unsubscribe" not in markup

    row = await forward_row(engine, tenant_id, cmd.inbound_id)
    assert (row.status, row.to_email, row.from_email, row.sender_identity_id) == (
        "sent",
        "sam@acme-corp.test",
        mail.from_email,
        identity_id,
    )
    assert (row.provider, row.provider_message_id, row.attempt_count, row.sent_at, row.last_error) == (
        "sendgrid",
        mail.x_message_id,
        1,
        T0,
        None,
    )
    assert row.message_id == message_id
    assert forwarded("sent") == before + 1


async def test_without_forward_to_the_reply_goes_to_the_tenants_catch_all(
    engine, fake, sender, forwarder, settings, tenant_id
):
    await settings.set(pb.ReplyForwarding(tenant_id=tenant_id, catch_all="replies@acme-corp.test"))
    # Another tenant's catch-all never applies here.
    await settings.set(pb.ReplyForwarding(tenant_id=f"{tenant_id}-x", catch_all="other@elsewhere.test"))
    message_id = await sent_email(engine, sender, tenant_id, await new_identity(engine, tenant_id))
    cmd = reply(tenant_id, message_id, html="", text="Plain <b>text</b> only\nsecond line", reply_class="")

    await forwarder.handle(cmd.SerializeToString())

    [mail] = forwards(fake, cmd.inbound_id)
    assert mail.to_emails == ["replies@acme-corp.test"]
    # Without HTML, the text is shown escaped; without a class, it says so.
    assert "<blockquote>Plain &lt;b&gt;text&lt;/b&gt; only<br>\nsecond line</blockquote>" in content(mail, "text/html")
    assert "not classified" in content(mail, "text/plain")
    assert (await forward_row(engine, tenant_id, cmd.inbound_id)).to_email == "replies@acme-corp.test"


async def test_the_identitys_forward_to_wins_over_the_catch_all(engine, fake, sender, forwarder, settings, tenant_id):
    await settings.set(pb.ReplyForwarding(tenant_id=tenant_id, catch_all="replies@acme-corp.test"))
    identity_id = await new_identity(engine, tenant_id, forward_to="sam@acme-corp.test")
    cmd = reply(tenant_id, await sent_email(engine, sender, tenant_id, identity_id))

    await forwarder.handle(cmd.SerializeToString())

    assert [m.to_emails for m in forwards(fake, cmd.inbound_id)] == [["sam@acme-corp.test"]]


async def test_with_nowhere_to_go_it_is_unroutable_and_nothing_is_sent(engine, fake, sender, forwarder, tenant_id):
    identity_id = await new_identity(engine, tenant_id)
    cmd = reply(tenant_id, await sent_email(engine, sender, tenant_id, identity_id))
    before = forwarded("unroutable")

    await forwarder.handle(cmd.SerializeToString())
    await forwarder.handle(cmd.SerializeToString())

    assert forwards(fake, cmd.inbound_id) == []
    row = await forward_row(engine, tenant_id, cmd.inbound_id)
    assert (row.status, row.attempt_count, row.to_email) == ("unroutable", 0, None)
    assert row.last_error.startswith(f"sender identity {identity_id!r} (sales-")
    assert row.last_error.endswith(
        "has no forward_to and the tenant has no catch-all (DispatcherService/SetReplyForwarding)"
    )
    assert forwarded("unroutable") == before + 1


async def test_an_emptied_catch_all_routes_nothing(engine, fake, sender, forwarder, settings, tenant_id):
    await settings.set(pb.ReplyForwarding(tenant_id=tenant_id, catch_all="replies@acme-corp.test"))
    await settings.set(pb.ReplyForwarding(tenant_id=tenant_id, catch_all=""))
    cmd = reply(tenant_id, await sent_email(engine, sender, tenant_id, await new_identity(engine, tenant_id)))

    await forwarder.handle(cmd.SerializeToString())

    assert forwards(fake, cmd.inbound_id) == []
    assert (await forward_row(engine, tenant_id, cmd.inbound_id)).status == "unroutable"


async def test_another_tenants_message_is_never_used(engine, fake, sender, forwarder, settings, tenant_id):
    owner = f"{tenant_id}-owner"
    message_id = await sent_email(
        engine, sender, owner, await new_identity(engine, owner, forward_to="owner@acme-corp.test")
    )
    # Even with a catch-all of its own, a tenant cannot have another tenant's message forwarded.
    await settings.set(pb.ReplyForwarding(tenant_id=tenant_id, catch_all="replies@acme-corp.test"))
    cmd = reply(tenant_id, message_id)

    await forwarder.handle(cmd.SerializeToString())

    assert forwards(fake, cmd.inbound_id) == []
    row = await forward_row(engine, tenant_id, cmd.inbound_id)
    assert (row.status, row.last_error) == ("unroutable", f"message {message_id!r} does not exist for this tenant")
    assert await forward_row(engine, owner, cmd.inbound_id) is None


async def test_a_message_naming_another_tenants_identity_is_unroutable(engine, fake, forwarder, settings, tenant_id):
    foreign = await new_identity(engine, f"{tenant_id}-x", forward_to="x@elsewhere.test")
    await settings.set(pb.ReplyForwarding(tenant_id=tenant_id, catch_all="replies@acme-corp.test"))
    # A row no send would have admitted, written as it is to prove the join stays in the tenant.
    message = domain.NewMessage(
        message_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        campaign_id="camp-7",
        step_index=0,
        contact_id="c",
        channel="email",
        to_email="ada@example.com",
        to_name="",
        sender_identity_id=foreign,
        subject="Hello",
        body_text="Hi",
        body_html="",
        categories=(),
    )
    async with engine.begin() as conn:
        await repository.messages.insert_messages(conn, batch=[message], now=T0)
    cmd = reply(tenant_id, message.message_id)

    await forwarder.handle(cmd.SerializeToString())

    assert forwards(fake, cmd.inbound_id) == []
    row = await forward_row(engine, tenant_id, cmd.inbound_id)
    assert row.status == "unroutable" and f"sender identity {foreign!r}" in row.last_error


async def test_an_unverified_identity_forwards_nothing(engine, fake, sender, forwarder, tenant_id):
    identity_id = await new_identity(engine, tenant_id, forward_to="sam@acme-corp.test")
    message_id = await sent_email(engine, sender, tenant_id, identity_id)
    async with engine.begin() as conn:
        await repository.identities.update_identity(
            conn, tenant_id=tenant_id, identity_id=identity_id, values={"verified": False}, now=T0
        )
    cmd = reply(tenant_id, message_id)

    await forwarder.handle(cmd.SerializeToString())

    assert forwards(fake, cmd.inbound_id) == []
    row = await forward_row(engine, tenant_id, cmd.inbound_id)
    assert row.status == "unroutable" and "is not verified" in row.last_error


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Re: Hello Ada", "Fwd: Re: Hello Ada"),
        ("Fwd: Re: Hello Ada", "Fwd: Re: Hello Ada"),
        ("FW: Hello", "FW: Hello"),
        ("fwd:Hello", "fwd:Hello"),
        ("  Re:\r\n  Hello\tAda ", "Fwd: Re: Hello Ada"),
        ("", "Fwd: (no subject)"),
        ("Forward thinking", "Fwd: Forward thinking"),
    ],
)
def test_forward_subject_is_one_line_and_never_doubled(given, expected):
    assert forward_mail.forward_subject(given) == expected
