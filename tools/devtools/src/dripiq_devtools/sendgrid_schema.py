"""Mail Send bodies held to SendGrid's own published schema (`specs/sendgrid_mail_v3.json`).

The schema is the `POST /v3/mail/send` request body of SendGrid's OpenAPI 3.1 description, so it
is JSON Schema Draft 2020-12; its `#/components/...` references resolve inside the same file.
This module reports the spec as written, errata included (see `specs/README.md`): the fake
SendGrid and the tests that hold the dispatcher to the spec decide what to do about them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator, FormatChecker, ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).parent / "specs" / "sendgrid_mail_v3.json"
# Any absolute URI will do: it only names the spec inside the registry.
_SPEC_URI = "urn:dripiq:sendgrid:tsg_mail_v3"
_MAIL_SEND_MEDIA_TYPE = "application/json"

JsonPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class SchemaViolation:
    """One place where a body breaks the spec.

    `path` leads to the offending value; for a missing required property it ends with that
    property's name. `keyword` is the JSON Schema keyword that failed (`type`, `maxItems`, ...),
    `limit` its value in the schema, `value` what the body holds there (None when missing).
    """

    path: JsonPath
    keyword: str
    limit: Any
    value: Any
    message: str

    @property
    def json_path(self) -> str:
        return "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in self.path)

    def __str__(self) -> str:
        return f"{self.json_path}: {self.message}"


def mail_send_schema_errors(payload: Any) -> list[str]:
    """Every way `payload` breaks the Mail Send request schema, each naming its JSON path."""
    return [str(violation) for violation in mail_send_schema_violations(payload)]


def mail_send_schema_violations(payload: Any) -> list[SchemaViolation]:
    """The same, as values to act on: what failed, where, against which limit.

    A body is first checked in Rust (jsonschema-rs, tens of microseconds); only a body it finds
    wrong is walked again by jsonschema for the violations. The Rust check is the stricter of
    the two (it checks `email` as an address, jsonschema only for an '@'), so a body it passes
    has no violation either way."""
    if _fast_validator().is_valid(payload):
        return []
    return [_violation(error) for error in _validator().iter_errors(payload)]


def is_known_erratum(violation: SchemaViolation) -> bool:
    """The spec types the top-level custom_args as a string; the real API wants an object."""
    return violation.path == ("custom_args",) and violation.keyword == "type"


def _violation(error: ValidationError) -> SchemaViolation:
    path: JsonPath = tuple(error.absolute_path)
    value = error.instance
    if error.validator == "required":
        # jsonschema reports a missing property at its parent; the property is the one it names.
        names = error.validator_value if isinstance(error.validator_value, list) else []
        missing = [name for name in names if error.message == f"{name!r} is a required property"]
        path, value = (*path, *missing[:1]), None
    return SchemaViolation(path, str(error.validator), error.validator_value, value, error.message)


@cache
def _spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


@cache
def _fast_validator() -> jsonschema_rs.Draft202012Validator:
    # The whole spec as one schema document whose root is a reference to the body's schema:
    # the OpenAPI keys around it are not JSON Schema keywords and are ignored.
    document = {**_spec(), "$ref": _mail_send_body_pointer(_spec())}
    return jsonschema_rs.Draft202012Validator(document, validate_formats=True)


@cache
def _validator() -> Draft202012Validator:
    spec = _spec()
    registry = Registry().with_resource(_SPEC_URI, DRAFT202012.create_resource(spec))
    return Draft202012Validator(
        {"$ref": f"{_SPEC_URI}{_mail_send_body_pointer(spec)}"},
        registry=registry,
        format_checker=FormatChecker(formats=["email"]),
    )


def _mail_send_body_pointer(spec: dict[str, Any]) -> str:
    """`#/...` pointer to the schema of the JSON body that `POST /v3/mail/send` takes."""
    request_body = spec["paths"]["/v3/mail/send"]["post"]["requestBody"]["$ref"]
    return f"{request_body}/content/{_MAIL_SEND_MEDIA_TYPE.replace('/', '~1')}/schema"
