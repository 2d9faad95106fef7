"""How the edge tells SendGrid's requests from forged ones: ECDSA signatures over the raw body
(Event Webhook, Inbound Parse security policy), OAuth client credentials and the bearer tokens
they buy, and the secrets' minimum length. No I/O: the routes in app.py ask these."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook

from dripiq_common.tokens import TokenSigner

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
# Shorter secrets (an OAuth client secret, a Parse URL secret) could be guessed online.
MIN_SECRET_CHARS = 32


@dataclass(frozen=True)
class OAuthClient:
    """SendGrid's Event Webhook OAuth (client credentials): SendGrid asks TOKEN_PATH for a
    token with these credentials, then sends it as a bearer token with every batch."""

    client_id: str
    client_secret: str
    token_ttl_seconds: int = 3600


def load_verifier(public_key: str) -> EventWebhook:
    """SendGrid's verifier with the key converted once; ValueError when it is not a key."""
    try:
        verifier = EventWebhook(public_key.strip())
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValueError(f"not a base64 ECDSA public key: {exc}") from exc
    if not isinstance(verifier.public_key, ec.EllipticCurvePublicKey):
        raise ValueError("not an ECDSA public key")
    return verifier


def load_verifiers(public_keys: str) -> tuple[EventWebhook, ...]:
    """One verifier per comma-separated key (two during a key rotation); ValueError naming the bad one."""
    keys = [key.strip() for key in public_keys.split(",") if key.strip()]
    if not keys:
        raise ValueError("no key given")
    verifiers = []
    for n, key in enumerate(keys, 1):
        try:
            verifiers.append(load_verifier(key))
        except ValueError as exc:
            raise ValueError(f"key {n} of {len(keys)}: {exc}") from None
    return tuple(verifiers)


def signature_problem(
    verifiers: Sequence[EventWebhook],
    *,
    body: str | bytes,
    signature: str | None,
    timestamp: str | None,
    now: float,
    tolerance_seconds: float,
) -> str | None:
    """Why a request SendGrid signs (Event Webhook, Inbound Parse) is not to be trusted, or None
    when it is: ECDSA P-256/SHA-256 over the timestamp followed by the raw body, as SendGrid's
    own helper checks it, but over bytes (mail is not always UTF-8)."""
    if not signature or not timestamp:
        return "missing signature headers"
    try:
        signed_at = int(timestamp)
    except ValueError:
        return "timestamp is not a number"
    if abs(now - signed_at) > tolerance_seconds:
        return "timestamp outside the accepted window"
    try:
        decoded = base64.b64decode(signature)
    except (ValueError, binascii.Error):
        return "signature does not match"
    signed = timestamp.encode() + (body.encode() if isinstance(body, str) else body)
    for verifier in verifiers:
        try:
            verifier.public_key.verify(decoded, signed, ec.ECDSA(hashes.SHA256()))
            return None
        except (InvalidSignature, ValueError):
            pass
    return "signature does not match"


@dataclass(frozen=True)
class ParseAuth:
    """How Inbound Parse posts prove they come from SendGrid: every mechanism configured must
    pass. `verifiers`: the Parse security policy's signature; `oauth`: its OAuth (a bearer token
    this edge issued); `url_secret`: for an account without a policy, the secret path segment."""

    verifiers: Sequence[EventWebhook] = ()
    oauth: bool = False
    url_secret: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.verifiers or self.oauth or self.url_secret)


def bearer_problem(signer: TokenSigner, oauth: OAuthClient | None, *, now: float, authorization: str) -> str | None:
    """Why an Authorization header does not carry a token this edge issued to `oauth`'s client
    (None when it does)."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return "missing bearer token"
    client_id = signer.parse_access_token(token.strip(), now=now)
    if client_id is None or oauth is None or client_id != oauth.client_id:
        return "bearer token not valid or expired"
    return None


def client_credentials(authorization: str, form: Mapping[str, object]) -> tuple[str, str]:
    """(client_id, client_secret) from HTTP Basic, else from the form; empty when absent."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() == "basic":
        try:
            client_id, _, client_secret = base64.b64decode(encoded.strip()).decode().partition(":")
            return client_id, client_secret
        except (ValueError, UnicodeDecodeError):
            return "", ""
    return str(form.get("client_id", "")), str(form.get("client_secret", ""))
