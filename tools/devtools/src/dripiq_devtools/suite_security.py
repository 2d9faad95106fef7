"""The suite's security under `make run` and the tests: a development CA with a certificate per
service, a token issuer the services trust, and the channels and tokens callers use.

What production gets from cert-manager and its identity provider (docs/security.md).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from dripiq_common.auth import ALL_TENANTS
from dripiq_common.bus.access import SETUP_USER, USERS, server_config
from dripiq_common.tls import TlsFiles
from dripiq_devtools.dev_pki import DevCA, DevIssuer
from dripiq_devtools.servers import nats_tls_config

# The token `make run` writes for grpcurl: an operator, for every tenant.
DEV_TOKEN_ROLES = ("operator", "admin")


@dataclass
class SuiteSecurity:
    folder: Path
    ca: DevCA
    issuer: DevIssuer
    certificates: dict[str, TlsFiles] = field(default_factory=dict)
    # A NATS password per process and for the set-up user (dripiq_common.bus.access).
    nats_passwords: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, folder: Path, services: Sequence[str]) -> SuiteSecurity:
        """New CA, certificates and issuer key under `folder` (a new run gets new ones)."""
        ca = DevCA.create(folder)
        security = cls(folder, ca, DevIssuer.create(folder))
        for name in services:
            security.certificates[name] = ca.issue(folder, name)
        security.nats_passwords = {name: secrets.token_urlsafe(18) for name in [SETUP_USER, *USERS]}
        security.certificates["nats"] = ca.issue(folder, "nats")
        return security

    def nats_config(self) -> str:
        """Users with their allow-lists, and TLS required of every client."""
        files = self.certificates["nats"]
        return server_config(self.nats_passwords) + nats_tls_config(files.cert, files.key)

    def nats_url(self, server_url: str, user: str) -> str:
        """`server_url` with `user`'s credentials (SETUP_USER: the one allowed to set the bus up)."""
        return server_url.replace("nats://", f"nats://{user}:{self.nats_passwords[user]}@", 1)

    def env(self) -> dict[str, str]:
        """What every process reads: the CA, and who issues callers' tokens."""
        return {
            "TLS_CA_FILE": str(self.ca.path),
            "NATS_CA_FILE": str(self.ca.path),
            "AUTH_JWT_ISSUER": self.issuer.issuer,
            "AUTH_JWT_AUDIENCE": self.issuer.audience,
            "AUTH_JWT_PUBLIC_KEYS_FILE": str(self.issuer.public_key_path),
        }

    def process_env(self, service: str) -> dict[str, str]:
        files = self.certificates[service]
        return {"TLS_CERT_FILE": str(files.cert), "TLS_KEY_FILE": str(files.key)}

    def token(self, subject: str, *, tenants: Sequence[str], roles: Sequence[str] = ()) -> str:
        return self.issuer.token(subject, tenants=tenants, roles=roles)

    def operator_token(self) -> str:
        return self.token("dev-operator", tenants=[ALL_TENANTS], roles=DEV_TOKEN_ROLES)

    def credentials(self, token: str | None = None) -> grpc.ChannelCredentials:
        """TLS trusting the development CA; with `token`, every call carries it as a bearer."""
        tls = grpc.ssl_channel_credentials(root_certificates=self.ca.path.read_bytes())
        if token is None:
            return tls
        return grpc.composite_channel_credentials(tls, grpc.access_token_call_credentials(token))
