"""The committed generated code matches protos/: regenerating changes nothing."""

from __future__ import annotations

from dripiq_devtools import protos


def test_generated_contracts_are_current() -> None:
    assert protos.check() == [], "run `make protos` and commit the result"
