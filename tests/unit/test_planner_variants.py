"""A/B variants of a step: the contract's checks and the weighted choice per contact. No I/O."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common.errors import InvalidArgument
from dripiq_planner import convert, rules, templates, variants, winners
from dripiq_planner.strategist.guards import violations
from dripiq_planner.strategist.links import AllowList
from dripiq_planner.strategy import StepVariant, Strategy


def a_b(a: int = 1, b: int = 1) -> list[StepVariant]:
    return [
        StepVariant(name="A", weight=a, subject="Quick question"),
        StepVariant(name="B", weight=b, subject="An idea for {{company_name}}"),
    ]


def strategy(*step_variants: StepVariant | dict[str, Any]) -> Strategy:
    return Strategy.model_validate(
        {
            "outreachCampaign": [
                {
                    "type": "email",
                    "timing": "Day 0",
                    "subject": "Hello",
                    "content": "Hi {{first_name}}, a short note.",
                    "callToAction": "Open to a call?",
                    "variants": [v if isinstance(v, dict) else v.model_dump(by_alias=True) for v in step_variants],
                }
            ]
        }
    )


def test_the_json_contract_reads_variants_with_their_aliases() -> None:
    read = strategy({"name": "A", "weight": 3, "callToAction": "Reply yes"}, {"name": "B", "subject": "Hi"})
    first = read.outreach_campaign[0].variants
    assert [(v.name, v.weight, v.call_to_action) for v in first] == [("A", 3, "Reply yes"), ("B", 1, "")]
    assert read.to_json()["outreachCampaign"][0]["variants"][0]["callToAction"] == "Reply yes"


def test_a_sound_pair_passes() -> None:
    rules.validate_strategy(strategy(*a_b(1, 3)))


@pytest.mark.parametrize(
    ("given", "field", "words"),
    [
        ([StepVariant(name="A", subject="x")], "variants", "2 to 5"),
        ([StepVariant(name=n, subject="x") for n in "ABCDEF"], "variants", "2 to 5"),
        ([StepVariant(name="A", subject="x"), StepVariant(name="A", subject="y")], "variants[1].name", "another"),
        ([StepVariant(name="A", subject="x"), StepVariant(name="B C", subject="y")], "variants[1].name", "letters"),
        ([StepVariant(name="A", subject="x"), StepVariant(name="", subject="y")], "variants[1].name", "letters"),
        (
            [StepVariant(name="A", weight=0, subject="x"), StepVariant(name="B", subject="y")],
            "variants[0].weight",
            "1 to 1000",
        ),
        (
            [StepVariant(name="A", subject="x"), StepVariant(name="B", weight=1001, subject="y")],
            "variants[1].weight",
            "1 to 1000",
        ),
        ([StepVariant(name="A", subject="x"), StepVariant(name="B")], "variants[1]", "changes nothing"),
        (
            [StepVariant(name="A", subject="x" * 121), StepVariant(name="B", subject="y")],
            "variants[0].subject",
            "at most 120",
        ),
        (
            [StepVariant(name="A", content="x" * 5001), StepVariant(name="B", subject="y")],
            "variants[0].content",
            "at most 5000",
        ),
        (
            [StepVariant(name="A", subject="Hi [First Name]"), StepVariant(name="B", subject="y")],
            "variants[0].subject",
            "placeholders",
        ),
        (
            [StepVariant(name="A", content="Hi {{nickname}}"), StepVariant(name="B", subject="y")],
            "variants[0].content",
            "placeholders",
        ),
    ],
)
def test_bad_variants_name_their_field(given: list[StepVariant], field: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        rules.validate_strategy(strategy(*given))
    assert caught.value.field == f"strategy.outreachCampaign[0].{field}"
    assert words in caught.value.description


def test_the_ai_guards_read_every_variants_copy() -> None:
    bad = strategy(
        StepVariant(name="A", subject="See https://evil.example/x"),
        StepVariant(name="B", content="Hi {first_name}", call_to_action="Call +1 415 555 0100"),
    )
    found = {(v.field, v.message.split(" ")[0]) for v in violations(bad, AllowList())}
    fields = {f for f, _ in found}
    assert "outreachCampaign[0].variants[0].subject" in fields
    assert "outreachCampaign[0].variants[1].content" in fields
    assert "outreachCampaign[0].variants[1].callToAction" in fields


def test_the_same_contact_always_gets_the_same_variant() -> None:
    picks = {variants.choose(a_b(), tenant_id="t1", contact_id="c-42", step_index=2).name for _ in range(20)}
    assert len(picks) == 1
    # Another step of the same contact is a draw of its own.
    per_step = {variants.choose(a_b(), tenant_id="t1", contact_id="c-42", step_index=i).name for i in range(20)}
    assert per_step == {"A", "B"}


@pytest.mark.parametrize(("a", "b"), [(1, 1), (1, 3), (9, 1), (500, 1000)])
def test_ten_thousand_contacts_split_by_weight(a: int, b: int) -> None:
    counts = Counter(
        variants.choose(a_b(a, b), tenant_id="t1", contact_id=f"contact-{i}", step_index=0).name for i in range(10_000)
    )
    assert counts["A"] + counts["B"] == 10_000
    assert abs(counts["A"] / 10_000 - a / (a + b)) < 0.02


def test_three_variants_split_by_weight() -> None:
    three = [StepVariant(name=n, weight=w, subject=n) for n, w in (("A", 2), ("B", 3), ("C", 5))]
    counts = Counter(
        variants.choose(three, tenant_id="t9", contact_id=f"c{i}", step_index=1).name for i in range(10_000)
    )
    for name, share in (("A", 0.2), ("B", 0.3), ("C", 0.5)):
        assert abs(counts[name] / 10_000 - share) < 0.02


def stored_step(variant: str = "", **overrides: Any) -> SimpleNamespace:
    values = {
        "step_index": 0,
        "subject": "Hello",
        "content": "Body",
        "call_to_action": "Call?",
        "variants": [v.model_dump(by_alias=True) for v in a_b()],
        "variant": variant,
    }
    return SimpleNamespace(**(values | overrides))


def test_a_variant_replaces_only_the_copy_it_gives() -> None:
    for contact in (f"c{i}" for i in range(40)):
        copy = variants.copy_for(stored_step(), tenant_id="t1", contact_id=contact)
        assert copy.content == "Body" and copy.call_to_action == "Call?"
        assert copy.subject == {"A": "Quick question", "B": "An idea for {{company_name}}"}[copy.variant]


def test_a_recorded_variant_is_kept_whatever_the_hash_says() -> None:
    for contact in (f"c{i}" for i in range(40)):
        assert variants.copy_for(stored_step("B"), tenant_id="t1", contact_id=contact).variant == "B"


def test_a_step_without_variants_sends_its_own_copy() -> None:
    copy = variants.copy_for(stored_step(variants=[]), tenant_id="t1", contact_id="c1")
    assert (copy.subject, copy.content, copy.call_to_action, copy.variant) == ("Hello", "Body", "Call?", "")


def test_the_facts_placeholders_are_the_requests_facts() -> None:
    request = convert.campaign_request(
        pb.CreateCampaignRequest(
            tenant_id="t1",
            contact=pb.Contact(contact_id="c1", email="ada@example.com"),
            lead=pb.Lead(lead_id="l1"),
            product=pb.Product(product_id="p1"),
            sender_identity_id="s1",
        )
    )
    assert set(request.facts) == set(templates.FIELDS)


# -- winners -----------------------------------------------------------------------------------

NOW = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
BY_REPLY = variants.WinnerSetting(after_sends=100, metric=variants.Metric.REPLY)


def test_no_winner_while_any_variant_has_fewer_sends_than_asked() -> None:
    arms = {"A": variants.Arm(100, 30), "B": variants.Arm(99, 1)}
    assert variants.decide(["A", "B"], arms, BY_REPLY, NOW) is None
    # A variant the events service has not counted yet has sent nothing.
    assert variants.decide(["A", "B", "C"], {**arms, "B": variants.Arm(100, 1)}, BY_REPLY, NOW) is None


def test_the_best_rate_wins_against_the_runner_up_and_says_so() -> None:
    arms = {"A": variants.Arm(120, 6), "B": variants.Arm(100, 12), "C": variants.Arm(150, 3)}
    winner = variants.decide(["A", "B", "C"], arms, BY_REPLY, NOW)
    assert winner is not None
    assert (winner.variant, winner.runner_up, winner.sends_each) == ("B", "A", 100)
    assert (winner.rate, winner.runner_up_rate) == (0.12, 0.05)
    assert winner.note() == "variant B: the winner by reply rate (12.0% against 5.0%, after 100 sends each)"


def test_a_tie_or_a_lead_below_the_lift_asked_picks_nothing() -> None:
    tie = {"A": variants.Arm(100, 0), "B": variants.Arm(100, 0)}
    assert variants.decide(["A", "B"], tie, BY_REPLY, NOW) is None
    close = {"A": variants.Arm(100, 11), "B": variants.Arm(100, 10)}
    lift = variants.WinnerSetting(after_sends=100, metric=variants.Metric.CLICK, min_lift_percent=20)
    assert variants.decide(["A", "B"], close, lift, NOW) is None
    clear = {"A": variants.Arm(100, 12), "B": variants.Arm(100, 10)}
    assert variants.decide(["A", "B"], clear, lift, NOW) is not None
    assert variants.decide(["A", "B"], close, BY_REPLY, NOW) is not None


def test_a_winner_goes_to_a_contact_whose_step_has_it_and_never_changes_a_recorded_one() -> None:
    winner = variants.Winner("B", variants.Metric.REPLY, 0.2, "A", 0.1, 100, NOW)
    step = SimpleNamespace(
        variants=[v.model_dump(by_alias=True) for v in a_b()],
        variant="",
        step_index=0,
        subject="Hello",
        content="Hi",
        call_to_action="",
    )
    copy = variants.copy_for(step, tenant_id="t", contact_id="c", winner=winner)
    assert (copy.variant, copy.subject, copy.winner) == ("B", "An idea for {{company_name}}", winner)
    step.variant = "A"  # sent before as A (a resend keeps it)
    assert variants.copy_for(step, tenant_id="t", contact_id="c", winner=winner).variant == "A"
    step.variant = ""
    other = variants.Winner("Z", variants.Metric.REPLY, 0.2, "A", 0.1, 100, NOW)
    split = variants.copy_for(step, tenant_id="t", contact_id="c", winner=other)
    assert (
        split.winner is None
        and split.variant == variants.choose(a_b(), tenant_id="t", contact_id="c", step_index=0).name
    )


@pytest.mark.parametrize(
    ("given", "field"),
    [
        (pb.VariantWinnerSetting(after_sends=0, metric=pb.VARIANT_METRIC_REPLY), "settings.variant_winner.after_sends"),
        (pb.VariantWinnerSetting(after_sends=10), "settings.variant_winner.metric"),
        (pb.VariantWinnerSetting(after_sends=10, metric=7), "settings.variant_winner.metric"),
        (
            pb.VariantWinnerSetting(after_sends=10, metric=pb.VARIANT_METRIC_CLICK, min_lift_percent=-1),
            "settings.variant_winner.min_lift_percent",
        ),
        (
            pb.VariantWinnerSetting(after_sends=2_000_000, metric=pb.VARIANT_METRIC_CLICK),
            "settings.variant_winner.after_sends",
        ),
    ],
)
def test_a_bad_winner_setting_names_its_field(given: pb.VariantWinnerSetting, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        convert.winner_setting_from_proto(given)
    assert caught.value.field == field


def test_the_winner_setting_round_trips() -> None:
    given = pb.VariantWinnerSetting(after_sends=50, metric=pb.VARIANT_METRIC_CLICK, min_lift_percent=10)
    setting = convert.winner_setting_from_proto(given)
    assert variants.WinnerSetting.from_json(setting.to_json()) == setting
    assert convert.winner_setting_to_proto(setting) == given
    assert variants.WinnerSetting.from_json(None) is None


async def test_the_winners_figure_cache_forgets_expired_experiments() -> None:
    """A long-lived planner sees endless experiments: the cache keeps only the recent ones."""
    now = [0.0]
    picker = winners.VariantWinners(
        engine=None,  # type: ignore[arg-type]
        clock=None,  # type: ignore[arg-type]
        owners=None,
        cache_seconds=30,
        monotonic=lambda: now[0],
    )
    for step_index in range(5):
        assert await picker._figures_of(("t", "p", step_index), ["A", "B"], variants.Metric.REPLY) is None
    assert len(picker._figures) == 5
    now[0] = 31.0
    await picker._figures_of(("t", "p", 99), ["A", "B"], variants.Metric.REPLY)
    assert list(picker._figures) == [("t", "p", 99)]
