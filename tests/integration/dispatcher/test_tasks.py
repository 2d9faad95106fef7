"""Call and LinkedIn steps become tasks: recorded, announced with a TaskCreated fact, and
completed through CompleteTask over a real grpc.aio server, which publishes the outcome as a
SENT outcome and, for a reply or a decline, as engagement. Plus the other channel rules,
mailbox caps given at creation, and pruning of old rate counters."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
import pytest_asyncio
from dispatch_support import SIGNER, T0, command, identity, rate_limits_of, received, stored
from grpc_support import dispatcher_api, violated_fields
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as pb_grpc
from dripiq.dispatcher.v1 import messages_pb2
from dripiq.events.v1 import messages_pb2 as events_pb2
from dripiq_common.bus.contract import Subjects
from dripiq_common.clock import ManualClock
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_dispatcher import budgets, campaign_mail, failures
from dripiq_dispatcher.models import outbox, rate_counters
from dripiq_dispatcher.provider import AsyncSendGridSender
from dripiq_dispatcher.sending import Sends
from dripiq_dispatcher.suppressions import Suppressions

MAIL = campaign_mail.MailSettings("reply.test", "mid.test", "https://u.test/u/")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest_asyncio.fixture
async def dispatcher(engine: AsyncEngine, fake: FakeSendGrid, clock: ManualClock) -> AsyncIterator[Sends]:
    sender = AsyncSendGridSender(api_key="SG.test", host=fake.url, concurrency=4, timeout_seconds=5)
    yield Sends(engine, clock, sender, SIGNER, MAIL, retry=failures.RetryPolicy())
    await sender.aclose()


@pytest_asyncio.fixture
async def api(engine: AsyncEngine, dispatcher: Sends, clock: ManualClock) -> AsyncIterator[grpc.aio.Channel]:
    async with dispatcher_api(engine, dispatcher, clock) as channel:
        yield channel


async def published(engine: AsyncEngine, subject: str, kind: Any) -> list[Any]:
    async with engine.connect() as conn:
        payloads = (
            (await conn.execute(select(outbox.c.payload).where(outbox.c.subject == subject).order_by(outbox.c.id)))
            .scalars()
            .all()
        )
    return [kind.FromString(p) for p in payloads]


def task_command(tenant_id: str, channel: str = "call", **overrides: Any) -> messages_pb2.SendMessageCommand:
    fields = {
        "channel": channel,
        "subject": "Call Ada about the pilot",
        "body_text": "Ask how the first week went.",
        "body_html": "",
        "sender_identity_id": "",
        **overrides,
    }
    return command(tenant_id, "", **fields)


@pytest.mark.parametrize("channel", ["call", "linkedin"])
async def test_a_task_step_opens_a_task_and_calls_no_provider(engine, fake, dispatcher, tenant_id, channel):
    cmd = task_command(tenant_id, channel)

    await dispatcher.handle_send(cmd.SerializeToString())
    await dispatcher.handle_send(cmd.SerializeToString())  # a redelivery opens nothing more

    row = await stored(engine, cmd.message_id)
    assert (row.status, row.channel, row.attempt_count) == ("task_open", channel, 0)
    assert received(fake, cmd.message_id) == []
    [task] = await published(engine, Subjects.dispatcher_task(tenant_id), messages_pb2.TaskCreated)
    assert (task.message_id, task.channel, task.title, task.instructions, task.to_email) == (
        cmd.message_id,
        channel,
        "Call Ada about the pilot",
        "Ask how the first week went.",
        "ada@example.com",
    )
    assert task.created_at.ToDatetime().replace(tzinfo=T0.tzinfo) == T0
    assert await published(engine, Subjects.message_outcome(tenant_id), messages_pb2.MessageOutcome) == []


async def test_a_task_for_a_suppressed_contact_is_suppressed_not_opened(engine, dispatcher, tenant_id):
    await Suppressions(engine, ManualClock(T0)).add(tenant_id, "ada@example.com", "unsubscribe")
    cmd = task_command(tenant_id)

    await dispatcher.handle_send(cmd.SerializeToString())

    assert (await stored(engine, cmd.message_id)).status == "suppressed"
    assert await published(engine, Subjects.dispatcher_task(tenant_id), messages_pb2.TaskCreated) == []


async def test_an_unknown_channel_fails_with_a_reason_naming_it(engine, dispatcher, tenant_id):
    cmd = command(tenant_id, await identity(engine, tenant_id), channel="sms")

    await dispatcher.handle_send(cmd.SerializeToString())

    row = await stored(engine, cmd.message_id)
    assert row.status == "failed"
    assert "channel 'sms' is not one the dispatcher handles (call, email, linkedin)" in row.last_error
    [outcome] = await published(engine, Subjects.message_outcome(tenant_id), messages_pb2.MessageOutcome)
    assert outcome.kind == messages_pb2.OUTCOME_KIND_FAILED


async def test_completing_a_task_records_it_and_publishes_a_reply(engine, dispatcher, api, clock, tenant_id):
    cmd = task_command(tenant_id, "linkedin", product_id="product-7", strategist="template", variant="b")
    await dispatcher.handle_send(cmd.SerializeToString())
    stub = pb_grpc.DispatcherServiceStub(api)
    clock.advance(timedelta(hours=3))
    performed = T0 + timedelta(hours=2)
    request = pb.CompleteTaskRequest(
        tenant_id=tenant_id, message_id=cmd.message_id, outcome=pb.TASK_OUTCOME_REPLIED, notes="Wants a demo"
    )
    request.completed_at.FromDatetime(performed)

    answer = await stub.CompleteTask(request, timeout=10)
    again = await stub.CompleteTask(request, timeout=10)  # a retried call changes nothing

    assert answer.message.status == pb.MESSAGE_STATUS_TASK_DONE
    assert (answer.message.task_outcome, answer.message.task_notes) == (pb.TASK_OUTCOME_REPLIED, "Wants a demo")
    assert answer.message.sent_at.ToDatetime() == performed.replace(tzinfo=None)
    assert again.message == answer.message
    [outcome] = await published(engine, Subjects.message_outcome(tenant_id), messages_pb2.MessageOutcome)
    assert (outcome.kind, outcome.channel, outcome.provider, outcome.reason, outcome.task_outcome) == (
        messages_pb2.OUTCOME_KIND_SENT,
        "linkedin",
        "",
        "task replied",
        "replied",
    )
    assert outcome.occurred_at.ToDatetime() == performed.replace(tzinfo=None)
    # Built from the stored row hours after the command: what the tenant's analytics count it under.
    assert (outcome.product_id, outcome.strategist, outcome.variant, outcome.sender_identity_id) == (
        "product-7",
        "template",
        "b",
        "",
    )
    [batch] = await published(engine, Subjects.engagement(tenant_id, "reply"), events_pb2.EngagementBatch)
    [reply] = batch.events
    assert (reply.event_id, reply.message_id, reply.campaign_id, reply.step_index, reply.email) == (
        f"task:{cmd.message_id}",
        cmd.message_id,
        cmd.campaign_id,
        cmd.step_index,
        "ada@example.com",
    )

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CompleteTask(
            pb.CompleteTaskRequest(tenant_id=tenant_id, message_id=cmd.message_id, outcome=pb.TASK_OUTCOME_DONE),
            timeout=10,
        )
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already completed as 'replied'" in (raised.value.details() or "")


async def test_a_declined_task_becomes_an_unsubscribe_and_a_done_one_no_engagement(engine, dispatcher, api, tenant_id):
    declined, done = task_command(tenant_id), task_command(tenant_id, message_id=str(uuid.uuid4()))
    for cmd in (declined, done):
        await dispatcher.handle_send(cmd.SerializeToString())
    stub = pb_grpc.DispatcherServiceStub(api)

    await stub.CompleteTask(
        pb.CompleteTaskRequest(tenant_id=tenant_id, message_id=declined.message_id, outcome=pb.TASK_OUTCOME_DECLINED),
        timeout=10,
    )
    await stub.CompleteTask(
        pb.CompleteTaskRequest(tenant_id=tenant_id, message_id=done.message_id, outcome=pb.TASK_OUTCOME_NO_ANSWER),
        timeout=10,
    )

    [batch] = await published(engine, Subjects.engagement(tenant_id, "unsubscribe"), events_pb2.EngagementBatch)
    [unsubscribe] = batch.events
    assert unsubscribe.message_id == declined.message_id
    assert await published(engine, Subjects.engagement(tenant_id, "reply"), events_pb2.EngagementBatch) == []
    outcomes = await published(engine, Subjects.message_outcome(tenant_id), messages_pb2.MessageOutcome)
    assert [(o.message_id, o.kind) for o in outcomes] == [
        (declined.message_id, messages_pb2.OUTCOME_KIND_SENT),
        (done.message_id, messages_pb2.OUTCOME_KIND_SENT),
    ]
    # The dispatcher's own engagement consumer then suppresses the address, as for an email
    # unsubscribe: the next task for the contact is suppressed.
    await Suppressions(engine, ManualClock(T0)).handle_engagement(batch.SerializeToString())
    later = task_command(tenant_id, message_id=str(uuid.uuid4()))
    await dispatcher.handle_send(later.SerializeToString())
    assert (await stored(engine, later.message_id)).status == "suppressed"


async def test_complete_task_names_what_is_wrong(engine, dispatcher, api, tenant_id):
    stub = pb_grpc.DispatcherServiceStub(api)
    email = command(tenant_id, await identity(engine, tenant_id))
    await dispatcher.handle_send(email.SerializeToString())
    task = task_command(tenant_id, message_id=str(uuid.uuid4()))
    await dispatcher.handle_send(task.SerializeToString())

    async def error(**fields: Any) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.CompleteTask(pb.CompleteTaskRequest(tenant_id=tenant_id, **fields), timeout=10)
        return raised.value

    missing_outcome = await error(message_id=task.message_id)
    assert missing_outcome.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(missing_outcome) == ["outcome"]
    long_notes = await error(message_id=task.message_id, outcome=pb.TASK_OUTCOME_DONE, notes="x" * 4001)
    assert violated_fields(long_notes) == ["notes"]
    future = pb.CompleteTaskRequest(tenant_id=tenant_id, message_id=task.message_id, outcome=pb.TASK_OUTCOME_DONE)
    future.completed_at.FromDatetime(T0 + timedelta(hours=1))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CompleteTask(future, timeout=10)
    assert violated_fields(raised.value) == ["completed_at"]
    assert (await error(message_id="no-such", outcome=pb.TASK_OUTCOME_DONE)).code() == grpc.StatusCode.NOT_FOUND
    not_a_task = await error(message_id=email.message_id, outcome=pb.TASK_OUTCOME_DONE)
    assert not_a_task.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "is not an open task (it is 'sent')" in (not_a_task.details() or "")
    # Nothing above touched the open task.
    assert (await stored(engine, task.message_id)).status == "task_open"


async def test_open_tasks_are_listed_by_status(engine, dispatcher, api, tenant_id):
    cmd = task_command(tenant_id)
    await dispatcher.handle_send(cmd.SerializeToString())

    listed = await pb_grpc.DispatcherServiceStub(api).ListMessages(
        pb.ListMessagesRequest(tenant_id=tenant_id, status=pb.MESSAGE_STATUS_TASK_OPEN), timeout=10
    )

    assert [m.message_id for m in listed.messages] == [cmd.message_id]


async def test_mailbox_caps_can_be_given_at_creation(api, tenant_id):
    stub = pb_grpc.SenderIdentityServiceStub(api)

    created = await stub.CreateSenderIdentity(
        pb.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email="capped@acme.test", per_minute=30, per_day=2000),
        timeout=10,
    )

    assert (created.sender_identity.per_minute, created.sender_identity.per_day) == (30, 2000)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateSenderIdentity(
            pb.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email="neg@acme.test", per_day=-1), timeout=10
        )
    assert violated_fields(raised.value) == ["per_day"]


async def test_counters_of_windows_long_over_are_pruned(engine, dispatcher, clock, tenant_id):
    await rate_limits_of(dispatcher).set_rate_limit(
        pb.RateLimit(tenant_id=tenant_id, channel="email", per_minute=100, per_day=1000)
    )
    cmd = command(tenant_id, await identity(engine, tenant_id))
    await dispatcher.handle_send(cmd.SerializeToString())
    scope = budgets.tenant_scope(tenant_id, "email")

    async def windows() -> set[str]:
        async with engine.connect() as conn:
            rows = await conn.execute(select(rate_counters.c.window).where(rate_counters.c.scope == scope))
            return set(rows.scalars())

    assert await windows() == {"minute", "day"}
    clock.advance(timedelta(days=1))
    await rate_limits_of(dispatcher).prune_rate_counters()
    assert await windows() == {"minute", "day"}  # kept past the longest window
    clock.advance(timedelta(days=2))
    while await rate_limits_of(dispatcher).prune_rate_counters():
        pass
    assert await windows() == set()
