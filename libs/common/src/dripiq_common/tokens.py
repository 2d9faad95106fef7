"""Opaque signed tokens for reply matching and one-click unsubscribe.

The dispatcher signs them into outgoing mail; the edge and the events service verify them
with the same secret (DRIPIQ_TOKEN_SECRET), so neither needs to ask the dispatcher which
message a reply or an unsubscribe belongs to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

_REPLY_MAC_BYTES = 8
_UNSUB_MAC_BYTES = 16
_ACCESS_MAC_BYTES = 16


class TokenSigner:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("token secret must be at least 16 bytes")
        self._secret = secret

    def _mac(self, purpose: bytes, data: bytes, size: int) -> bytes:
        return hmac.new(self._secret, purpose + b"\0" + data, hashlib.sha256).digest()[:size]

    def reply_token(self, message_id: str) -> str:
        """39 lowercase characters: fits an address local part (`reply+<token>@domain`)."""
        raw = uuid.UUID(message_id).bytes
        return base64.b32encode(raw + self._mac(b"reply", raw, _REPLY_MAC_BYTES)).decode().rstrip("=").lower()

    def parse_reply_token(self, token: str) -> str | None:
        """The message id, or None for anything not signed by us."""
        try:
            padded = token.upper() + "=" * (-len(token) % 8)
            data = base64.b32decode(padded)
        except (ValueError, TypeError):
            return None
        raw, mac = data[:16], data[16:]
        if len(raw) != 16 or not hmac.compare_digest(mac, self._mac(b"reply", raw, _REPLY_MAC_BYTES)):
            return None
        return str(uuid.UUID(bytes=raw))

    def unsubscribe_token(self, tenant_id: str, message_id: str) -> str:
        body = f"{tenant_id}|{message_id}".encode()
        mac = self._mac(b"unsubscribe", body, _UNSUB_MAC_BYTES)
        return base64.urlsafe_b64encode(body + mac).decode().rstrip("=")

    def parse_unsubscribe_token(self, token: str) -> tuple[str, str] | None:
        """(tenant_id, message_id), or None for anything not signed by us."""
        try:
            data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            return None
        body, mac = data[:-_UNSUB_MAC_BYTES], data[-_UNSUB_MAC_BYTES:]
        if len(data) <= _UNSUB_MAC_BYTES or not hmac.compare_digest(
            mac, self._mac(b"unsubscribe", body, _UNSUB_MAC_BYTES)
        ):
            return None
        try:
            tenant_id, message_id = body.decode().split("|", 1)
        except (UnicodeDecodeError, ValueError):
            return None
        return tenant_id, message_id

    def access_token(self, client_id: str, expires_at: int) -> str:
        """An OAuth bearer token for `client_id`, valid until `expires_at` (unix seconds)."""
        body = f"{client_id}|{expires_at}".encode()
        return base64.urlsafe_b64encode(body + self._mac(b"access", body, _ACCESS_MAC_BYTES)).decode().rstrip("=")

    def parse_access_token(self, token: str, *, now: float) -> str | None:
        """The client id of a bearer token we issued and that has not expired, else None."""
        try:
            data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            body, mac = data[:-_ACCESS_MAC_BYTES], data[-_ACCESS_MAC_BYTES:]
            if len(data) <= _ACCESS_MAC_BYTES or not hmac.compare_digest(
                mac, self._mac(b"access", body, _ACCESS_MAC_BYTES)
            ):
                return None
            client_id, expires_at = body.decode().rsplit("|", 1)
            return client_id if int(expires_at) > now else None
        except (ValueError, TypeError, UnicodeDecodeError):
            return None


def reply_address(signer: TokenSigner, message_id: str, domain: str) -> str:
    return f"reply+{signer.reply_token(message_id)}@{domain}"


def token_from_reply_address(address: str) -> str | None:
    """`reply+<token>@domain` (any case, with or without a display name) -> token."""
    addr = address.strip().strip("<>").rsplit("<", 1)[-1].rstrip(">")
    local = addr.split("@", 1)[0].lower()
    if not local.startswith("reply+"):
        return None
    return local[len("reply+") :]


def rfc_message_id(message_id: str, domain: str) -> str:
    return f"<{message_id}@{domain}>"
