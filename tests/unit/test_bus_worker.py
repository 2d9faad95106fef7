"""How PullWorker settles a fetched batch, without a server: each message by the handler's answer
for it, a batch whose handler raises split until the message that raised is alone, and the two
adapters that make a batch handler of a per-message or a whole-batch one."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from dripiq_common.bus.contract import ConsumerSpec, StreamSpec
from dripiq_common.bus.worker import PullWorker, per_message, whole_batch
from dripiq_common.errors import PermanentMessageError

STREAM = StreamSpec("UNIT", ("unit.>",), work_queue=True)


@dataclass
class FakeMsg:
    """What the worker reads of a delivered message, and what it did with it."""

    data: bytes
    consumer: str
    delivered: int = 1
    subject: str = "unit.t-1"
    headers: dict[str, str] = field(default_factory=lambda: {"Dripiq-Timer-Key": "k", "Nats-Msg-Id": "x"})
    settled: list[tuple[str, Any]] = field(default_factory=list)
    ack_fails: bool = False

    @property
    def metadata(self) -> SimpleNamespace:
        return SimpleNamespace(
            num_delivered=self.delivered,
            stream=STREAM.name,
            consumer=self.consumer,
            sequence=SimpleNamespace(stream=7),
        )

    async def ack(self) -> None:
        if self.ack_fails:
            raise ConnectionError("connection closed")
        self.settled.append(("ack", None))

    async def nak(self, delay: float | None = None) -> None:
        self.settled.append(("nak", delay))

    async def term(self) -> None:
        self.settled.append(("term", None))


class FakeJetStream:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, dict[str, str]]] = []

    async def publish(self, subject: str, payload: bytes, *, headers: dict[str, str]) -> None:
        self.published.append((subject, payload, headers))


def new_worker(handler: Any, *, consumer: str, max_deliver: int = 3) -> tuple[PullWorker, FakeJetStream]:
    js = FakeJetStream()
    spec = ConsumerSpec(STREAM, consumer, "unit.>", max_deliver=max_deliver, retry_delays_seconds=(1, 5))
    return PullWorker(js, None, spec, handler), js  # type: ignore[arg-type]


def msgs(*payloads: bytes, consumer: str, delivered: int = 1) -> list[Any]:
    return [FakeMsg(p, consumer, delivered=delivered) for p in payloads]


def count(consumer: str, result: str) -> float:
    return REGISTRY.get_sample_value("dripiq_worker_messages_total", {"consumer": consumer, "result": result}) or 0


async def test_each_message_is_acked_retried_or_dead_lettered_by_its_own_answer() -> None:
    consumer = "unit-answers"
    answers = {
        b"ok": None,
        b"flaky": RuntimeError("transient"),
        # A reason quoting hostile input: one line in the header, without the address.
        b"poison": PermanentMessageError("undecodable for jane@acme.io\r\nDripiq-Forged: 1"),
        b"last": RuntimeError("still broken"),
    }

    async def handler(batch: list[Any]) -> list[Exception | None]:
        return [answers[m.data] for m in batch]

    worker, js = new_worker(handler, consumer=consumer)
    ok, flaky, poison = msgs(b"ok", b"flaky", b"poison", consumer=consumer, delivered=2)
    [last] = msgs(b"last", consumer=consumer, delivered=3)
    await worker.handle([ok, flaky, poison, last])

    assert ok.settled == [("ack", None)]
    # The retry delay of its delivery (the second), on the consumer's list.
    assert flaky.settled == [("nak", 5)]
    # Permanent at once; any other error on the last delivery (max_deliver 3).
    assert poison.settled == [("term", None)] and last.settled == [("term", None)]
    assert [(subject, payload) for subject, payload, _ in js.published] == [
        (f"dripiq.dlq.UNIT.{consumer}", b"poison"),
        (f"dripiq.dlq.UNIT.{consumer}", b"last"),
    ]
    assert js.published[0][2]["Dripiq-Error"] == "undecodable for ***@acme.io Dripiq-Forged: 1"
    headers = js.published[1][2]
    assert headers["Dripiq-Error"] == "RuntimeError: still broken"
    assert (headers["Dripiq-Delivered"], headers["Dripiq-Original-Subject"]) == ("3", "unit.t-1")
    # The message's own headers travel along; the server's dedupe id is replaced by the dead letter's.
    assert headers["Dripiq-Timer-Key"] == "k" and headers["Nats-Msg-Id"] != "x"
    assert [count(consumer, r) for r in ("acked", "retried", "dead_lettered")] == [1, 1, 2]


async def test_a_raising_batch_is_halved_down_to_the_message_that_raised() -> None:
    consumer = "unit-split"
    calls: list[list[bytes]] = []

    async def handle(batch: list[Any]) -> None:
        calls.append([m.data for m in batch])
        if any(m.data == b"6" for m in batch):
            raise RuntimeError("deadlock detected")

    worker, _ = new_worker(whole_batch(handle), consumer=consumer)
    batch = msgs(*(str(i).encode() for i in range(8)), consumer=consumer)
    await worker.handle(batch)

    assert calls == [
        [b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7"],
        [b"0", b"1", b"2", b"3"],
        [b"4", b"5", b"6", b"7"],
        [b"4", b"5"],
        [b"6", b"7"],
        [b"6"],
        [b"7"],
    ]
    assert [m.settled for m in batch] == [[("ack", None)]] * 6 + [[("nak", 1)], [("ack", None)]]


async def test_answers_for_another_number_of_messages_count_as_a_raise() -> None:
    consumer = "unit-miscount"
    calls: list[int] = []

    async def handler(batch: list[Any]) -> list[Exception | None]:
        calls.append(len(batch))
        return [None]

    worker, _ = new_worker(handler, consumer=consumer)
    batch = msgs(b"a", b"b", b"c", consumer=consumer)
    await worker.handle(batch)

    assert calls == [3, 1, 2, 1, 1]
    assert all(m.settled == [("ack", None)] for m in batch)


async def test_a_message_that_cannot_be_settled_does_not_stop_the_others() -> None:
    consumer = "unit-settle"

    async def handle(batch: list[Any]) -> None:
        pass

    worker, _ = new_worker(whole_batch(handle), consumer=consumer)
    first, second = msgs(b"a", b"b", consumer=consumer)
    first.ack_fails = True
    await worker.handle([first, second])
    # The first comes back after the ack wait; the second is acked all the same.
    assert (first.settled, second.settled) == ([], [("ack", None)])


async def test_per_message_answers_each_message_by_its_own_call_in_order() -> None:
    seen: list[bytes] = []
    broken = RuntimeError("provider said 500")

    async def handle(msg: Any) -> str:
        seen.append(msg.data)
        if msg.data == b"b":
            raise broken
        return "a result the worker ignores"

    answers = await per_message(handle)(msgs(b"a", b"b", b"c", consumer="unit-each"))
    assert seen == [b"a", b"b", b"c"]
    assert answers == [None, broken, None]


async def test_whole_batch_answers_done_for_every_message_or_raises() -> None:
    async def handle(batch: list[Any]) -> int:
        if len(batch) > 2:
            raise RuntimeError("too many")
        return len(batch)

    handler = whole_batch(handle)
    assert await handler(msgs(b"a", b"b", consumer="unit-whole")) == [None, None]
    with pytest.raises(RuntimeError, match="too many"):
        await handler(msgs(b"a", b"b", b"c", consumer="unit-whole"))
