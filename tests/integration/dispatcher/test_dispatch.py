"""The send pipeline on real PostgreSQL and NATS against the fake SendGrid over HTTP.

The handlers are called directly with the bytes JetStream would deliver; "the worker retries"
is calling the handler again, as a redelivery would. One test runs a real PullWorker on a
consumer filtered to its own tenant (never the production `...>` consumers: the NATS server
is shared with the other services' tests).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from prometheus_client import REGISTRY
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from waiting import eventually

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import messages_pb2
from dripiq.events.v1 import messages_pb2 as events_pb2
from dripiq.scheduler.v1 import commands_pb2
from dripiq_common.bus.contract import ConsumerSpec, Streams, Subjects
from dripiq_common.bus.worker import PullWorker
from dripiq_common.clock import ManualClock
from dripiq_common.errors import PermanentMessageError
from dripiq_common.outbox import OutboxRelay
from dripiq_common.tokens import TokenSigner, token_from_reply_address
from dripiq_devtools.fake_sendgrid import AcceptedMessage, FakeSendGrid
from dripiq_dispatcher import campaign_mail, convert, failures, repository
from dripiq_dispatcher.identities import SenderIdentities
from dripiq_dispatcher.models import messages, outbox, suppressions
from dripiq_dispatcher.provider import AsyncSendGridSender, MailSender
from dripiq_dispatcher.rate_limits import RateLimits
from dripiq_dispatcher.sending import Sends
from dripiq_dispatcher.suppressions import Suppressions
from dripiq_dispatcher.unconfirmed import UnconfirmedSends

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
SIGNER = TokenSigner(b"integration-test-token-secret")
MAIL = campaign_mail.MailSettings("reply.test", "mid.test", "https://u.test/u/")
# Compressed: a real deployment retries for hours (DISPATCHER_RETRY_HORIZON_SECONDS).
RETRY = failures.RetryPolicy(horizon=timedelta(minutes=10), base=timedelta(seconds=30), cap=timedelta(minutes=2))


def new_sender(host: str, *, concurrency: int, timeout_seconds: float) -> MailSender:
    return AsyncSendGridSender(api_key="SG.test", host=host, concurrency=concurrency, timeout_seconds=timeout_seconds)


@pytest_asyncio.fixture(scope="module")
async def sender(fake: FakeSendGrid) -> AsyncIterator[MailSender]:
    pool = new_sender(fake.url, concurrency=4, timeout_seconds=5)
    yield pool
    await pool.aclose()


def new_dispatcher(engine: AsyncEngine, sender: Any, kicks: list[int] | None = None) -> Sends:
    def kick() -> None:
        if kicks is not None:
            kicks.append(1)

    return Sends(engine, ManualClock(T0), sender, SIGNER, MAIL, RETRY, on_outbox=kick)


def rate_limits_of(dispatcher: Sends) -> RateLimits:
    """The budgets API on the send path's database and clock."""
    return RateLimits(dispatcher.engine, dispatcher.clock)


def unconfirmed_of(dispatcher: Sends) -> UnconfirmedSends:
    """The settlement of unknown sends beside the send path, waking the same outbox relay."""
    return UnconfirmedSends(dispatcher.engine, dispatcher.clock, on_outbox=dispatcher.on_outbox)


@pytest.fixture
def dispatcher(engine: AsyncEngine, sender: MailSender) -> Sends:
    return new_dispatcher(engine, sender)


async def identity(engine: AsyncEngine, tenant_id: str, *, verified: bool = True) -> str:
    identities = SenderIdentities(engine, ManualClock(T0))
    created = await identities.create(
        pb.CreateSenderIdentityRequest(
            tenant_id=tenant_id,
            from_email=f"sales-{uuid.uuid4().hex[:6]}@acme.test",
            from_name="Acme",
        )
    )
    if verified:
        await identities.verify(tenant_id, created.sender_identity_id)
    return created.sender_identity_id


def command(tenant_id: str, identity_id: str, **overrides: Any) -> messages_pb2.SendMessageCommand:
    fields: dict[str, Any] = {
        "tenant_id": tenant_id,
        "message_id": str(uuid.uuid4()),
        "campaign_id": "camp-1",
        "step_index": 1,
        "contact_id": "contact-1",
        "channel": "email",
        "to_email": "ada@example.com",
        "to_name": "Ada",
        "sender_identity_id": identity_id,
        "subject": "Hello Ada",
        "body_text": "Hi Ada",
        "body_html": "<p>Hi Ada</p>",
        "categories": ["campaign"],
    }
    fields.update(overrides)
    return messages_pb2.SendMessageCommand(**fields)


def received(fake: FakeSendGrid, message_id: str) -> list[AcceptedMessage]:
    return [m for m in fake.messages if m.custom_args.get("message_id") == message_id]


async def stored(engine: AsyncEngine, message_id: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(messages).where(messages.c.message_id == message_id))).one()


async def outcomes(engine: AsyncEngine, tenant_id: str) -> list[messages_pb2.MessageOutcome]:
    async with engine.connect() as conn:
        payloads = (
            (
                await conn.execute(
                    select(outbox.c.payload)
                    .where(outbox.c.subject == Subjects.message_outcome(tenant_id))
                    .order_by(outbox.c.id)
                )
            )
            .scalars()
            .all()
        )
    return [messages_pb2.MessageOutcome.FromString(p) for p in payloads]


async def test_send_calls_sendgrid_once_with_every_tracking_key(engine, fake, sender, tenant_id):
    kicks: list[int] = []
    dispatcher = new_dispatcher(engine, sender, kicks)
    cmd = command(tenant_id, await identity(engine, tenant_id))

    await dispatcher.handle_send(cmd.SerializeToString())
    await dispatcher.handle_send(cmd.SerializeToString())  # a redelivery

    [mail] = received(fake, cmd.message_id)
    assert mail.custom_args == {
        "tenant_id": tenant_id,
        "campaign_id": "camp-1",
        "step_index": "1",
        "message_id": cmd.message_id,
    }
    assert mail.to_emails == ["ada@example.com"]
    assert mail.categories == ["campaign"]
    token = token_from_reply_address(mail.reply_to or "")
    assert token is not None and SIGNER.parse_reply_token(token) == cmd.message_id
    assert mail.headers["Message-ID"] == f"<{cmd.message_id}@mid.test>"
    assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = mail.headers["List-Unsubscribe"].strip("<>").removeprefix("https://u.test/u/")
    assert SIGNER.parse_unsubscribe_token(unsubscribe) == (tenant_id, cmd.message_id)

    row = await stored(engine, cmd.message_id)
    assert (row.status, row.provider, row.provider_message_id) == (
        "sent",
        "sendgrid",
        mail.x_message_id,
    )
    assert (row.attempt_count, row.sent_at, row.idempotency_key) == (1, T0, cmd.message_id)
    assert row.rfc_message_id == f"<{cmd.message_id}@mid.test>"
    assert row.from_email == mail.from_email

    [fact] = await outcomes(engine, tenant_id)
    assert fact.kind == messages_pb2.OUTCOME_KIND_SENT
    assert (fact.message_id, fact.provider_message_id, fact.rfc_message_id) == (
        cmd.message_id,
        mail.x_message_id,
        row.rfc_message_id,
    )
    assert (fact.to_email, fact.subject, fact.step_index) == ("ada@example.com", "Hello Ada", 1)
    assert fact.occurred_at.ToDatetime(tzinfo=UTC) == T0
    assert kicks == [1]


async def test_outcome_is_published_by_the_relay(engine, js, dispatcher, tenant_id):
    cmd = command(tenant_id, await identity(engine, tenant_id))
    await dispatcher.handle_send(cmd.SerializeToString())

    relay = OutboxRelay(engine, js, outbox)
    while await relay.relay_once():
        pass

    msg = await js.get_last_msg("MESSAGE_OUTCOMES", Subjects.message_outcome(tenant_id))
    fact = messages_pb2.MessageOutcome.FromString(msg.data)
    assert (fact.message_id, fact.kind) == (cmd.message_id, messages_pb2.OUTCOME_KIND_SENT)
    assert await outcomes(engine, tenant_id) == []


async def test_found_sending_is_never_sent_again(engine, fake, dispatcher, tenant_id):
    cmd = command(tenant_id, await identity(engine, tenant_id))
    # A worker that committed `sending` and died during the provider call.
    async with engine.begin() as conn:
        await repository.messages.insert_messages(conn, batch=[convert.new_message(cmd)], now=T0)
        await conn.execute(
            update(messages).where(messages.c.message_id == cmd.message_id).values(status="sending", attempt_count=1)
        )

    await dispatcher.handle_send(cmd.SerializeToString())
    await dispatcher.handle_send(cmd.SerializeToString())

    assert received(fake, cmd.message_id) == []
    row = await stored(engine, cmd.message_id)
    assert (row.status, row.attempt_count) == ("unknown", 1)
    assert await outcomes(engine, tenant_id) == []


def outcome_count(kind: str) -> float:
    return REGISTRY.get_sample_value("dripiq_dispatcher_outcomes_total", {"kind": kind, "channel": "email"}) or 0


async def test_suppressed_address_is_not_sent(engine, fake, dispatcher, tenant_id):
    await Suppressions(engine, ManualClock(T0)).add(tenant_id, "ADA@Example.com", "")
    cmd = command(tenant_id, await identity(engine, tenant_id), to_email="ada@EXAMPLE.com")
    sent = command(tenant_id, await identity(engine, tenant_id), to_email="grace@example.com")
    before = outcome_count("suppressed"), outcome_count("sent")

    await dispatcher.handle_send(cmd.SerializeToString())
    await dispatcher.handle_send(sent.SerializeToString())
    # What an operator sees: dripiq_dispatcher_outcomes_total by kind and channel.
    assert (outcome_count("suppressed"), outcome_count("sent")) == (before[0] + 1, before[1] + 1)

    assert received(fake, cmd.message_id) == []
    row = await stored(engine, cmd.message_id)
    assert (row.status, row.last_error, row.attempt_count) == (
        "suppressed",
        "address suppressed: manual",
        0,
    )
    [fact] = [f for f in await outcomes(engine, tenant_id) if f.message_id == cmd.message_id]
    assert (fact.kind, fact.reason) == (
        messages_pb2.OUTCOME_KIND_SUPPRESSED,
        "address suppressed: manual",
    )


@pytest.mark.parametrize("case", ["unverified", "missing", "other_tenant"])
async def test_unusable_identity_fails_naming_why(engine, fake, dispatcher, tenant_id, case):
    if case == "unverified":
        identity_id = await identity(engine, tenant_id, verified=False)
    elif case == "other_tenant":
        identity_id = await identity(engine, f"{tenant_id}-other")
    else:
        identity_id = str(uuid.uuid4())
    cmd = command(tenant_id, identity_id)

    await dispatcher.handle_send(cmd.SerializeToString())

    assert received(fake, cmd.message_id) == []
    row = await stored(engine, cmd.message_id)
    expected = "is not verified" if case == "unverified" else "does not exist for this tenant"
    assert row.status == "failed" and identity_id in row.last_error and expected in row.last_error
    [fact] = await outcomes(engine, tenant_id)
    assert (fact.kind, fact.reason) == (messages_pb2.OUTCOME_KIND_FAILED, row.last_error)


async def test_provider_rejection_fails_with_its_message(engine, fake, dispatcher, tenant_id):
    # Our check lets it through; SendGrid's stricter address rules answer 400.
    cmd = command(tenant_id, await identity(engine, tenant_id), to_email="ada@exa_mple.com")

    await dispatcher.handle_send(cmd.SerializeToString())
    await dispatcher.handle_send(cmd.SerializeToString())

    row = await stored(engine, cmd.message_id)
    assert row.status == "failed"
    assert row.last_error == "sendgrid 400: personalizations.0.to.0.email: Does not contain a valid address."
    assert row.attempt_count == 1
    [fact] = await outcomes(engine, tenant_id)
    assert (fact.kind, fact.reason) == (messages_pb2.OUTCOME_KIND_FAILED, row.last_error)


def provider_calls(result: str) -> float:
    return REGISTRY.get_sample_value("dripiq_dispatcher_provider_call_seconds_count", {"result": result}) or 0.0


async def deferred_timers(engine: AsyncEngine, tenant_id: str, message_id: str) -> list[Any]:
    """The scheduler timers the dispatcher asked for to bring this message back, oldest first."""
    async with engine.connect() as conn:
        payloads = (
            await conn.scalars(
                select(outbox.c.payload)
                .where(outbox.c.subject == Subjects.scheduler_command(tenant_id))
                .order_by(outbox.c.id)
            )
        ).all()
    commands = [commands_pb2.TimerCommand.FromString(p) for p in payloads]
    timers = [op.schedule for c in commands for op in (c.ops.commands if c.HasField("ops") else [c])]
    return [t for t in timers if t.key == f"{message_id}:deferred"]


async def test_unavailable_provider_is_retried_then_sent_once(engine, fake, dispatcher, tenant_id):
    cmd = command(tenant_id, await identity(engine, tenant_id))
    fake.fail_next(503)
    calls = {r: provider_calls(r) for r in ("retry", "accepted", "permanent", "unknown")}

    # Nothing waits on JetStream: the delivery is done, and a scheduler timer brings it back.
    await dispatcher.handle_send(cmd.SerializeToString())
    row = await stored(engine, cmd.message_id)
    assert (row.status, row.attempt_count) == ("queued", 1)
    assert row.last_error == "sendgrid 503: service unavailable"
    [timer] = await deferred_timers(engine, tenant_id, cmd.message_id)
    assert timer.group_key == f"campaign:{cmd.campaign_id}" and timer.payload == cmd.SerializeToString()
    due = T0 + RETRY.base
    assert due <= timer.fire_at.ToDatetime(tzinfo=UTC) <= due + RETRY.base / 4
    [deferred] = await outcomes(engine, tenant_id)
    assert deferred.kind == messages_pb2.OUTCOME_KIND_DEFERRED and "sendgrid 503" in deferred.reason

    dispatcher.clock.advance(RETRY.base)  # type: ignore[attr-defined]
    await dispatcher.handle_send(timer.payload)

    assert len(received(fake, cmd.message_id)) == 1
    row = await stored(engine, cmd.message_id)
    assert (row.status, row.attempt_count, row.last_error) == ("sent", 2, None)
    assert [f.kind for f in await outcomes(engine, tenant_id)] == [
        messages_pb2.OUTCOME_KIND_DEFERRED,
        messages_pb2.OUTCOME_KIND_SENT,
    ]
    # Operators see each call's time by result (dripiq_dispatcher_provider_call_seconds).
    assert {r: provider_calls(r) - calls[r] for r in calls} == {"retry": 1, "accepted": 1, "permanent": 0, "unknown": 0}


async def test_an_outage_longer_than_minutes_fails_only_at_the_horizon_and_not_for_good(
    engine, fake, dispatcher, tenant_id
):
    cmd = command(tenant_id, await identity(engine, tenant_id))
    fake.fail_next(503, count=100)
    clock = dispatcher.clock
    waits = []
    try:
        for _ in range(20):
            await dispatcher.handle_send(cmd.SerializeToString())
            row = await stored(engine, cmd.message_id)
            if row.status != "queued":
                break
            timer = (await deferred_timers(engine, tenant_id, cmd.message_id))[-1]
            wait = timer.fire_at.ToDatetime(tzinfo=UTC) - clock.now()  # type: ignore[attr-defined]
            waits.append(wait)
            clock.advance(wait)  # type: ignore[attr-defined]
    finally:
        fake.clear_failures()

    # The wait doubles up to its cap; the message fails once it is past the horizon, and the
    # outcome says the failure is not the message's own: its campaign is not ended for it.
    assert all(later >= earlier for earlier, later in zip(waits, waits[1:], strict=False))
    assert RETRY.cap <= max(waits) <= RETRY.cap * 1.25
    assert clock.now() - T0 >= RETRY.horizon - RETRY.cap * 1.25  # type: ignore[attr-defined]
    assert received(fake, cmd.message_id) == []
    row = await stored(engine, cmd.message_id)
    assert row.status == "failed"
    assert row.last_error.startswith(f"gave up after {row.attempt_count} attempts over 0:10:00")
    [failed] = [f for f in await outcomes(engine, tenant_id) if f.kind == messages_pb2.OUTCOME_KIND_FAILED]
    assert failed.permanent is False


async def test_a_retry_lands_inside_the_contacts_send_window(engine, fake, sender, tenant_id):
    """Friday 16:59:50 in Paris, a window of weekdays 9-17: the retry 30 s later would fall
    after closing, so it comes back at Monday's opening (spread over its first minutes)."""
    paris = ZoneInfo("Europe/Paris")
    friday = datetime(2030, 1, 4, 16, 59, 50, tzinfo=paris)
    dispatcher = new_dispatcher(engine, sender)
    dispatcher.clock = ManualClock(friday.astimezone(UTC))
    window = messages_pb2.ContactWindow(weekdays=[1, 2, 3, 4, 5], start_hour=9, end_hour=17, time_zone="Europe/Paris")
    cmd = command(tenant_id, await identity(engine, tenant_id), send_window=window)
    fake.fail_next(503)

    await dispatcher.handle_send(cmd.SerializeToString())

    [timer] = await deferred_timers(engine, tenant_id, cmd.message_id)
    back = timer.fire_at.ToDatetime(tzinfo=UTC).astimezone(paris)
    monday = datetime(2030, 1, 7, 9, 0, tzinfo=paris)
    assert monday <= back < monday + timedelta(minutes=15)


async def test_a_provider_refusal_of_the_message_is_permanent_and_of_our_key_is_not(
    engine, fake, dispatcher, tenant_id
):
    ident = await identity(engine, tenant_id)
    bad, unauthorized = (command(tenant_id, ident) for _ in range(2))
    fake.fail_next(400)
    await dispatcher.handle_send(bad.SerializeToString())
    fake.fail_next(401)
    await dispatcher.handle_send(unauthorized.SerializeToString())

    facts = {f.message_id: f for f in await outcomes(engine, tenant_id)}
    assert (facts[bad.message_id].kind, facts[bad.message_id].permanent) == (messages_pb2.OUTCOME_KIND_FAILED, True)
    assert (facts[unauthorized.message_id].kind, facts[unauthorized.message_id].permanent) == (
        messages_pb2.OUTCOME_KIND_FAILED,
        False,
    )


async def test_unreachable_provider_is_retried(engine, tenant_id):
    closed = new_sender("http://127.0.0.1:9", concurrency=1, timeout_seconds=2)
    try:
        cmd = command(tenant_id, await identity(engine, tenant_id))
        await new_dispatcher(engine, closed).handle_send(cmd.SerializeToString())
    finally:
        await closed.aclose()

    row = await stored(engine, cmd.message_id)
    assert row.status == "queued" and row.last_error.startswith("sendgrid unreachable:")
    assert len(await deferred_timers(engine, tenant_id, cmd.message_id)) == 1


async def test_timeout_after_the_request_left_is_unknown_and_never_repeated(engine, tenant_id):
    async with FakeSendGrid(latency_seconds=0.5) as slow:
        impatient = new_sender(slow.url, concurrency=1, timeout_seconds=0.1)
        try:
            dispatcher = new_dispatcher(engine, impatient)
            cmd = command(tenant_id, await identity(engine, tenant_id))
            await dispatcher.handle_send(cmd.SerializeToString())
            # Answering at once now: a second call would be recorded.
            slow.latency_seconds = 0
            await dispatcher.handle_send(cmd.SerializeToString())
        finally:
            await impatient.aclose()
        assert received(slow, cmd.message_id) == []

    row = await stored(engine, cmd.message_id)
    assert (row.status, row.attempt_count) == ("unknown", 1)
    assert "after the request was sent" in row.last_error
    # Kept while unknown, to be sent again as it was should SendGrid never have got it.
    assert row.unconfirmed_command == cmd.SerializeToString()
    assert await outcomes(engine, tenant_id) == []


async def test_answer_settles_a_message_a_redelivery_parked_during_the_call(engine, tenant_id):
    async with FakeSendGrid(latency_seconds=0.3) as slow:
        patient = new_sender(slow.url, concurrency=2, timeout_seconds=5)
        try:
            dispatcher = new_dispatcher(engine, patient)
            cmd = command(tenant_id, await identity(engine, tenant_id))
            first = asyncio.create_task(dispatcher.handle_send(cmd.SerializeToString()))

            async def calling() -> bool:
                return await stored_status(engine, cmd.message_id) == "sending"

            await eventually(calling, "the provider call under way", every=0.01)
            # JetStream's ack wait ran out during the call and delivered the command again.
            await dispatcher.handle_send(cmd.SerializeToString())
            assert await stored_status(engine, cmd.message_id) == "unknown"
            await first
        finally:
            await patient.aclose()
        [mail] = received(slow, cmd.message_id)

    row = await stored(engine, cmd.message_id)
    assert (row.status, row.provider_message_id, row.attempt_count) == (
        "sent",
        mail.x_message_id,
        1,
    )
    assert [f.kind for f in await outcomes(engine, tenant_id)] == [messages_pb2.OUTCOME_KIND_SENT]


async def stored_status(engine: AsyncEngine, message_id: str) -> str | None:
    async with engine.connect() as conn:
        return (
            await conn.execute(select(messages.c.status).where(messages.c.message_id == message_id))
        ).scalar_one_or_none()


async def test_invalid_command_fails_with_an_outcome(engine, fake, dispatcher, tenant_id):
    cmd = command(tenant_id, await identity(engine, tenant_id), subject="")

    await dispatcher.handle_send(cmd.SerializeToString())

    row = await stored(engine, cmd.message_id)
    assert row.status == "failed" and "subject" in row.last_error
    assert [f.kind for f in await outcomes(engine, tenant_id)] == [messages_pb2.OUTCOME_KIND_FAILED]


async def test_unusable_bus_messages_are_permanent_errors(engine, dispatcher, tenant_id):
    suppressions_ = Suppressions(engine, ManualClock(T0))
    with pytest.raises(PermanentMessageError):
        await dispatcher.handle_send(b"\xff\xff not a protobuf")
    with pytest.raises(PermanentMessageError):
        await dispatcher.handle_send(command(tenant_id, "id", message_id="not-a-uuid").SerializeToString())
    with pytest.raises(PermanentMessageError):
        await suppressions_.handle_engagement(b"\xff\xff")
    # A message id another tenant already used is never touched from this one.
    cmd = command(tenant_id, await identity(engine, tenant_id))
    await dispatcher.handle_send(cmd.SerializeToString())
    stolen = command(f"{tenant_id}-x", "id", message_id=cmd.message_id)
    with pytest.raises(PermanentMessageError):
        await dispatcher.handle_send(stolen.SerializeToString())


def engagement(
    tenant_id: str, event_type: str, email: str, reason: str = "", reply_class: str = ""
) -> events_pb2.EngagementEvent:
    return events_pb2.EngagementEvent(
        tenant_id=tenant_id,
        event_id=str(uuid.uuid4()),
        message_id=str(uuid.uuid4()),
        event_type=event_type,
        email=email,
        reason=reason,
        reply_class=reply_class,
    )


async def suppressed(engine: AsyncEngine, tenant_id: str) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(suppressions.c.address, suppressions.c.reason)
            .where(suppressions.c.tenant_id == tenant_id)
            .order_by(suppressions.c.address, suppressions.c.reason)
        )
        return [tuple(r) for r in rows]


async def test_engagement_turns_lasting_refusals_into_suppressions(engine, tenant_id):
    handler = Suppressions(engine, ManualClock(T0))

    facts = [
        engagement(tenant_id, "unsubscribe", "Una@Example.com"),
        engagement(tenant_id, "unsubscribe", "una@example.com"),  # the same fact again
        engagement(tenant_id, "group_unsubscribe", "una@example.com"),
        engagement(tenant_id, "spamreport", "spam@example.com"),
        engagement(tenant_id, "bounce", "gone@example.com", reason="bounce"),
        engagement(tenant_id, "bounce", "busy@example.com", reason="blocked"),
        engagement(tenant_id, "open", "reader@example.com"),
        engagement(tenant_id, "delivered", "reader@example.com"),
        # "Please take me off your list", in words: suppressed; an interested reply is not.
        engagement(tenant_id, "reply", "Done@Example.com", reply_class="unsubscribe_request"),
        engagement(tenant_id, "reply", "keen@example.com", reply_class="interested"),
        # Without an address it can suppress nothing; the facts batched with it still count.
        engagement(tenant_id, "unsubscribe", ""),
    ]
    # One batch as the events service publishes them, then each fact alone again.
    await handler.handle_engagement(events_pb2.EngagementBatch(events=facts).SerializeToString())
    for fact in facts:
        await handler.handle_engagement(events_pb2.EngagementBatch(events=[fact]).SerializeToString())

    assert await suppressed(engine, tenant_id) == [
        ("done@example.com", "unsubscribe_request"),
        ("gone@example.com", "bounce"),
        ("spam@example.com", "spamreport"),
        ("una@example.com", "group_unsubscribe"),
        ("una@example.com", "unsubscribe"),
    ]
    assert await suppressed(engine, f"{tenant_id}-other") == []


def at(fact: events_pb2.EngagementEvent, when: datetime) -> events_pb2.EngagementEvent:
    fact.occurred_at.FromDatetime(when)
    return fact


async def test_a_group_resubscribe_lifts_only_an_earlier_group_unsubscribe(engine, tenant_id):
    handler = Suppressions(engine, ManualClock(T0))
    hour = timedelta(hours=1)
    await handler.handle_engagements(
        [
            at(engagement(tenant_id, "group_unsubscribe", "back@example.com"), T0),
            at(engagement(tenant_id, "group_unsubscribe", "later@example.com"), T0 + 2 * hour),
            at(engagement(tenant_id, "group_unsubscribe", "also@example.com"), T0),
            at(engagement(tenant_id, "unsubscribe", "also@example.com"), T0),
        ]
    )

    await handler.handle_engagements(
        [
            at(engagement(tenant_id, "group_resubscribe", "Back@Example.com"), T0 + hour),
            # Resubscribed before it unsubscribed again: the later unsubscribe stands.
            at(engagement(tenant_id, "group_resubscribe", "later@example.com"), T0 + hour),
            # A group resubscribe takes back the group unsubscribe, not a plain unsubscribe.
            at(engagement(tenant_id, "group_resubscribe", "also@example.com"), T0 + hour),
            at(engagement(tenant_id, "group_resubscribe", "never@example.com"), T0 + hour),
        ]
    )

    assert await suppressed(engine, tenant_id) == [
        ("also@example.com", "unsubscribe"),
        ("later@example.com", "group_unsubscribe"),
    ]
    # An unsubscribe and a later resubscribe delivered together end resubscribed.
    await handler.handle_engagements(
        [
            at(engagement(tenant_id, "group_resubscribe", "both@example.com"), T0 + hour),
            at(engagement(tenant_id, "group_unsubscribe", "both@example.com"), T0),
        ]
    )
    assert ("both@example.com", "group_unsubscribe") not in await suppressed(engine, tenant_id)


async def test_worker_sends_once_despite_a_duplicate_command(engine, js, nats_conn, fake, dispatcher, tenant_id):
    subject = Subjects.dispatcher_send(tenant_id)
    spec = ConsumerSpec(Streams.DISPATCHER_SEND, f"test-{tenant_id}", subject)
    worker = PullWorker(
        js, nats_conn, spec, lambda msgs: dispatcher.handle_sends([m.data for m in msgs]), fetch_timeout=0.2
    )
    cmd = command(tenant_id, await identity(engine, tenant_id))
    # Two publishes the stream does not dedupe: as if the planner's relay sent it twice.
    for n in range(2):
        await js.publish(subject, cmd.SerializeToString(), headers={"Nats-Msg-Id": f"{cmd.message_id}:{n}"})

    await js.add_consumer(Streams.DISPATCHER_SEND.name, spec.config())
    task = asyncio.create_task(worker.run())
    try:

        async def drained() -> bool:
            info = await js.consumer_info(Streams.DISPATCHER_SEND.name, spec.durable)
            return info.num_ack_pending == 0 and info.num_pending == 0 and bool(info.delivered.stream_seq)

        await eventually(drained, "both copies delivered and acked")
    finally:
        worker.stop()
        await task
        await js.delete_consumer(Streams.DISPATCHER_SEND.name, spec.durable)

    assert len(received(fake, cmd.message_id)) == 1
    assert (await stored(engine, cmd.message_id)).status == "sent"
