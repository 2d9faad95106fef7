"""dripiq scheduler service."""
