"""What AI-written copy may name (the allow-list check) and how facts are capped and normalised
before a model sees them. No I/O."""

from __future__ import annotations

import pytest

from dripiq_common.errors import InvalidArgument
from dripiq_planner.facts import FIELD_CAPS, MAX_TOTAL_CHARS, check_and_normalise, normalise
from dripiq_planner.strategist.guards import violations
from dripiq_planner.strategist.links import AllowList, disallowed
from dripiq_planner.strategy import OutreachStep, Strategy

ALLOW = AllowList.of(domains=["acme.example", "bücher.example"], phones=["+14155550100"])


@pytest.mark.parametrize(
    "text",
    [
        "See https://acme.example/pricing.html for more.",
        "See https://app.acme.example/start?plan=team#top.",
        "www.acme.example",
        "docs.eu.acme.example",
        "ACME.EXAMPLE",
        "Write to sales@acme.example or ops@mail.acme.example.",
        "Call +1 415 555 0100, (415) 555-0100 or 415.555.0100.",
        "the unicode domain bücher.example and its punycode xn--bcher-kva.example",
        "Node, e.g. i.e. 3.5 a.m. U.S. on 2030-03-04 for 15 minutes",
    ],
)
def test_the_tenants_own_domains_subdomains_addresses_and_numbers_pass(text: str) -> None:
    assert disallowed(text, ALLOW) == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Reset your password at https://evil.example now.", "disallowed_link: https://evil.example"),
        ("Go to evil.example", "disallowed_link: evil.example"),
        ("Go to www.evil.example/login", "disallowed_link: www.evil.example"),
        ("https://acme.example.evil.io/login", "disallowed_link: https://acme.example.evil.io/login"),
        ("acme.example.evil.io", "disallowed_link: acme.example.evil.io"),
        ("evil-acme.example", "disallowed_link: evil-acme.example"),
        ("notacme.example", "disallowed_link: notacme.example"),
        # Cyrillic "а" and "е": looks like acme.example, is another domain.
        ("https://\u0430cm\u0435.example/login", "disallowed_link: https://\u0430cm\u0435.example/login"),
        ("xn--cme-8cd.example", "disallowed_link: xn--cme-8cd.example"),
        # The host is what follows the "@".
        ("https://acme.example@evil.example/", "disallowed_link: https://acme.example@evil.example/"),
        ("https://acme.example/r?next=https%3A%2F%2Fevil.example", "disallowed_link: https://acme.example/r"),
        ("https://acme.example/r?next=evil.example", "disallowed_link: https://acme.example/r?next=evil.example"),
        ("http://10.0.0.7/login", "disallowed_link: http://10.0.0.7/login"),
        ("evil\u200b.example", "disallowed_link: evil.example"),
        ("evil\u3002example", "disallowed_link: evil.example"),
        ("\uff45\uff56\uff49\uff4c\uff0e\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45", "disallowed_link: evil.example"),
        ("javascript:alert(1)", "disallowed_link: javascript:"),
        ("mail it@evil.example", "disallowed_email: it@evil.example"),
        ("mail it@acme.example.evil.io", "disallowed_email: it@acme.example.evil.io"),
        ("call +1 900 555 0199", "disallowed_phone: +1 900 555 0199"),
        ("call 212-555-0199 today", "disallowed_phone: 212-555-0199"),
        ("call 5550100", "disallowed_phone: 5550100"),
    ],
)
def test_other_links_look_alikes_addresses_and_numbers_are_named(text: str, reason: str) -> None:
    found = disallowed(text, ALLOW)
    assert any(r.startswith(reason) for r in found), found


def test_without_an_allow_list_no_link_address_or_number_passes() -> None:
    assert disallowed("acme.example, a@acme.example, +14155550100", AllowList()) == [
        "disallowed_email: a@acme.example",
        "disallowed_link: acme.example",
        "disallowed_phone: +14155550100",
    ]


def test_the_guard_names_each_step_field_that_links_elsewhere() -> None:
    strategy = Strategy(
        outreach_campaign=[
            OutreachStep(
                type="email",
                timing="Day 0",
                subject="Your evil.example account",
                content="Hi,\n\nsee https://acme.example.",
                call_to_action="Reset it at https://evil.example/reset",
            )
        ]
    )
    found = {(v.field, v.message) for v in violations(strategy, ALLOW)}
    assert found == {
        ("outreachCampaign[0].subject", "disallowed_link: evil.example (not on the sender's allow-list)"),
        (
            "outreachCampaign[0].callToAction",
            "disallowed_link: https://evil.example/reset (not on the sender's allow-list)",
        ),
    }


def test_normalising_removes_what_a_reader_cannot_see() -> None:
    # Full-width letters, a zero-width space, a right-to-left override, a BOM, a control
    # character, tabs and newlines.
    text = "  \uff21\uff43\uff4d\uff45\u200b Corp\u202e\ufeff\x07\t\n  Ltd\u00a0 "
    assert normalise(text) == "Acme Corp Ltd"
    assert normalise("ﬁnance") == "finance"


def _facts(**values: str) -> dict[str, str]:
    facts = {name: "" for name in FIELD_CAPS}
    facts.update(contact_id="c", email="c@example.com", lead_id="l", product_id="p", time_zone="")
    facts.update(values)
    return facts


@pytest.mark.parametrize(("name", "path_cap"), list(FIELD_CAPS.items()))
def test_each_fact_has_a_cap_named_by_its_request_field(name: str, path_cap: tuple[str, int]) -> None:
    path, cap = path_cap
    value = "https://acme.example/" + "a" * (cap - 21) if name == "product_url" else "a" * cap
    assert len(check_and_normalise(_facts(**{name: value}))[name]) == cap
    with pytest.raises(InvalidArgument) as exc:
        check_and_normalise(_facts(**{name: value + "a"}))
    assert exc.value.field == path


def test_the_facts_have_a_cap_together() -> None:
    just_under = {"product_description": "d" * 4000, "title": "t" * 200, "company_name": "c" * 200}
    check_and_normalise(_facts(**just_under))
    over = {**just_under, "product_name": "n" * 200, "first_name": "f" * 100, "last_name": "l" * 100}
    over["product_url"] = "https://acme.example/" + "u" * (MAX_TOTAL_CHARS - 4800 - 21 + 1)
    with pytest.raises(InvalidArgument) as exc:
        check_and_normalise(_facts(**over))
    assert exc.value.field == "facts"


def test_a_product_url_must_be_a_web_url() -> None:
    for bad in ("javascript:alert(1)", "acme.example", "ftp://acme.example/x", "https://"):
        with pytest.raises(InvalidArgument) as exc:
            check_and_normalise(_facts(product_url=bad))
        assert exc.value.field == "product.url"
