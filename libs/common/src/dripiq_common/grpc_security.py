"""A service's gRPC security from its settings: the server side (TLS on a public and an internal
port, bearer tokens, per-method access) and the channels it opens to the suite's other services
(mutual TLS to their internal port).

Nothing starts without TLS and authentication unless DRIPIQ_DEV_INSECURE is true: a process
started by hand, by Kubernetes or by a test harness that forgot its certificates stops with a
message naming what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
import structlog

from dripiq_common.audit import AuditTrail
from dripiq_common.auth import JwtVerifier
from dripiq_common.authz import Access, Authenticator
from dripiq_common.grpc_server import ServerSecurity
from dripiq_common.settings import ServiceSettings
from dripiq_common.tls import FixedChannel, ReloadingChannel, ReloadingServerCredentials, TlsFiles

log = structlog.get_logger(__name__)

INSECURE_HINT = "or DRIPIQ_DEV_INSECURE=true, for local development only"


def tls_files(settings: ServiceSettings) -> TlsFiles:
    missing = [
        name
        for name, value in (
            ("TLS_CERT_FILE", settings.tls_cert_file),
            ("TLS_KEY_FILE", settings.tls_key_file),
            ("TLS_CA_FILE", settings.tls_ca_file),
        )
        if not value
    ]
    if missing:
        raise SystemExit(f"gRPC needs TLS: set {', '.join(missing)} ({INSECURE_HINT})")
    files = TlsFiles(Path(settings.tls_cert_file), Path(settings.tls_key_file), Path(settings.tls_ca_file))
    for path in (files.cert, files.key, files.ca):
        if not path.is_file():
            raise SystemExit(f"gRPC needs TLS: {path} is not a readable file")
    return files


def server_security(
    settings: ServiceSettings, policies: Mapping[str, Access], audit: AuditTrail | None = None
) -> ServerSecurity | None:
    """The server's security, or None (plaintext, no authentication) under DRIPIQ_DEV_INSECURE."""
    if settings.dev_insecure:
        log.warning("grpc.insecure", reason="DRIPIQ_DEV_INSECURE is true: plaintext, every caller trusted")
        return None
    files = tls_files(settings)
    if not settings.auth_jwt_issuer or not (settings.auth_jwt_public_keys_file or settings.auth_jwks_url):
        raise SystemExit(
            "gRPC needs to verify callers' tokens: set AUTH_JWT_ISSUER and AUTH_JWT_PUBLIC_KEYS_FILE or "
            f"AUTH_JWKS_URL ({INSECURE_HINT})"
        )
    keys = [Path(settings.auth_jwt_public_keys_file).read_text()] if settings.auth_jwt_public_keys_file else []
    verifier = JwtVerifier(
        issuer=settings.auth_jwt_issuer,
        audience=settings.auth_jwt_audience,
        public_keys=keys,
        jwks_url=settings.auth_jwks_url,
    )
    services = [name.strip() for name in settings.auth_service_names.split(",") if name.strip()]
    return security_for(
        files,
        verifier,
        services,
        internal_address=settings.grpc_internal_address,
        policies=policies,
        audit=audit,
    )


def security_for(
    files: TlsFiles,
    verifier: JwtVerifier,
    services: Sequence[str],
    *,
    internal_address: str,
    policies: Mapping[str, Access],
    audit: AuditTrail | None = None,
) -> ServerSecurity:
    """A server's security: `files` on the public port (bearer tokens checked by `verifier`) and
    on the internal one (client certificates of the CA required; `services` known by name)."""
    return ServerSecurity(
        public=ReloadingServerCredentials(files),
        internal=ReloadingServerCredentials(files, require_client_cert=True),
        internal_address=internal_address,
        authenticator=Authenticator(verifier, services),
        policies=policies,
        audit=audit,
    )


def service_channel(settings: ServiceSettings, address: str) -> FixedChannel | ReloadingChannel:
    """A channel to another service's internal port, presenting this service's certificate (read
    again when cert-manager rotates it)."""
    if settings.dev_insecure:
        return FixedChannel(grpc.aio.insecure_channel(address))
    return ReloadingChannel(address, tls_files(settings))
