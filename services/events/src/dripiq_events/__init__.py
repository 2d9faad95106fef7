"""dripiq events service."""
