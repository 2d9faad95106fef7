"""The Mail Send JSON schema check: errors as the spec is written, its custom_args erratum, and the
fast first pass never passing a body that jsonschema refuses.
"""

from __future__ import annotations

from typing import Any

import pytest
from fake_sendgrid_support import RECIPIENT, valid_payload

from dripiq_devtools.sendgrid_schema import is_known_erratum, mail_send_schema_errors, mail_send_schema_violations


def test_schema_reports_the_spec_as_written_naming_json_paths() -> None:
    body = valid_payload(personalizations=[{"to": [{"email": "nobody"}]}, {}], categories=["a", "a"])
    del body["from"]

    errors = mail_send_schema_errors(body)

    assert errors == [
        "$.personalizations[0].to[0].email: 'nobody' is not a 'email'",
        "$.personalizations[1].to: 'to' is a required property",
        "$.categories: ['a', 'a'] has non-unique elements",
        "$.custom_args: {'campaign_id': 'camp-1'} is not of type 'string'",
        "$.from: 'from' is a required property",
    ]


def test_schema_keeps_its_custom_args_erratum_for_callers_to_recognise() -> None:
    [violation] = mail_send_schema_violations(valid_payload())

    assert violation.path == ("custom_args",)
    assert is_known_erratum(violation)
    assert mail_send_schema_errors(valid_payload(custom_args="camp-1")) == []
    body = valid_payload()
    del body["custom_args"]
    assert mail_send_schema_errors(body) == []


# Bodies right and wrong in every way the schema checks: the Rust first pass must never pass
# one that jsonschema finds a violation in (it may refuse more: it reads `email` strictly).
SCHEMA_PROBES: list[dict[str, Any]] = [
    valid_payload(),
    valid_payload(custom_args="camp-1"),
    {k: v for k, v in valid_payload().items() if k != "custom_args"},
    {k: v for k, v in valid_payload().items() if k != "from"},
    valid_payload(personalizations=[]),
    valid_payload(personalizations=[{"to": []}]),
    valid_payload(personalizations=[{"to": [{"email": "nobody"}]}]),
    valid_payload(personalizations=[{"to": [{"email": "a@b"}]}]),
    valid_payload(personalizations=[{"to": [{"email": "two@@example.com"}]}]),
    valid_payload(personalizations=[{"to": [{"email": RECIPIENT, "name": 7}]}]),
    valid_payload(personalizations=[{"to": [{"email": RECIPIENT}]}] * 1001),
    valid_payload(categories=["a", "a"]),
    valid_payload(categories=[f"c{i}" for i in range(11)]),
    valid_payload(subject=5),
    valid_payload(content=[{"type": "text/plain"}]),
    valid_payload(content="Hi"),
    valid_payload(send_at="tomorrow"),
    valid_payload(headers={"X-Count": 1}),
    valid_payload(reply_to={"email": "nobody"}),
    valid_payload(tracking_settings={"open_tracking": {"enable": "yes"}}),
    valid_payload(tracking_settings={"click_tracking": {"enable": True, "enable_text": True}}),
    valid_payload(asm={"group_id": "one"}),
    valid_payload(unknown_key={"anything": True}),
]


@pytest.mark.parametrize("body", SCHEMA_PROBES)
def test_the_fast_schema_check_never_passes_what_jsonschema_refuses(body: dict[str, Any]) -> None:
    from dripiq_devtools import sendgrid_schema

    fast = sendgrid_schema._fast_validator().is_valid(body)
    thorough = [str(sendgrid_schema._violation(e)) for e in sendgrid_schema._validator().iter_errors(body)]

    assert not (fast and thorough), thorough
    if fast:
        assert mail_send_schema_errors(body) == []
    else:
        assert mail_send_schema_errors(body) == thorough
