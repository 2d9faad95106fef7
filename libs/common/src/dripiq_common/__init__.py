"""Shared plumbing for dripiq services."""
