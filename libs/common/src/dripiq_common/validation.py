"""Input checks every API shares; each raises InvalidArgument naming the field."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from dripiq_common.errors import InvalidArgument

TENANT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Deliberately plain: one @, a dot in the domain, no spaces. Deliverability is the provider's job.
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


def tenant_id(value: str, field: str = "tenant_id") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not TENANT.fullmatch(value):
        raise InvalidArgument(field, "must be 1-64 letters, digits, '_' or '-'")
    return value


def required(value: str, field: str, *, max_length: int = 256) -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > max_length:
        raise InvalidArgument(field, f"must be at most {max_length} characters")
    return value


def optional(value: str, field: str, *, max_length: int = 256) -> str:
    """May be empty; never longer than `max_length`."""
    if len(value) > max_length:
        raise InvalidArgument(field, f"must be at most {max_length} characters")
    return value


def email(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > 254 or not _EMAIL.match(value):
        raise InvalidArgument(field, f"is not a valid email address: {value!r}")
    return value


def timestamp(value: Timestamp, field: str, *, present: bool) -> datetime:
    if not present:
        raise InvalidArgument(field, "is required")
    return value.ToDatetime(tzinfo=UTC)
