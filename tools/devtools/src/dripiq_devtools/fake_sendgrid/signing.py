"""The Signed Event Webhook: the ECDSA P-256 key the fake signs with, kept across restarts, and
the bytes and headers of a batch signed as SendGrid signs it."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


def generate_private_key_pem() -> bytes:
    return private_key_pem(ec.generate_private_key(ec.SECP256R1()))


def load_or_create_private_key(path: Path) -> bytes:
    """Reuse the key across restarts so the public key configured in the events service holds."""
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = generate_private_key_pem()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return pem


def load_private_key(pem: bytes | None) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem or generate_private_key_pem(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the Event Webhook key must be an ECDSA P-256 private key")
    return key


def public_key_base64(key: ec.EllipticCurvePrivateKey) -> str:
    """Base64 DER SubjectPublicKeyInfo: the 'verification key' SendGrid shows in its UI."""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def sign(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str) -> str:
    """SendGrid's Event Webhook signature: base64 DER ECDSA-SHA256 over timestamp + body."""
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode("ascii")


def signed_request(
    key: ec.EllipticCurvePrivateKey, events: list[dict[str, Any]], timestamp: str
) -> tuple[bytes, dict[str, str]]:
    """The exact bytes and headers SendGrid would post, including its trailing CRLF."""
    body = json.dumps(events, separators=(",", ":")).encode() + b"\r\n"
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "SendGrid Event API",
        SIGNATURE_HEADER: sign(key, body, timestamp),
        TIMESTAMP_HEADER: timestamp,
    }
    return body, headers
