"""Strict identifiers and typed timers, without I/O: what a timer may hold, and why a stored
row cannot fire."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb2
from dripiq.planner.v1 import timers_pb2
from dripiq_common import validation
from dripiq_common.bus.contract import Streams, Subjects, header_text, refused_payload
from dripiq_common.errors import InvalidArgument
from dripiq_planner import rules, strategy
from dripiq_scheduler import domain

TENANT = "acme"


def planner(tenant_id: str = TENANT) -> bytes:
    return timers_pb2.PlannerTimer(tenant_id=tenant_id, campaign_id="c-1").SerializeToString()


def check(**overrides: object) -> domain.CheckedTimer:
    values: dict = {
        "tenant_id": TENANT,
        "key": "c-1:step",
        "group_key": "campaign:c-1",
        "kind": "step_due",
        "target": domain.Target.PLANNER_TIMER,
        "subject": "",
        "payload": planner(),
    }
    return domain.check_timer(**{**values, **overrides})


@pytest.mark.parametrize("value", ["acme\n", "acme\r", "\nacme", "ac me", "acme.x", "a" * 65, "", "é"])
def test_a_tenant_id_is_its_characters_and_nothing_after(value):
    assert not validation.is_tenant(value)
    with pytest.raises(InvalidArgument):
        validation.tenant_id(value)


def test_other_validation_patterns_refuse_a_trailing_newline():
    with pytest.raises(InvalidArgument):
        validation.email("a@example.com\n", "email")
    assert not rules.is_trigger("no_open_48h\n")
    assert rules.timeout_hours("no_open_48h\n") is None
    assert rules.class_trigger("positive\n") is None
    assert strategy.parse_timing(" 48h \n", seed="s") == ("after", 48 * 3600)  # the text is stripped first
    with pytest.raises(ValueError):
        strategy.parse_timing("48h\nDay 3", seed="s")


def test_the_subject_comes_from_the_target_and_tenant():
    assert check().subject == Subjects.planner_timer(TENANT)
    assert check(
        target=domain.Target.DISPATCHER_SEND,
        payload=dispatcher_pb2.SendMessageCommand(tenant_id=TENANT).SerializeToString(),
    ).subject == Subjects.dispatcher_send(TENANT)
    assert check(subject=Subjects.planner_timer(TENANT)).subject == Subjects.planner_timer(TENANT)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"tenant_id": "acme\n"}, "timer.tenant_id"),
        ({"key": "k\r\nX: y"}, "timer.key"),
        ({"key": "k\x00"}, "timer.key"),
        ({"key": "k\x7f"}, "timer.key"),
        ({"key": ""}, "timer.key"),
        ({"group_key": "g\n"}, "timer.group_key"),
        ({"kind": "step due"}, "timer.kind"),
        ({"kind": "k" * 65}, "timer.kind"),
        ({"target": None}, "timer.target"),
        ({"subject": "dripiq.planner.timer.*"}, "timer.target_subject"),
        ({"subject": "dripiq.planner.timer.acme-other"}, "timer.target_subject"),
        ({"payload": planner("acme-other")}, "timer.payload"),
        ({"payload": planner("")}, "timer.payload"),
        ({"payload": b"\xff"}, "timer.payload"),
        ({"payload": planner() + b"\x00" * (domain.MAX_PAYLOAD_BYTES)}, "timer.payload"),
        (
            {
                "target": domain.Target.DISPATCHER_SEND,
                "payload": dispatcher_pb2.SendMessageCommand(tenant_id="acme-other").SerializeToString(),
            },
            "timer.payload",
        ),
    ],
)
def test_a_bad_timer_is_refused_naming_the_field(overrides, field):
    with pytest.raises(InvalidArgument) as exc:
        check(**overrides)
    assert exc.value.field == field


def test_empty_group_key_is_allowed():
    assert check(group_key="").group_key == ""


def row(**values: object) -> SimpleNamespace:
    base: dict = {
        "tenant_id": TENANT,
        "key": "c-1:step",
        "group_key": "",
        "kind": "step_due",
        "target": "planner_timer",
        "target_subject": Subjects.planner_timer(TENANT),
        "payload": planner(),
        "rules_checked": None,  # written by hand or by an older version
    }
    return SimpleNamespace(**{**base, **values})


def test_a_stored_row_is_held_to_the_same_rules_before_it_fires():
    assert domain.unfireable(row()) == ""
    assert domain.unfireable(row(tenant_id="acme\n", target_subject="dripiq.planner.timer.acme\n")).startswith(
        "timer.tenant_id: "
    )
    assert domain.unfireable(row(target=None, target_subject="dripiq.nowhere.acme")).startswith("timer.target: ")
    assert domain.unfireable(row(target_subject="dripiq.planner.timer.*.acme")).startswith("timer.target_subject: ")
    assert domain.unfireable(row(key="k\r\n")).startswith("timer.key: ")
    assert domain.unfireable(row(payload=planner("other"))).startswith("timer.payload: ")


def test_only_a_row_stored_under_todays_rules_skips_the_check_before_it_fires():
    bad = {"payload": planner("other")}
    assert domain.unfireable(row(rules_checked=domain.RULES_VERSION, **bad)) == ""
    assert domain.unfireable(row(rules_checked=domain.RULES_VERSION - 1, **bad)).startswith("timer.payload: ")
    assert domain.unfireable(row(rules_checked=None, **bad)).startswith("timer.payload: ")


def test_an_older_callers_subject_names_its_target_only_when_exact():
    assert domain.target_for_subject(TENANT, Subjects.dispatcher_send(TENANT)) is domain.Target.DISPATCHER_SEND
    assert domain.target_for_subject(TENANT, "dripiq.planner.timer.*") is None
    assert domain.target_for_subject("acme\n", "dripiq.planner.timer.acme\n") is None


def test_header_text_escapes_what_would_end_a_header():
    assert header_text("campaign:c-1") == "campaign:c-1"
    assert header_text("k\r\nNats-Msg-Id: x") == "k\\r\\nNats-Msg-Id: x"
    assert "\n" not in header_text("\u2028é\n")


def test_a_consumer_refuses_a_subject_whose_tenant_token_is_no_tenant():
    data = timers_pb2.PlannerTimer(tenant_id="ac%me").SerializeToString()
    reason = refused_payload(Streams.PLANNER_TIMERS, "dripiq.planner.timer.ac%me", data)
    assert reason == "subject token 'ac%me' is not a tenant id"
    assert refused_payload(Streams.PLANNER_TIMERS, "dripiq.planner.timer.acme", planner()) == ""


def test_a_payload_type_is_walked_for_nested_tenants_only_when_it_can_hold_them():
    from dripiq.scheduler.v1 import commands_pb2  # noqa: PLC0415

    assert not domain._nests_tenants(timers_pb2.PlannerTimer.DESCRIPTOR)
    # Recursive (ops of commands) and nesting Timer, which has a tenant_id: walked.
    assert domain._nests_tenants(commands_pb2.TimerCommand.DESCRIPTOR)


def test_the_header_block_is_what_nats_reads_and_refuses_a_value_that_would_end_its_line():
    from nats.errors import BadHeaderError  # noqa: PLC0415

    from dripiq_common.bus.client import Outgoing  # noqa: PLC0415
    from dripiq_scheduler.acks import header_block  # noqa: PLC0415

    item = Outgoing(
        "s", b"", "timer:acme:k:1", {"Dripiq-Timer-Key": "k", "Dripiq-Fire-At": "2030-01-01T00:00:00+00:00"}
    )
    assert header_block(item) == (
        b"NATS/1.0\r\nDripiq-Timer-Key: k\r\nDripiq-Fire-At: 2030-01-01T00:00:00+00:00\r\n"
        b"Nats-Msg-Id: timer:acme:k:1\r\n\r\n"
    )
    with pytest.raises(BadHeaderError):
        header_block(Outgoing("s", b"", "id", {"Dripiq-Timer-Key": "k\r\nNats-Msg-Id: forged"}))
