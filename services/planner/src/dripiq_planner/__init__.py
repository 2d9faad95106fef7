"""dripiq planner service."""
