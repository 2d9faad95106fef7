"""Which gRPC status a caller sees for an exception: the domain errors' codes, UNAVAILABLE when
PostgreSQL is unreachable, INTERNAL for the rest (INVALID_ARGUMENT names the field)."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import sqlalchemy.exc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from dripiq_common.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)

_CODES: list[tuple[type[DomainError], int]] = [
    (InvalidArgument, code_pb2.INVALID_ARGUMENT),
    (NotFound, code_pb2.NOT_FOUND),
    (AlreadyExists, code_pb2.ALREADY_EXISTS),
    (FailedPrecondition, code_pb2.FAILED_PRECONDITION),
    (Unavailable, code_pb2.UNAVAILABLE),
    (ResourceExhausted, code_pb2.RESOURCE_EXHAUSTED),
]


def status_for(exc: Exception) -> status_pb2.Status:
    """The google.rpc.Status a caller sees for an exception; INVALID_ARGUMENT names the field."""
    for kind, code in _CODES:
        if isinstance(exc, kind):
            status = status_pb2.Status(code=code, message=str(exc))
            if (detail := _detail(exc)) is not None:
                packed = any_pb2.Any()
                packed.Pack(detail)
                status.details.append(packed)
            return status
    if refused_by_database(exc):
        # Input a check let through but PostgreSQL refuses (a value out of range, say): the
        # caller's to fix, and nothing was stored. The field is not known here.
        return status_for(InvalidArgument("request", "holds a value that cannot be stored"))
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
    return any(
        isinstance(e, _CONNECTION_ERRORS) or (isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated)
        for e in _chain(exc)
    )


def _detail(exc: DomainError) -> Message | None:
    """The google.rpc error detail a status carries: which field (BadRequest), which quota
    (QuotaFailure)."""
    if isinstance(exc, InvalidArgument):
        violation = error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=exc.description)
        return error_details_pb2.BadRequest(field_violations=[violation])
    if isinstance(exc, ResourceExhausted):
        quota = error_details_pb2.QuotaFailure.Violation(subject=exc.subject, description=exc.description)
        return error_details_pb2.QuotaFailure(violations=[quota])
    return None


def refused_by_database(exc: BaseException) -> bool:
    """Whether PostgreSQL refused the data itself (SQLSTATE class 22, data exception: a NUL in
    text, a value out of range, an invalid UUID): the same data will be refused every time."""
    return any(isinstance(e, asyncpg.exceptions.DataError) for e in _chain(exc))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it wraps: SQLAlchemy's `orig`, else the cause or context."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
