"""The common library's pure parts: tokens, subjects, validation, error mapping, the migrations command's arguments."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import httpx2
import openai
import pytest
import sqlalchemy.exc
from google.rpc import code_pb2, error_details_pb2
from prometheus_client import REGISTRY

from dripiq_common import chat, migrations, validation
from dripiq_common.bus.contract import Streams, Subjects, stream_for_subject, subject_matches, token
from dripiq_common.errors import AlreadyExists, InvalidArgument, NotFound
from dripiq_common.loops import Poller
from dripiq_common.service import finish
from dripiq_common.status_codes import status_for
from dripiq_common.tokens import TokenSigner, reply_address, token_from_reply_address

SIGNER = TokenSigner(b"0123456789abcdef0123456789abcdef")


def test_reply_tokens_round_trip_and_fit_an_address() -> None:
    message_id = str(uuid.uuid4())
    address = reply_address(SIGNER, message_id, "reply.example.com")
    local = address.split("@")[0]
    assert len(local) <= 64
    assert SIGNER.parse_reply_token(token_from_reply_address(f"Ada <{address.upper()}>")) == message_id


def test_forged_or_foreign_tokens_are_refused() -> None:
    message_id = str(uuid.uuid4())
    reply = SIGNER.reply_token(message_id)
    other = TokenSigner(b"another secret of enough length!")
    assert other.parse_reply_token(reply) is None
    # A middle character: the last one partly carries padding bits that decoding ignores.
    middle = len(reply) // 2
    tampered = reply[:middle] + ("a" if reply[middle] != "a" else "b") + reply[middle + 1 :]
    assert SIGNER.parse_reply_token(tampered) is None
    assert SIGNER.parse_reply_token("not base32 !") is None
    unsub = SIGNER.unsubscribe_token("acme", message_id)
    assert SIGNER.parse_unsubscribe_token(unsub) == ("acme", message_id)
    assert other.parse_unsubscribe_token(unsub) is None
    assert SIGNER.parse_unsubscribe_token("x") is None


def test_subjects_and_streams() -> None:
    assert subject_matches("dripiq.edge.>", "dripiq.edge.sendgrid.events")
    assert not subject_matches("dripiq.edge.>", "dripiq.edge")
    assert subject_matches("a.*.c", "a.b.c") and not subject_matches("a.*.c", "a.b.d")
    assert stream_for_subject(Subjects.planner_timer("acme")) == Streams.PLANNER_TIMERS
    assert stream_for_subject("nothing.here") is None
    with pytest.raises(ValueError):
        token("a.b")


def test_validation_names_fields() -> None:
    with pytest.raises(InvalidArgument) as exc:
        validation.email("no-at-sign", "contact.email")
    assert exc.value.field == "contact.email"
    with pytest.raises(InvalidArgument):
        validation.tenant_id("has space")
    assert validation.tenant_id("acme_1-x") == "acme_1-x"


def test_status_mapping_carries_the_field() -> None:
    status = status_for(InvalidArgument("contact.email", "is required"))
    assert status.code == code_pb2.INVALID_ARGUMENT
    detail = error_details_pb2.BadRequest()
    status.details[0].Unpack(detail)
    assert detail.field_violations[0].field == "contact.email"
    assert status_for(NotFound("x")).code == code_pb2.NOT_FOUND
    assert status_for(AlreadyExists("x")).code == code_pb2.ALREADY_EXISTS
    internal = status_for(RuntimeError("secret detail"))
    assert internal.code == code_pb2.INTERNAL and "secret" not in internal.message


def test_page_sizes_and_tokens() -> None:
    from datetime import UTC, datetime

    from dripiq_common import paging

    assert (paging.page_size(0), paging.page_size(5), paging.page_size(5000)) == (100, 5, 1000)
    moment = datetime(2030, 1, 1, tzinfo=UTC)
    assert paging.decode_token(paging.encode_token(moment, "m-1"), datetime, str) == (moment, "m-1")
    assert paging.decode_token(paging.encode_token(moment.isoformat(), 7), datetime, int) == (moment, 7)
    assert paging.decode_token("", int) is None


@pytest.mark.parametrize(
    "token",
    [
        "%%%",
        "bm9wZQ",  # base64 of "nope"
        "WzEsMl0",  # [1,2]: the wrong number of parts
        "WyJ5ZXN0ZXJkYXkiLCJtLTEiXQ",  # ["yesterday","m-1"]: not a time
        "WyIyMDMwLTAxLTAxVDAwOjAwOjAwIiwibS0xIl0",  # a time without a zone
        "WyIyMDMwLTAxLTAxVDAwOjAwOjAwKzAwOjAwIiw3XQ",  # [time, 7] where an id string is due
        "WyIyMDMwLTAxLTAxVDAwOjAwOjAwKzAwOjAwIix0cnVlXQ",  # [time, true]
        "eyJhIjoxfQ",  # {"a":1}
    ],
)
def test_a_malformed_page_token_is_invalid_argument_naming_it(token: str) -> None:
    """However a token is broken, it never reaches a query (it was INTERNAL when it did)."""
    from datetime import datetime

    from dripiq_common import paging

    with pytest.raises(InvalidArgument) as exc:
        paging.decode_token(token, datetime, str)
    assert exc.value.field == "page_token"


def test_page_size_is_never_negative() -> None:
    from dripiq_common import paging

    with pytest.raises(InvalidArgument):
        paging.page_size(-1)


async def test_shutdown_cancels_what_outlives_its_grace() -> None:
    finished = asyncio.Event()

    async def prompt() -> None:
        finished.set()

    async def stuck() -> None:
        await asyncio.Event().wait()  # a handler waiting on a server that is gone

    tasks = [asyncio.create_task(prompt()), asyncio.create_task(stuck())]

    # It returns although one task would wait forever (the timeout only guards against a hang).
    async with asyncio.timeout(60):
        await finish(tasks, grace_seconds=0.2, what="test")

    assert finished.is_set() and tasks[0].exception() is None
    assert tasks[1].cancelled()


async def test_a_loop_counts_failed_rounds_and_keeps_going() -> None:
    name = f"test-loop-{uuid.uuid4().hex[:8]}"
    outcomes = iter([RuntimeError("database gone"), 0, 0])
    rounds = 0

    async def round_() -> int:
        nonlocal rounds
        rounds += 1
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        if rounds == 3:
            poller.stop()
        return outcome

    poller = Poller(round_, full=10, poll_seconds=0.01, name=name)
    before = time.time()
    await asyncio.wait_for(poller.run(), timeout=5)

    assert rounds == 3
    assert REGISTRY.get_sample_value("dripiq_loop_rounds_total", {"loop": name, "result": "failed"}) == 1
    assert REGISTRY.get_sample_value("dripiq_loop_rounds_total", {"loop": name, "result": "ok"}) == 2
    assert REGISTRY.get_sample_value("dripiq_loop_last_ok_timestamp_seconds", {"loop": name}) >= int(before)


def test_a_database_that_cannot_be_reached_is_unavailable_not_internal() -> None:
    """A caller may retry UNAVAILABLE; INTERNAL says we have a bug."""
    refused = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
    assert status_for(refused).code == code_pb2.UNAVAILABLE
    shutting_down = asyncpg.exceptions.CannotConnectNowError("the database system is shutting down")
    wrapped = sqlalchemy.exc.DBAPIError("SELECT 1", {}, shutting_down)
    assert status_for(wrapped).code == code_pb2.UNAVAILABLE
    try:
        try:
            raise refused
        except OSError as exc:
            raise RuntimeError("checkout failed") from exc
    except RuntimeError as chained:
        assert status_for(chained).code == code_pb2.UNAVAILABLE
    assert status_for(ValueError("a bug")).code == code_pb2.INTERNAL
    assert status_for(KeyError("campaign")).message == "internal error"


def test_seeded_spread_is_fixed_by_its_seed_and_in_range() -> None:
    import hashlib

    from dripiq_common.seeded import seeded_fraction, seeded_int

    digest = hashlib.sha256(b"campaign-1:2").digest()
    assert seeded_int("campaign-1:2", 8) == int.from_bytes(digest[:8], "big")
    assert seeded_int("campaign-1:2", 4) == int.from_bytes(digest[:4], "big")
    assert seeded_fraction("campaign-1:2") == int.from_bytes(digest[:4], "big") / 2**32
    shares = [seeded_fraction(f"m-{n}") for n in range(1000)]
    assert all(0 <= share < 1 for share in shares) and len(set(shares)) > 990


def test_the_migrations_command_names_an_unknown_service_before_touching_a_database(monkeypatch) -> None:
    monkeypatch.setattr(migrations, "upgrade", lambda *args: pytest.fail("migrated despite a bad argument"))
    with pytest.raises(SystemExit, match="unknown service 'billing'; expected one of planner, dispatcher"):
        migrations.main(["planner", "billing", "--database-url", "postgresql://nowhere/dripiq"])


def test_the_migrations_command_needs_a_database_url(monkeypatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(SystemExit, match="DATABASE_URL is not set"):
        migrations.main(["planner"])


def test_the_migrations_command_applies_every_service_by_default_in_order(monkeypatch) -> None:
    applied = []
    monkeypatch.setenv("DATABASE_URL", "postgresql://db.example/dripiq")
    monkeypatch.setattr(migrations, "upgrade", lambda *args: applied.append(args))
    migrations.main([])
    assert applied == [(service, "postgresql://db.example/dripiq", "head") for service in migrations.SERVICES]


def _status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    request = httpx2.Request("POST", "https://api.openai.com/v1/chat/completions")
    response = httpx2.Response(status, headers=headers or {}, request=request)
    return openai.APIStatusError("failed", response=response, body=None)


@pytest.mark.parametrize(
    ("status", "headers", "retryable"),
    [
        (429, {}, True),
        (500, {}, True),
        (408, {}, True),
        (400, {}, False),
        (401, {}, False),
        (400, {"x-should-retry": "true"}, True),
        (503, {"x-should-retry": "false"}, False),
        # A longer wait than the client honours is not asked again sooner: it is not retried.
        (429, {"retry-after": "90"}, True),
        (429, {"retry-after": "121"}, False),
        (503, {"retry-after": "inf"}, False),
    ],
)
def test_a_chat_error_is_retryable_as_the_openai_client_judges(
    status: int, headers: dict[str, str], retryable: bool
) -> None:
    assert chat.retryable(_status_error(status, headers)) is retryable


def test_a_lost_connection_is_retryable_and_asks_for_no_wait() -> None:
    lost = openai.APIConnectionError(request=httpx2.Request("POST", "https://api.openai.com/v1/chat/completions"))
    assert chat.retryable(lost) is True
    assert chat.retry_after(lost) is None


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "7"}, 7.0),
        ({"retry-after-ms": "250", "retry-after": "7"}, 0.25),
        # An HTTP date, or anything else unreadable, asks for nothing: the caller's backoff applies.
        ({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}, None),
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),
        ({}, None),
    ],
)
def test_retry_after_reads_the_servers_wait(headers: dict[str, str], seconds: float | None) -> None:
    assert chat.retry_after(_status_error(429, headers)) == seconds
