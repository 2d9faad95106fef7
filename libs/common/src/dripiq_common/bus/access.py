"""Who may do what on the bus: one NATS user per process, allowed to publish on the subjects it
writes and to read from the streams it consumes, and nothing else; no runtime user may create,
change or delete a stream or a consumer (the set-up step's user does, dripiq_common.bus.setup).

The allow-lists come from the contract, so a new subject or consumer is one change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from dripiq_common.bus.client import inbox_prefix
from dripiq_common.bus.contract import DEAD_LETTER_PREFIX, Consumers, ConsumerSpec, Streams, StreamSpec, Subjects

# The account every user of the suite is in; the set-up user is its administrator.
ACCOUNT = "DRIPIQ"
SETUP_USER = "setup"


@dataclass(frozen=True)
class BusUser:
    name: str
    # Subject patterns it publishes on (facts, commands, its dead letters, its audit records).
    publishes: tuple[str, ...]
    consumes: tuple[ConsumerSpec, ...] = ()
    # Streams whose configuration it reads at start-up (to check they exist).
    reads: tuple[StreamSpec, ...] = ()

    def permissions(self) -> dict[str, dict[str, list[str]]]:
        streams = {c.stream.name for c in self.consumes} | {s.name for s in self.reads}
        publish = [
            *self.publishes,
            "$JS.API.INFO",
            *(f"$JS.API.STREAM.INFO.{name}" for name in sorted(streams)),
        ]
        for consumer in self.consumes:
            stream, durable = consumer.stream.name, consumer.durable
            publish += [
                f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
                f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
                # Acks, naks and terms go to the reply subject of each delivered message.
                f"$JS.ACK.{stream}.{durable}.>",
            ]
        # Request-reply answers (publish acks, fetched messages) come back on its own inboxes
        # (dripiq_common.bus.client.connect names them after the process).
        return {"publish": {"allow": publish}, "subscribe": {"allow": [f"{inbox_prefix(self.name)}.>"]}}


_AUDIT = "dripiq.audit.>"
_DEAD = f"{DEAD_LETTER_PREFIX}.>"

USERS: Mapping[str, BusUser] = {
    user.name: user
    for user in (
        BusUser(
            "planner",
            (
                "dripiq.scheduler.cmd.>",
                "dripiq.dispatcher.send.>",
                "dripiq.planner.campaign.>",
                "dripiq.planner.plan.>",
                _AUDIT,
                _DEAD,
            ),
            Consumers.of("planner"),
            (
                Streams.SCHEDULER_COMMANDS,
                Streams.DISPATCHER_SEND,
                Streams.CAMPAIGN_STATUS,
                Streams.PLANNER_PLANNING,
                Streams.AUDIT,
            ),
        ),
        BusUser(
            "dispatcher",
            (
                "dripiq.dispatcher.outcome.>",
                "dripiq.dispatcher.task.>",
                "dripiq.dispatcher.send.>",
                "dripiq.events.engagement.>",
                "dripiq.scheduler.cmd.>",
                _AUDIT,
                _DEAD,
            ),
            Consumers.of("dispatcher"),
            (Streams.MESSAGE_OUTCOMES, Streams.DISPATCHER_TASKS, Streams.SCHEDULER_COMMANDS, Streams.AUDIT),
        ),
        BusUser(
            "events",
            (
                "dripiq.events.engagement.>",
                "dripiq.dispatcher.forward.>",
                "dripiq.dispatcher.suppress.>",
                _AUDIT,
                _DEAD,
            ),
            Consumers.of("events"),
            (Streams.ENGAGEMENT, Streams.DISPATCHER_FORWARD, Streams.DISPATCHER_SUPPRESS, Streams.AUDIT),
        ),
        BusUser(
            "scheduler",
            # What timers may target (the planner's timers, deferred sends), its dead letters, its audit.
            ("dripiq.planner.timer.>", "dripiq.dispatcher.send.>", _AUDIT, _DEAD),
            Consumers.of("scheduler"),
            (Streams.PLANNER_TIMERS, Streams.DISPATCHER_SEND, Streams.AUDIT),
        ),
        # The internet-facing edge: the raw webhooks it accepted, nothing more.
        BusUser(
            "edge",
            ("dripiq.edge.>", Subjects.EDGE_SENDGRID_INBOUND),
            (),
            (Streams.EDGE_WEBHOOKS, Streams.EDGE_INBOUND),
        ),
    )
}


def accounts(passwords: Mapping[str, str]) -> dict[str, object]:
    """NATS's `accounts`: the suite's account with JetStream, a user per process (passwords[name])
    with its allow-lists, and the set-up user with every right (passwords[SETUP_USER])."""
    users: list[dict[str, object]] = [{"user": SETUP_USER, "password": passwords[SETUP_USER]}]
    for name, user in USERS.items():
        users.append({"user": name, "password": passwords[name], "permissions": user.permissions()})
    return {ACCOUNT: {"jetstream": "enabled", "users": users}}


def server_config(passwords: Mapping[str, str]) -> str:
    """The `accounts` block of a NATS server configuration file (JSON is valid NATS syntax)."""
    return f"accounts: {json.dumps(accounts(passwords), indent=2)}\n"


def streams_used(process: str) -> tuple[StreamSpec, ...]:
    """The streams a process reads from or checks at start-up."""
    user = USERS[process]
    seen = {c.stream.name: c.stream for c in user.consumes} | {s.name: s for s in user.reads}
    return tuple(seen.values())
