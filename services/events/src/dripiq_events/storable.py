"""Values PostgreSQL will store: provider JSON read strictly, and strings and nesting scrubbed.

Text and jsonb refuse NUL characters and lone surrogates, and jsonb refuses NaN, Infinity and
out-of-range numbers. Whatever a provider sends, one such value must not make a whole delivery
fail forever, so it is refused at the door (loads_json) or cleaned (scrub).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

# Nesting kept in a stored raw event; deeper values are replaced by a marker.
MAX_RAW_DEPTH = 32
# What in a JSON body can make a string PostgreSQL refuses: an escaped NUL, an escaped
# surrogate (a pair is fine, but telling pairs apart is scrub's job), or a raw one (the json
# module decodes bytes with surrogatepass). A body without any needs no string scrubbed.
_UNSTORABLE = re.compile(rb"\\u0000|\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_json(body: bytes | str) -> Any:
    """Strict JSON: NaN, Infinity and numbers too large for a double are refused (PostgreSQL's
    jsonb refuses them too), and nesting too deep to parse is ValueError like any bad body.

    orjson parses first (a webhook batch several times faster); what it refuses (lone
    surrogates, deep nesting, out-of-range numbers) gets the json module's verdict. An integer
    past 64 bits comes back from orjson as a float."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def strings_storable(body: bytes) -> bool:
    """No string in this JSON body that scrub() would change (most bodies have no NUL and no
    surrogate anywhere: then only nesting needs scrubbing)."""
    return (b"\\u" not in body and b"\xed" not in body) or _UNSTORABLE.search(body) is None


def scrub(value: Any, depth: int = 0) -> Any:
    """What PostgreSQL can store: no NUL characters (refused in text and jsonb) and no lone
    surrogates (not UTF-8), nesting cut at MAX_RAW_DEPTH. One such value must not make a whole
    batch fail forever."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, list | dict) and depth >= MAX_RAW_DEPTH:
        return "<nested too deeply>"
    if isinstance(value, list):
        return [scrub(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {scrub(k, depth + 1): scrub(v, depth + 1) for k, v in value.items()}
    return value


def nesting_fits(value: dict[str, Any] | list[Any], depth: int) -> bool:
    """No container in `value` (itself at `depth`) so deep that scrub() would cut it."""
    for child in value.values() if type(value) is dict else value:
        if (type(child) is dict or type(child) is list) and (
            depth + 1 >= MAX_RAW_DEPTH or not nesting_fits(child, depth + 1)
        ):
            return False
    return True
