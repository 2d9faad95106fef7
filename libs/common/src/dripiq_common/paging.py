"""Page sizes and opaque page tokens (AIP-158), shared by every List RPC.

A token is the sort key of the last row of the previous page, so pages stay stable while
rows are added and a query never skips with OFFSET.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from dripiq_common.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(value: int, *, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE) -> int:
    if value < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(value or default, maximum)


def encode_token(*key: datetime | int | str) -> str:
    """A page token for the sort key of a page's last row (datetimes must be aware)."""
    parts = [part.isoformat() if isinstance(part, datetime) else part for part in key]
    return base64.urlsafe_b64encode(json.dumps(parts, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str, *types: type[datetime] | type[int] | type[str]) -> tuple[Any, ...] | None:
    """The key a token stands for, each part of the type the list sorts by; None (before
    everything) for no token. Anything else, however it is malformed, is INVALID_ARGUMENT
    naming `page_token`: it never reaches a query."""
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        key = None
    if not isinstance(key, list) or len(key) != len(types):
        raise _not_ours()
    return tuple(_part(value, kind) for value, kind in zip(key, types, strict=True))


def _part(value: Any, kind: type[datetime] | type[int] | type[str]) -> datetime | int | str:
    if kind is datetime:
        try:
            moment = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise _not_ours()
        return moment
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _not_ours()
        return value
    if not isinstance(value, str):
        raise _not_ours()
    return value


def _not_ours() -> InvalidArgument:
    return InvalidArgument("page_token", "is not a token from a previous response")
