"""Deterministic spread: the same seed always gives the same number, so a replayed request plans
the same times, while thousands of contacts planned alike do not land in the same second."""

from __future__ import annotations

import hashlib


def seeded_int(seed: str, nbytes: int = 8) -> int:
    """A number in [0, 2**(8 * nbytes)) fixed by `seed` (the first bytes of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:nbytes], "big")


def seeded_fraction(seed: str, nbytes: int = 4) -> float:
    """A share in [0, 1) fixed by `seed`."""
    return seeded_int(seed, nbytes) / 2 ** (8 * nbytes)
