"""A development certificate authority, service certificates and bearer tokens, for `make run`
and the tests: what cert-manager and a real identity provider give in production.

Everything is made with `cryptography` (EC P-256) and PyJWT; nothing here is for production.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dripiq_common.tls import TlsFiles

DEV_ISSUER = "https://dripiq.dev.local"
DEV_AUDIENCE = "dripiq"


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if secret:
        path.chmod(0o600)


@dataclass(frozen=True)
class DevCA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    path: Path

    @classmethod
    def create(cls, folder: Path, *, days: int = 365) -> DevCA:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dripiq development CA")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        path = folder / "ca.pem"
        _write(path, cert.public_bytes(serialization.Encoding.PEM))
        _write(folder / "ca-key.pem", _pem_key(key), secret=True)
        return cls(key, cert, path)

    def issue(self, folder: Path, name: str, *, dns_names: Iterable[str] = (), days: int = 90) -> TlsFiles:
        """A certificate for a server and client named `name` (its common name and first DNS
        name), valid for 127.0.0.1 and localhost too."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        names = list(dict.fromkeys([name, *dns_names, "localhost"]))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(
                x509.SubjectAlternativeName(
                    [*(x509.DNSName(n) for n in names), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        files = TlsFiles(cert=folder / f"{name}.pem", key=folder / f"{name}-key.pem", ca=self.path)
        _write(files.key, _pem_key(key), secret=True)
        _write(files.cert, cert.public_bytes(serialization.Encoding.PEM))
        return files


@dataclass(frozen=True)
class DevIssuer:
    """Signs bearer tokens as an identity provider would (ES256), with its public key on file."""

    key: ec.EllipticCurvePrivateKey
    public_key_path: Path
    issuer: str = DEV_ISSUER
    audience: str = DEV_AUDIENCE

    @classmethod
    def create(cls, folder: Path) -> DevIssuer:
        key = ec.generate_private_key(ec.SECP256R1())
        path = folder / "token-issuer.pub.pem"
        _write(
            path,
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        )
        _write(folder / "token-issuer-key.pem", _pem_key(key), secret=True)
        return cls(key, path)

    def public_key(self) -> str:
        return self.public_key_path.read_text()

    def token(
        self,
        subject: str,
        *,
        tenants: Sequence[str],
        roles: Sequence[str] = (),
        ttl: dt.timedelta = dt.timedelta(hours=12),
        **claims: object,
    ) -> str:
        now = dt.datetime.now(dt.UTC)
        body = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "exp": now + ttl,
            "jti": str(uuid.uuid4()),
            "tenants": list(tenants),
            "roles": list(roles),
            **claims,
        }
        return jwt.encode(body, self.key, algorithm="ES256")
