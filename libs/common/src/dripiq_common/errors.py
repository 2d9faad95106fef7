"""Domain errors. Services raise these; one interceptor maps them to gRPC status codes."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a service means to show its caller."""


class NotFound(DomainError):
    """The object does not exist for this tenant (another tenant's object is NotFound too)."""


class AlreadyExists(DomainError):
    """A unique object exists already; the message names it."""


class FailedPrecondition(DomainError):
    """The object is in a state that does not allow the operation."""


class Unavailable(DomainError):
    """A backing provider did not answer; nothing was changed and the caller may try again."""


class InvalidArgument(DomainError):
    """One field of the input is wrong. `field` is its path, e.g. `contact.email`."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


class ResourceExhausted(DomainError):
    """A quota of the tenant's is spent. `subject` names it (e.g. `tenant:t1/ai_daily_calls`);
    the message says when it resets."""

    def __init__(self, subject: str, description: str) -> None:
        super().__init__(description)
        self.subject = subject
        self.description = description


class PermanentMessageError(Exception):
    """A bus message that can never be handled (undecodable, unknown kind): dead-letter it now."""
