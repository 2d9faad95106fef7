"""Input checks every API shares; each raises InvalidArgument naming the field."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from dripiq_common.errors import InvalidArgument

# Every pattern here is used with fullmatch: `^...$` with match() accepts a trailing newline,
# and a tenant id ends up as a NATS subject token, where a newline breaks the publish.
TENANT = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Deliberately plain: one @, a dot in the domain, no spaces. Deliverability is the provider's job.
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}")
# Timer keys, group keys and kinds travel as NATS header values: visible ASCII only (no
# control characters, no whitespace), so none of them can end a header or forge another.
_HEADER_SAFE = re.compile(r"[!-~]+")
_KIND = re.compile(r"[A-Za-z0-9_.:-]+")
# What the scheduler keeps of a cancel's reason (CancelTimerRequest.reason): longer is refused
# there, so its callers cut theirs to it.
MAX_CANCEL_REASON = 200


def tenant_id(value: str, field: str = "tenant_id") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not is_tenant(value):
        raise InvalidArgument(field, "must be 1-64 letters, digits, '_' or '-'")
    return value


def is_tenant(value: str) -> bool:
    return TENANT.fullmatch(value) is not None


def header_safe(value: str, field: str, *, max_length: int, required: bool = True) -> str:
    """A value that becomes a NATS header (or part of a dedupe id): 1 to `max_length` visible
    ASCII characters, '!' to '~'; empty only when not `required`."""
    if not value:
        if required:
            raise InvalidArgument(field, "is required")
        return value
    if len(value) > max_length:
        raise InvalidArgument(field, f"must be at most {max_length} characters")
    if not _HEADER_SAFE.fullmatch(value):
        raise InvalidArgument(
            field, "must be visible ASCII characters only ('!' to '~'): no spaces or control characters"
        )
    return value


def kind(value: str, field: str, *, max_length: int = 64) -> str:
    """A short machine name: 1 to `max_length` letters, digits, '_', '.', ':' or '-'."""
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > max_length or not _KIND.fullmatch(value):
        raise InvalidArgument(field, f"must be 1-{max_length} letters, digits, '_', '.', ':' or '-'")
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
    if len(value) > 254 or not _EMAIL.fullmatch(value):
        raise InvalidArgument(field, f"is not a valid email address: {value!r}")
    return value


def timestamp(value: Timestamp, field: str, *, present: bool) -> datetime:
    if not present:
        raise InvalidArgument(field, "is required")
    return value.ToDatetime(tzinfo=UTC)
