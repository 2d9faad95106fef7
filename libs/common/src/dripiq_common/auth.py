"""Who is calling: the principal an RPC acts as, from a caller's bearer token (a JWT) or from
one of our own services' mTLS certificate.

A principal names the tenants it may act for and its roles; the tenant of a request is never
taken on trust from the request alone (dripiq_common.authz checks one against the other).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import jwt
from jwt import PyJWKClient

# A principal with this among its tenants may act for every tenant (our services, operators).
ALL_TENANTS = "*"
# Signature algorithms accepted from callers: asymmetric only, so a verifier never holds a key
# that could sign.
ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA")


class Role(StrEnum):
    # A tenant's administrator: sender identities, rate limits, suppression removal and import,
    # tenant settings.
    ADMIN = "admin"
    # One of our own services: acts for any tenant, calls the scheduler.
    SERVICE = "service"
    # A person who runs the suite: what a service may do, and every admin method.
    OPERATOR = "operator"


class Unauthenticated(Exception):
    """No usable credentials: the caller is told UNAUTHENTICATED, with the reason."""


@dataclass(frozen=True)
class Principal:
    subject: str
    tenants: frozenset[str]
    roles: frozenset[Role] = frozenset()

    def may_act_for(self, tenant_id: str) -> bool:
        return ALL_TENANTS in self.tenants or tenant_id in self.tenants

    def has_any(self, roles: frozenset[Role]) -> bool:
        return bool(self.roles & roles)


def service_principal(name: str) -> Principal:
    """One of our own services, known by its certificate or its service token."""
    return Principal(subject=f"service:{name}", tenants=frozenset({ALL_TENANTS}), roles=frozenset({Role.SERVICE}))


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """The principal a verified token stands for.

    Claims: `sub` (required), `tenants` (a list of tenant ids, or ["*"]; a single `tenant_id`
    is read as a list of one) and `roles` (a list of Role values; unknown roles are ignored, so
    an issuer may carry roles of other systems).
    """
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated("the token has no subject (sub)")
    tenants = claims.get("tenants", [claims["tenant_id"]] if "tenant_id" in claims else [])
    if isinstance(tenants, str) or not isinstance(tenants, list) or not all(isinstance(t, str) for t in tenants):
        raise Unauthenticated("the token's tenants claim must be a list of tenant ids")
    roles = claims.get("roles", [])
    if isinstance(roles, str) or not isinstance(roles, list):
        raise Unauthenticated("the token's roles claim must be a list")
    known = {role.value for role in Role}
    return Principal(subject, frozenset(tenants), frozenset(Role(r) for r in roles if r in known))


@dataclass
class JwtVerifier:
    """Checks a caller's bearer token: its signature against `public_keys` (PEM, or a JWKS
    document) or the keys behind `jwks_url`, and its issuer, audience and expiry.

    Tokens without an expiry are refused: a leaked token must stop working by itself.
    """

    issuer: str
    audience: str
    public_keys: Sequence[str] = ()
    jwks_url: str = ""
    # Clock skew tolerated on exp, nbf and iat, in seconds.
    leeway: float = 30.0
    _static: list[Any] = field(default_factory=list, init=False)
    _jwks: PyJWKClient | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not self.public_keys and not self.jwks_url:
            raise ValueError("a JWT verifier needs public keys or a JWKS URL")
        for text in self.public_keys:
            self._static.extend(_keys_of(text))
        if self.jwks_url:
            self._jwks = PyJWKClient(self.jwks_url, cache_keys=True, lifespan=300, timeout=5)

    def principal(self, token: str) -> Principal:
        """The token's principal; Unauthenticated saying why when it is not acceptable.

        With a JWKS URL the first token of a new key id fetches the key set (blocking, at most
        `timeout`): call it off the event loop (asyncio.to_thread) when jwks_url is set.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the bearer token is not a JWT: {exc}") from None
        if header.get("alg") not in ALGORITHMS:
            raise Unauthenticated(f"the token's algorithm {header.get('alg')!r} is not accepted")
        options = {"require": ["exp", "iss", "aud", "sub"]}
        candidates = self._candidates(token, header)
        problem = "no key verifies the token's signature"
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=list(ALGORITHMS),
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=self.leeway,
                    options=options,  # type: ignore[arg-type]
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise Unauthenticated("the token has expired") from None
            except jwt.PyJWTError as exc:
                raise Unauthenticated(f"the token is not acceptable: {exc}") from None
            return principal_from_claims(claims)
        raise Unauthenticated(problem)

    def _candidates(self, token: str, header: Mapping[str, Any]) -> list[Any]:
        kid = header.get("kid")
        keys = [k for k in self._static if kid is None or getattr(k, "key_id", None) in (None, kid)]
        keys = [getattr(k, "key", k) for k in keys]
        if self._jwks is not None:
            try:
                keys.append(self._jwks.get_signing_key_from_jwt(token).key)
            except jwt.PyJWKClientError as exc:
                if not keys:
                    raise Unauthenticated(f"no key for the token: {exc}") from None
        return keys


def _keys_of(text: str) -> list[Any]:
    """A PEM public key, or every key of a JWKS document (each keeps its kid)."""
    stripped = text.strip()
    if stripped.startswith("{"):
        return list(jwt.PyJWKSet.from_dict(json.loads(stripped)).keys)
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    return [load_pem_public_key(stripped.encode())]


def bearer_token(metadata: Sequence[tuple[str, str | bytes]]) -> str | None:
    """The token of an `authorization: Bearer <token>` header, None without one."""
    for key, value in metadata:
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("the authorization header must be 'Bearer <token>'")
            return token.strip()
    return None
