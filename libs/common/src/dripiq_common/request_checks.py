"""What every gRPC request must be before any handler or access rule sees it.

Two things no handler should have to remember:

- the tenant a request names is a well-formed tenant id: it becomes a subject token, a header
  and a row key, so a malformed one ("acme\\n") is refused at the door;
- no text field holds a NUL character: PostgreSQL text cannot store one, so it would otherwise
  surface as an internal error deep in a transaction.

Both are INVALID_ARGUMENT naming the field. The NUL check looks at the raw request first (a
NUL in a string is a 0x00 byte on the wire), so a clean request costs one byte search.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from dripiq_common import validation
from dripiq_common.authz import tenant_of, tenant_path
from dripiq_common.errors import InvalidArgument
from dripiq_common.proto_text import nul_fields


@dataclass(frozen=True)
class Refused:
    """What the checking deserializer hands on instead of a request it refuses."""

    error: InvalidArgument


def checking_deserializer(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """`deserialize`, then the NUL check on what it gave; a refused request becomes Refused."""

    def checked(raw: bytes) -> Any:
        request = deserialize(raw)
        if b"\x00" in raw and isinstance(request, Message):
            for path in nul_fields(request):
                return Refused(InvalidArgument(path, "must not contain NUL characters"))
        return request

    return checked


def check_request(request: Any) -> None:
    """Raise InvalidArgument for a request Refused by the deserializer or naming a malformed
    tenant. An empty tenant is left to the handler, which says it is required."""
    if isinstance(request, Refused):
        raise request.error
    if not isinstance(request, Message):
        return
    tenant = tenant_of(request)
    if tenant:
        validation.tenant_id(tenant, ".".join(tenant_path(request.DESCRIPTOR) or ("tenant_id",)))
