"""NUL characters in protobuf text: PostgreSQL text cannot hold one, so a request or a bus
message carrying one is refused by name before it reaches a transaction."""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message


def nul_fields(message: Message, prefix: str = "") -> Iterator[str]:
    """The path of every string field (at any depth, in lists and maps too) holding a NUL."""
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.type == FieldDescriptor.TYPE_STRING:
            items = value if field.is_repeated else [value]
            for n, item in enumerate(items):
                if "\x00" in item:
                    yield f"{path}[{n}]" if field.is_repeated else path
        elif field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    if "\x00" in str(key) or (isinstance(item, str) and "\x00" in item):
                        yield f"{path}[{key!r}]"
                    elif isinstance(item, Message):
                        yield from nul_fields(item, f"{path}[{key!r}].")
                continue
            items = value if field.is_repeated else [value]
            for n, item in enumerate(items):
                yield from nul_fields(item, f"{path}[{n}]." if field.is_repeated else f"{path}.")
