"""A/B variants in AI-written campaigns, on real PostgreSQL, through the real `openai` client
against the fake OpenAI: a tenant's `ai_variants` asks the model for versions B (and C) of each
email step under prompt strategy-v3, the versions pass the same checks as the step's own copy
(one repair, then the template, audited), a tenant without the setting is asked exactly what it
was asked before, and the written versions split contacts by weight when sent."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest
import pytest_asyncio
from helpers import drain_outbox, item, openai_strategist, request, send_commands, timer_commands
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common.clock import ManualClock
from dripiq_common.errors import InvalidArgument
from dripiq_devtools.fake_openai import SERVER_ERROR, VALID, FakeOpenAI
from dripiq_devtools.fake_openai.replies import valid_strategy
from dripiq_devtools.fake_openai.validation import strict_schema_problem
from dripiq_planner import variants
from dripiq_planner.creating import CampaignCreator
from dripiq_planner.models import ai_generations
from dripiq_planner.planning import Planner
from dripiq_planner.reactor import Reactor
from dripiq_planner.strategist.ai_variants import VariantFocus, VariantRequest, answer_path
from dripiq_planner.strategist.openai_strategist import RESPONSE_FORMAT, response_format
from dripiq_planner.strategist.prompts import PROMPT_VERSION, VARIANTS_PROMPT_VERSION, system_prompt
from dripiq_planner.tenant_settings import TenantSettingsService

FACTS = {"contact": {"first_name": "Ada"}, "lead": {"company_name": "Acme"}, "product": {"name": "Widget"}}
TWO = VariantRequest(2, VariantFocus.BOTH)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(retry_after_seconds=0.01) as server:
        yield server


@pytest_asyncio.fixture
async def ai_creator(engine: AsyncEngine, clock: ManualClock, fake: FakeOpenAI) -> AsyncIterator[CampaignCreator]:
    strategist = openai_strategist(fake.url)
    yield CampaignCreator(engine, clock, Planner(engine, strategist), plan_inline=True)
    await strategist.aclose()


def planned(tenant_id: str, **overrides: Any) -> pb.CreateCampaignRequest:
    """A request without a strategy: the strategist writes one."""
    req = request(tenant_id, **overrides)
    req.ClearField("strategy")
    return req


async def configure(engine: AsyncEngine, clock: ManualClock, tenant_id: str, **settings: Any) -> pb.TenantSettings:
    return await TenantSettingsService(engine, clock).update(
        pb.UpdateTenantSettingsRequest(
            settings=pb.TenantSettings(tenant_id=tenant_id, **settings), update_mask={"paths": list(settings)}
        )
    )


async def generations(engine: AsyncEngine, tenant_id: str) -> list[Any]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(ai_generations).where(ai_generations.c.tenant_id == tenant_id).order_by(ai_generations.c.id)
        )
        return list(rows)


def answer(request: VariantRequest, change: Any = None) -> str:
    """The fake's valid answer to `request`'s schema, changed by `change(answer)`."""
    written = valid_strategy(FACTS, response_format(request)["json_schema"]["schema"])
    if change is not None:
        change(written)
    return json.dumps(written)


# -- what the model is asked, and what comes back ------------------------------------------


async def test_a_tenant_with_two_ai_variants_gets_email_steps_with_variants_a_and_b(
    engine, clock, tenant_id, fake, ai_creator
):
    settings = await configure(engine, clock, tenant_id, ai_variants=2)
    assert (settings.ai_variants, settings.ai_variant_focus) == (2, pb.AI_VARIANT_FOCUS_BOTH)

    campaign = await ai_creator.create(planned(tenant_id))

    assert campaign.strategist == "openai"
    for step in campaign.steps:
        a, b = step.variants
        assert (a.name, a.weight, b.name, b.weight) == ("A", 1, "B", 1)
        # A is the step's own copy; B another version of it.
        assert (a.subject, a.content, a.call_to_action) == (step.subject, step.content, step.call_to_action)
        assert b.content != a.content and b.call_to_action != a.call_to_action
    # The threaded follow-up keeps its thread's subject in every version.
    assert [v.subject for v in campaign.steps[1].variants] == ["", ""]

    [asked] = fake.requests
    assert asked.texts("system") == [system_prompt(VARIANTS_PROMPT_VERSION, TWO)]
    assert 'named "B", in that order' in asked.texts("system")[0]
    assert asked.response_format == response_format(TWO)
    [generation] = await generations(engine, tenant_id)
    assert (generation.outcome, generation.prompt_version) == ("ok", "strategy-v3")
    assert generation.input_json["variants"] == {"count": 2, "focus": "both"}


async def test_a_subject_test_of_three_varies_only_subjects_of_emails_that_start_a_thread(
    engine, clock, tenant_id, fake, ai_creator
):
    await configure(engine, clock, tenant_id, ai_variants=3, ai_variant_focus=pb.AI_VARIANT_FOCUS_SUBJECT)

    campaign = await ai_creator.create(planned(tenant_id))

    first, follow_up, last = campaign.steps
    for step in (first, last):
        assert [v.name for v in step.variants] == ["A", "B", "C"]
        assert [(v.content, v.call_to_action) for v in step.variants] == [("", "")] * 3
        assert step.variants[0].subject == step.subject
        assert len({v.subject for v in step.variants}) == 3
    assert list(follow_up.variants) == []
    version = response_format(VariantRequest(3, VariantFocus.SUBJECT))["json_schema"]["schema"]
    item_schema = version["properties"]["outreachCampaign"]["items"]["properties"]["variants"]["items"]
    assert item_schema["required"] == ["name", "subject"]
    assert item_schema["properties"]["name"]["enum"] == ["B", "C"]


async def test_ai_variants_0_asks_exactly_what_it_asked_before(engine, clock, tenant_id, fake, ai_creator):
    await ai_creator.create(planned(tenant_id, contact=pb.Contact(contact_id="c-1", email="a@example.com")))
    # Turned on, then off again: back to the same request.
    await configure(engine, clock, tenant_id, ai_variants=2, ai_variant_focus=pb.AI_VARIANT_FOCUS_CONTENT)
    await configure(engine, clock, tenant_id, ai_variants=0)
    campaign = await ai_creator.create(planned(tenant_id, contact=pb.Contact(contact_id="c-2", email="a@example.com")))

    assert all(not step.variants for step in campaign.steps)
    never, off = fake.requests
    for asked in (never, off):
        assert asked.texts("system") == [system_prompt(PROMPT_VERSION)]
        assert asked.response_format == RESPONSE_FORMAT
    assert never.texts("user") == off.texts("user")
    rows = await generations(engine, tenant_id)
    assert [(r.prompt_version, r.prompt_tokens) for r in rows] == [("strategy-v2", rows[0].prompt_tokens)] * 2
    assert all(set(r.input_json) == {"facts"} for r in rows)


def test_every_variant_schema_is_strict_and_the_fakes_answer_fits_it() -> None:
    for count in (2, 3):
        for focus in VariantFocus:
            schema = response_format(VariantRequest(count, focus))["json_schema"]["schema"]
            assert strict_schema_problem(schema) is None
            jsonschema.validate(valid_strategy(FACTS, schema), schema)
    # Without an A/B test the fake writes no versions: strict mode would not let it.
    assert "variants" not in valid_strategy(FACTS, RESPONSE_FORMAT["json_schema"]["schema"])["outreachCampaign"][0]


def test_a_problem_in_a_stored_variant_is_named_where_the_model_wrote_it() -> None:
    assert answer_path("outreachCampaign[2].variants[0].subject") == "outreachCampaign[2].subject"
    assert answer_path("outreachCampaign[2].variants[2].content") == "outreachCampaign[2].variants[1].content"
    assert answer_path("outreachCampaign[2].variants[1]") == "outreachCampaign[2].variants[0]"
    assert answer_path("outreachCampaign[2].timing") == "outreachCampaign[2].timing"


# -- faults --------------------------------------------------------------------------------


async def test_a_variant_with_a_url_off_the_allow_list_is_repaired_then_the_template_writes(
    engine, clock, tenant_id, fake, ai_creator
):
    await configure(engine, clock, tenant_id, ai_variants=2, allowed_domains=["acme.example"])

    def link(written: dict[str, Any]) -> None:
        written["outreachCampaign"][0]["variants"][0]["content"] += "\n\nSee https://evil.example/offer"

    fake.queue(answer(TWO, link), answer(TWO, link))

    campaign = await ai_creator.create(planned(tenant_id))

    assert campaign.strategist == "template"
    assert all(not step.variants for step in campaign.steps)
    assert "evil.example" not in json.dumps([s.content for s in campaign.steps])
    problem = "outreachCampaign[0].variants[0].content: disallowed_link: https://evil.example/offer"
    _, repair = fake.requests
    assert problem in repair.texts("user")[1]
    assert repair.texts("system") == [system_prompt(VARIANTS_PROMPT_VERSION, TWO)]
    rows = await generations(engine, tenant_id)
    assert [(r.strategist, r.outcome) for r in rows] == [
        ("openai", "failed"),
        ("openai", "failed"),
        ("template", "fallback"),
    ]
    assert problem in rows[0].error and problem in rows[2].error
    assert rows[1].input_json["variants"] == {"count": 2, "focus": "both"}
    assert campaign.strategist_reason.startswith("invalid_answer: ")


async def test_a_wrong_count_or_a_repeated_version_goes_to_the_repair(engine, clock, tenant_id, fake, ai_creator):
    await configure(engine, clock, tenant_id, ai_variants=2)

    def broken(written: dict[str, Any]) -> None:
        first, _, last = written["outreachCampaign"]
        first["variants"] = []
        last["variants"][0].update(subject=last["subject"], content=last["content"], callToAction=last["callToAction"])

    fake.queue(answer(TWO, broken), VALID)

    campaign = await ai_creator.create(planned(tenant_id))

    assert campaign.strategist == "openai"
    assert [v.name for v in campaign.steps[0].variants] == ["A", "B"]
    failed, repaired = await generations(engine, tenant_id)
    assert (failed.outcome, repaired.outcome) == ("failed", "repaired")
    assert "outreachCampaign[0].variants: needs 1 version(s) named B in that order, got none" in failed.error
    assert "outreachCampaign[2].variants[0]: repeats version A's copy" in failed.error


async def test_versions_on_a_step_that_has_none_go_to_the_repair(engine, clock, tenant_id, fake, ai_creator):
    request = VariantRequest(2, VariantFocus.SUBJECT)
    await configure(engine, clock, tenant_id, ai_variants=2, ai_variant_focus=pb.AI_VARIANT_FOCUS_SUBJECT)

    def on_thread(written: dict[str, Any]) -> None:
        written["outreachCampaign"][1]["variants"] = [{"name": "B", "subject": "Another subject"}]

    fake.queue(answer(request, on_thread), answer(request, on_thread))

    campaign = await ai_creator.create(planned(tenant_id))

    assert campaign.strategist == "template"
    assert "outreachCampaign[1].variants: must be empty: a follow-up in the previous email's thread" in (
        campaign.strategist_reason
    )


async def test_a_model_that_does_not_answer_leaves_the_template_without_variants(
    engine, clock, tenant_id, fake, ai_creator
):
    await configure(engine, clock, tenant_id, ai_variants=3)
    fake.queue(SERVER_ERROR)

    campaign = await ai_creator.create(planned(tenant_id))

    assert campaign.strategist == "template"
    assert all(not step.variants for step in campaign.steps)
    assert campaign.strategist_reason.startswith("model_error: ")


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"ai_variants": 1}, "settings.ai_variants"),
        ({"ai_variants": 4}, "settings.ai_variants"),
        ({"ai_variants": -2}, "settings.ai_variants"),
        ({"ai_variants": 2_147_483_647}, "settings.ai_variants"),
        ({"ai_variant_focus": 9}, "settings.ai_variant_focus"),
    ],
)
async def test_a_bad_setting_is_invalid_argument_naming_the_field(engine, clock, tenant_id, settings, field):
    with pytest.raises(InvalidArgument) as refused:
        await configure(engine, clock, tenant_id, **settings)
    assert refused.value.field == field
    stored = await TenantSettingsService(engine, clock).get(tenant_id)
    assert (stored.ai_variants, stored.ai_variant_focus) == (0, pb.AI_VARIANT_FOCUS_BOTH)


# -- sending -------------------------------------------------------------------------------

CONTACTS = 60


async def test_ai_written_variants_are_sent_split_by_weight(engine, clock, tenant_id, fake, ai_creator):
    await configure(engine, clock, tenant_id, ai_variants=2, ai_variant_focus=pb.AI_VARIANT_FOCUS_SUBJECT)
    contacts = [f"contact-{i}" for i in range(CONTACTS)]
    items = [item(c) for c in contacts]
    for each in items:
        each.ClearField("strategy")

    answered = await ai_creator.batch_create(pb.BatchCreateCampaignsRequest(tenant_id=tenant_id, requests=items))
    created = {r.campaign.contact_id: r.campaign for r in answered.results}
    assert {c.strategist for c in created.values()} == {"openai"}

    payloads = [c.schedule.payload for c in timer_commands(await drain_outbox(engine, tenant_id))]
    await Reactor(engine, clock).on_timers(payloads)
    sends = {s.contact_id: s for s in send_commands(await drain_outbox(engine, tenant_id))}
    assert set(sends) == set(contacts)

    for contact, send in sends.items():
        step = created[contact].steps[0]
        chosen = variants.choose(
            variants.stored([{"name": v.name, "weight": v.weight} for v in step.variants]),
            tenant_id=tenant_id,
            contact_id=contact,
            step_index=0,
        )
        assert send.variant == chosen.name
        by_name = {v.name: v for v in step.variants}
        assert send.subject == by_name[send.variant].subject
        assert send.body_text.startswith(step.content)
    shares = sum(1 for s in sends.values() if s.variant == "B") / CONTACTS
    # Equal weights: an even split in expectation; the hash is fixed, so this cannot flake.
    assert 0.3 < shares < 0.7
