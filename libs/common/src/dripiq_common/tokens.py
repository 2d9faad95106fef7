"""Signed tokens: reply addresses, one-click unsubscribe links, the edge's OAuth bearer tokens.

The dispatcher signs reply and unsubscribe tokens into outgoing mail; the edge and the events
service verify them, so neither needs to ask the dispatcher which message a reply or an
unsubscribe belongs to (docs/decisions/0005, 0018).

Keys rotate. Each secret (DRIPIQ_TOKEN_SECRET, the current one, and those listed in
DRIPIQ_TOKEN_PREVIOUS_SECRETS) has a short id derived from it, and one key per purpose derived
from it with HKDF, so a reply token's MAC can never pass for an unsubscribe or access token.
New tokens carry the current key's id and are signed with the current key; a token is accepted
when a listed secret with its id verifies it. Tokens from before key ids (MAC over the raw
secret) stay accepted for as long as their secret is listed: mail already sent keeps working.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_SECRET_BYTES = 16
KEY_ID_BYTES = 2
# Longer than any token we issue; anything longer is refused before it is decoded.
MAX_TOKEN_CHARS = 512

_HKDF_SALT = b"dripiq token keys"
# Reply tokens ride in an address local part (at most 64 characters with `reply+`), so their
# MAC is shorter than the others'; it is checked per message, never offline against a hash.
_REPLY_MAC_BYTES = 12
_UNSUB_MAC_BYTES = 16
_ACCESS_MAC_BYTES = 16
# First byte of a keyed unsubscribe or access token. A token from before key ids starts with
# the first character of a tenant or client id, never this byte.
_KEYED = b"\x01"

# Before key ids: MAC sizes, and the lengths that tell those tokens apart.
_LEGACY_REPLY_MAC_BYTES = 8
_REPLY_BYTES = KEY_ID_BYTES + 16 + _REPLY_MAC_BYTES  # 30 bytes: 48 base32 characters
_LEGACY_REPLY_BYTES = 16 + _LEGACY_REPLY_MAC_BYTES  # 24 bytes: 39 base32 characters


class Purpose(StrEnum):
    """What a token is for; each purpose has its own key."""

    REPLY = "reply"
    UNSUBSCRIBE = "unsubscribe"
    ACCESS = "access"


class TokenProblem(StrEnum):
    """Why a token is refused."""

    # Not a token of this kind at all: cut, padded, not the right encoding or length.
    MALFORMED = "malformed"
    # Names a key this process does not hold: retired from the previous list, or another
    # deployment's (or damaged where the key id is).
    UNKNOWN_KEY = "unknown_key"
    # A listed key, but the MAC does not match: damaged or forged.
    BAD_SIGNATURE = "bad_signature"
    # A genuine access token past its expiry.
    EXPIRED = "expired"


class InvalidToken(ValueError):
    """A token that is refused, and why (safe to show to whoever presented it)."""

    def __init__(self, problem: TokenProblem, detail: str) -> None:
        super().__init__(f"{problem}: {detail}")
        self.problem = problem
        self.detail = detail


def _derive(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_HKDF_SALT, info=info).derive(secret)


def key_id(secret: bytes) -> bytes:
    """The id of a secret's keys: derived, so every process holding the secret agrees on it."""
    return _derive(secret, b"dripiq token key id", KEY_ID_BYTES)


@dataclass(frozen=True)
class TokenKey:
    """One secret and the keys derived from it."""

    id: bytes
    # Only tokens from before key ids were signed with the secret itself.
    secret: bytes
    purpose_keys: dict[Purpose, bytes]

    @classmethod
    def from_secret(cls, secret: bytes) -> TokenKey:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"token secret must be at least {MIN_SECRET_BYTES} bytes")
        return cls(
            id=key_id(secret),
            secret=secret,
            purpose_keys={p: _derive(secret, b"dripiq token purpose " + p.value.encode(), 32) for p in Purpose},
        )

    @property
    def id_hex(self) -> str:
        return self.id.hex()

    def mac(self, purpose: Purpose, data: bytes, size: int) -> bytes:
        return hmac.new(self.purpose_keys[purpose], data, hashlib.sha256).digest()[:size]

    def legacy_mac(self, purpose: Purpose, data: bytes, size: int) -> bytes:
        """The MAC of a token from before key ids: the raw secret, the purpose as a label."""
        return hmac.new(self.secret, purpose.value.encode() + b"\0" + data, hashlib.sha256).digest()[:size]


class TokenSigner:
    """Signs with the current secret's keys; verifies with the current and every previous one."""

    def __init__(self, secret: bytes, previous: Sequence[bytes] = ()) -> None:
        self.current = TokenKey.from_secret(secret)
        keys = [self.current]
        for old in previous:
            if all(old != k.secret for k in keys):
                keys.append(TokenKey.from_secret(old))
        self.keys: tuple[TokenKey, ...] = tuple(keys)

    @property
    def key_ids(self) -> tuple[str, tuple[str, ...]]:
        """(current, previous) key ids in hex, for the start-up log: every process must agree."""
        return self.current.id_hex, tuple(k.id_hex for k in self.keys[1:])

    def _with_id(self, kid: bytes) -> list[TokenKey]:
        # Two-byte ids may collide: every key that has the id is tried.
        return [k for k in self.keys if hmac.compare_digest(k.id, kid)]

    # -- reply tokens: base32, lowercase, in an address local part --------------------------

    def reply_token(self, message_id: str) -> str:
        """48 lowercase characters: fits an address local part (`reply+<token>@domain`, 54)."""
        signed = self.current.id + uuid.UUID(message_id).bytes
        return _b32(signed + self.current.mac(Purpose.REPLY, signed, _REPLY_MAC_BYTES))

    def read_reply_token(self, token: str) -> str:
        """The message id of a reply token we signed; InvalidToken saying why not."""
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken(TokenProblem.MALFORMED, "too long")
        try:
            data = base64.b32decode(token + "=" * (-len(token) % 8), casefold=True)
        except (binascii.Error, ValueError):
            raise InvalidToken(TokenProblem.MALFORMED, "not base32") from None
        if len(data) == _REPLY_BYTES:
            kid, raw, mac = data[:KEY_ID_BYTES], data[KEY_ID_BYTES:-_REPLY_MAC_BYTES], data[-_REPLY_MAC_BYTES:]
            self._check(Purpose.REPLY, kid, kid + raw, mac)
        elif len(data) == _LEGACY_REPLY_BYTES:
            raw, mac = data[:16], data[16:]
            self._check_legacy(Purpose.REPLY, raw, mac)
        else:
            raise InvalidToken(TokenProblem.MALFORMED, f"{len(data)} bytes is no reply token's length")
        return str(uuid.UUID(bytes=raw))

    def parse_reply_token(self, token: str) -> str | None:
        """The message id, or None for anything not signed by a key we hold."""
        try:
            return self.read_reply_token(token)
        except InvalidToken:
            return None

    # -- unsubscribe tokens: URL-safe base64, in List-Unsubscribe links ---------------------

    def unsubscribe_token(self, tenant_id: str, message_id: str) -> str:
        return self._sign_blob(Purpose.UNSUBSCRIBE, f"{tenant_id}|{message_id}".encode(), _UNSUB_MAC_BYTES)

    def read_unsubscribe_token(self, token: str) -> tuple[str, str]:
        """(tenant_id, message_id) of an unsubscribe token we signed; InvalidToken saying why not."""
        body = self._read_blob(Purpose.UNSUBSCRIBE, token, _UNSUB_MAC_BYTES)
        try:
            tenant_id, message_id = body.decode().split("|", 1)
        except (UnicodeDecodeError, ValueError):
            raise InvalidToken(TokenProblem.MALFORMED, "signed, but names no tenant and message") from None
        return tenant_id, message_id

    def parse_unsubscribe_token(self, token: str) -> tuple[str, str] | None:
        """(tenant_id, message_id), or None for anything not signed by a key we hold."""
        try:
            return self.read_unsubscribe_token(token)
        except InvalidToken:
            return None

    # -- OAuth access tokens: the edge issues and checks them itself -------------------------

    def access_token(self, client_id: str, expires_at: int) -> str:
        """An OAuth bearer token for `client_id`, valid until `expires_at` (unix seconds)."""
        return self._sign_blob(Purpose.ACCESS, f"{client_id}|{expires_at}".encode(), _ACCESS_MAC_BYTES)

    def read_access_token(self, token: str, *, now: float) -> str:
        """The client id of a bearer token we issued that has not expired; InvalidToken else."""
        body = self._read_blob(Purpose.ACCESS, token, _ACCESS_MAC_BYTES)
        try:
            client_id, expires_at = body.decode().rsplit("|", 1)
            expired = int(expires_at) <= now
        except (UnicodeDecodeError, ValueError):
            raise InvalidToken(TokenProblem.MALFORMED, "signed, but names no client and expiry") from None
        if expired:
            raise InvalidToken(TokenProblem.EXPIRED, "expired")
        return client_id

    def parse_access_token(self, token: str, *, now: float) -> str | None:
        """The client id of a bearer token we issued and that has not expired, else None."""
        try:
            return self.read_access_token(token, now=now)
        except InvalidToken:
            return None

    # -- the two layouts ------------------------------------------------------------------

    def _sign_blob(self, purpose: Purpose, body: bytes, mac_size: int) -> str:
        """URL-safe base64 of marker, key id, body and MAC (over all that precedes it)."""
        signed = _KEYED + self.current.id + body
        return _b64(signed + self.current.mac(purpose, signed, mac_size))

    def _read_blob(self, purpose: Purpose, token: str, mac_size: int) -> bytes:
        """The verified body of a URL-safe base64 token, keyed or from before key ids."""
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken(TokenProblem.MALFORMED, "too long")
        # Strict: no padding, no characters of the other base64 alphabet, nothing skipped.
        if not token or any(c in "+/=" for c in token):
            raise InvalidToken(TokenProblem.MALFORMED, "not URL-safe base64")
        try:
            data = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise InvalidToken(TokenProblem.MALFORMED, "not URL-safe base64") from None
        if data[:1] == _KEYED:
            if len(data) <= 1 + KEY_ID_BYTES + mac_size:
                raise InvalidToken(TokenProblem.MALFORMED, "too short")
            signed, mac = data[:-mac_size], data[-mac_size:]
            self._check(purpose, data[1 : 1 + KEY_ID_BYTES], signed, mac)
            return signed[1 + KEY_ID_BYTES :]
        if len(data) <= mac_size:
            raise InvalidToken(TokenProblem.MALFORMED, "too short")
        body, mac = data[:-mac_size], data[-mac_size:]
        self._check_legacy(purpose, body, mac)
        return body

    def _check(self, purpose: Purpose, kid: bytes, signed: bytes, mac: bytes) -> None:
        keys = self._with_id(kid)
        if not keys:
            raise InvalidToken(TokenProblem.UNKNOWN_KEY, f"signed with key {kid.hex()}, which is not accepted here")
        if not any(hmac.compare_digest(mac, k.mac(purpose, signed, len(mac))) for k in keys):
            raise InvalidToken(TokenProblem.BAD_SIGNATURE, "signature does not match")

    def _check_legacy(self, purpose: Purpose, body: bytes, mac: bytes) -> None:
        if not any(hmac.compare_digest(mac, k.legacy_mac(purpose, body, len(mac))) for k in self.keys):
            # No key id to tell a retired secret from damage or forgery.
            raise InvalidToken(TokenProblem.BAD_SIGNATURE, "signature does not match any key accepted here")


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def parse_secrets(value: str) -> list[bytes]:
    """Secrets listed with commas (spaces around them ignored, empty items skipped)."""
    return [item.strip().encode() for item in value.split(",") if item.strip()]


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
