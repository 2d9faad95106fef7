"""The tests' in-process gRPC servers as the services run them: TLS on a public and an internal
port, callers' tokens and each service's access rules (docs/security.md). One development CA
and token issuer serve the whole run; callers here are operators unless a test says otherwise.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import grpc

from dripiq_common.auth import JwtVerifier
from dripiq_common.authz import Access
from dripiq_common.grpc_security import security_for
from dripiq_common.grpc_server import ServerSecurity
from dripiq_common.tls import ReloadingChannel
from dripiq_devtools.suite_security import SuiteSecurity

SERVICES = ("planner", "dispatcher", "events", "scheduler")


@functools.cache
def pki() -> SuiteSecurity:
    folder = Path(tempfile.mkdtemp(prefix="dripiq-test-pki-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return SuiteSecurity.create(folder, SERVICES)


def server_security(policies: Mapping[str, Access] | None = None, *, serves_as: str = "dispatcher") -> ServerSecurity:
    """What `GrpcServer(security=...)` takes: the certificate of `serves_as`, the run's issuer,
    the suite's services known by their certificates, and `policies`."""
    issuer = pki().issuer
    return security_for(
        pki().certificates[serves_as],
        JwtVerifier(issuer=issuer.issuer, audience=issuer.audience, public_keys=[issuer.public_key()]),
        SERVICES,
        internal_address="127.0.0.1:0",
        policies=policies or {},
    )


def caller_channel(address: str, *, token: str | None = None) -> grpc.aio.Channel:
    """A caller outside the suite on a public port: TLS, every call with `token` (an operator's
    by default, who may act for every tenant)."""
    return grpc.aio.secure_channel(address, pki().credentials(token or pki().operator_token()))


def service_channel(address: str, service: str = "planner") -> ReloadingChannel:
    """One of the suite's services on an internal port: mutual TLS with its certificate."""
    return ReloadingChannel(address, pki().certificates[service])
