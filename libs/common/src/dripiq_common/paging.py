"""Page sizes and opaque page tokens (AIP-158), shared by every List RPC.

A token is the sort key of the last row of the previous page, so pages stay stable while
rows are added and a query never skips with OFFSET.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from dripiq_common.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(value: int, *, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE) -> int:
    if value < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(value or default, maximum)


def encode_token(*key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key), separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str, *, arity: int) -> list[Any] | None:
    """The key a token stands for; None (before everything) for no token."""
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        key = None
    if not isinstance(key, list) or len(key) != arity:
        raise InvalidArgument("page_token", "is not a token from a previous response")
    return key
