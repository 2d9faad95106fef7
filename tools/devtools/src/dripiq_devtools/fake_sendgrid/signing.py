"""The Signed Event Webhook and the Inbound Parse security policy's signature: the ECDSA P-256
keys the fake signs with, kept across restarts, and the bytes and headers of a batch or a parsed
mail signed as SendGrid signs them.

SendGrid's Parse documentation says a policy signs with its own ECDSA key pair and that the
signature travels in HTTP headers, without naming them or the signed bytes; the fake signs
Parse posts as the Event Webhook is signed (the same headers, over timestamp + raw body), which
is what the edge verifies (docs/decisions/0041-edge-fails-closed.md)."""

from __future__ import annotations

import base64
import json
import os
import secrets
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


# SendGrid's own boundary for Inbound Parse posts.
PARSE_BOUNDARY = "xYzZY"


def multipart_form(fields: dict[str, str | bytes], boundary: str = PARSE_BOUNDARY) -> bytes:
    """multipart/form-data as Inbound Parse posts it: one part per field, in the given order."""
    parts = []
    for name, value in fields.items():
        data = value.encode() if isinstance(value, str) else value
        if f"--{boundary}".encode() in data:
            raise ValueError(f"field {name} contains the boundary")
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def signed_parse_request(
    key: ec.EllipticCurvePrivateKey | None, fields: dict[str, str | bytes], timestamp: str
) -> tuple[bytes, dict[str, str]]:
    """The bytes and headers of an Inbound Parse post; signed when the policy has a key."""
    boundary = (
        PARSE_BOUNDARY
        if all(PARSE_BOUNDARY.encode() not in _bytes(v) for v in fields.values())
        else ("xYzZY" + secrets.token_hex(8))
    )
    body = multipart_form(fields, boundary)
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "User-Agent": "Sendlib/1.0"}
    if key is not None:
        headers |= {SIGNATURE_HEADER: sign(key, body, timestamp), TIMESTAMP_HEADER: timestamp}
    return body, headers


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value
