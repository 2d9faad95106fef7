"""Which gRPC status a caller sees for an exception: the domain errors' codes, UNAVAILABLE when
PostgreSQL is unreachable, INTERNAL for the rest (INVALID_ARGUMENT names the field)."""

from __future__ import annotations

import asyncpg
import sqlalchemy.exc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from dripiq_common.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)

_CODES: list[tuple[type[DomainError], int]] = [
    (InvalidArgument, code_pb2.INVALID_ARGUMENT),
    (NotFound, code_pb2.NOT_FOUND),
    (AlreadyExists, code_pb2.ALREADY_EXISTS),
    (FailedPrecondition, code_pb2.FAILED_PRECONDITION),
    (ResourceExhausted, code_pb2.RESOURCE_EXHAUSTED),
]


def status_for(exc: Exception) -> status_pb2.Status:
    """The google.rpc.Status a caller sees for an exception; INVALID_ARGUMENT names the field."""
    for kind, code in _CODES:
        if isinstance(exc, kind):
            status = status_pb2.Status(code=code, message=str(exc))
            if isinstance(exc, InvalidArgument):
                detail = any_pb2.Any()
                detail.Pack(
                    error_details_pb2.BadRequest(
                        field_violations=[
                            error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=exc.description)
                        ]
                    )
                )
                status.details.append(detail)
            if isinstance(exc, ResourceExhausted):
                detail = any_pb2.Any()
                detail.Pack(
                    error_details_pb2.QuotaFailure(
                        violations=[
                            error_details_pb2.QuotaFailure.Violation(subject=exc.subject, description=exc.description)
                        ]
                    )
                )
                status.details.append(detail)
            return status
    if _unreachable(exc):
        # The caller may try again: nothing it asked for was done or half done.
        return status_pb2.Status(code=code_pb2.UNAVAILABLE, message="a backing service is unreachable; try again")
    return status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")


# What a lost or refused database connection raises (asyncpg's own, or the socket's), possibly
# wrapped by SQLAlchemy.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
)


def _unreachable(exc: BaseException) -> bool:
    """Whether `exc` is a backing service (PostgreSQL) being unreachable, not a bug."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _CONNECTION_ERRORS):
            return True
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
    return False
