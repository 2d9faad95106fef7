"""Personal data and secrets kept out of logs and dead letters.

Logs go to shared log stores kept for months and read by people who have no business reading
a contact's mail. So every log line passes `redact_event` (dripiq_common.logging), and every
error text that leaves a process in a header (a dead letter's reason) passes `error_text`:

- an email address keeps its domain only (``***@example.com``): enough to see which provider
  or tenant a problem is about, not who;
- a field that holds mail or copy (``body``, ``html``, ``text``, ``content``, ``mail_subject``,
  ``payload`` ...) is replaced by its length (``subject`` is a NATS subject in our logs);
- bearer tokens, JWTs, SendGrid and OpenAI keys, passwords in URLs and our own signed tokens are
  masked wherever they appear in a string.

Redaction is by pattern, so it can miss a name or a phone number inside free text; such text
belongs in a field named for it, which is dropped whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

# Keys whose whole value is mail or copy: logged as its length only.
BODY_KEYS = frozenset(
    {
        "body",
        "content",
        "html",
        "text",
        "plain",
        "mail_subject",
        "payload",
        "reply",
        "facts",
        "prompt",
        "completion",
        "raw",
        "data",
    }
)
# Keys whose whole value is a secret.
SECRET_KEYS = frozenset(
    {"token", "authorization", "password", "secret", "api_key", "client_secret", "access_token", "signature"}
)

_EMAIL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@((?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63})")
_SECRETS = (
    # Authorization headers and "Bearer x" wherever they are quoted.
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    # JWTs: three base64url parts, the first one a JSON header.
    re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    # SendGrid API keys (SG.<22>.<43>) and OpenAI keys (sk-...).
    re.compile(r"\bSG\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),
    # A password in a URL: scheme://user:password@host.
    re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+(?=@)"),
    # Our unsubscribe tokens in links (reply tokens sit in an address's local part, masked below).
    re.compile(r"(?<=/u/)[A-Za-z0-9_-]{16,}"),
)
_MASK = "[redacted]"
_MAX_DEPTH = 4


def redact(text: str) -> str:
    """`text` with secrets masked and email addresses reduced to their domain."""
    for pattern in _SECRETS:
        text = pattern.sub(_MASK, text)
    return _EMAIL.sub(r"***@\1", text)


def error_text(exc: BaseException, *, limit: int = 1000) -> str:
    """An error as one redacted line, `Class: message`, at most `limit` characters: safe to log
    and to carry in a NATS header (no line breaks, which a header cannot hold)."""
    message = redact(" ".join(str(exc).split()))
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:limit]


def one_line(text: str, *, limit: int = 1000) -> str:
    """A reason written by us, redacted and made safe for a header."""
    return redact(" ".join(text.split()))[:limit]


def _value(key: str, value: Any, depth: int) -> Any:
    lowered = key.lower()
    if lowered in SECRET_KEYS:
        return _MASK if value else value
    if lowered in BODY_KEYS and isinstance(value, str | bytes):
        return f"[{len(value)} chars]" if isinstance(value, str) else f"[{len(value)} bytes]"
    if isinstance(value, str):
        return redact(value)
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {k: _value(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_value(key, v, depth + 1) for v in value]
    return value


def redact_event(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: every value of a log line, redacted (see the module)."""
    for key, value in list(event_dict.items()):
        if key == "event":
            event_dict[key] = redact(value) if isinstance(value, str) else value
        else:
            event_dict[key] = _value(key, value, 0)
    return event_dict
