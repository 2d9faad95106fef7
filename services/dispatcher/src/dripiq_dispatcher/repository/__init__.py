"""Dispatcher storage, one module per aggregate. Every query is scoped by tenant; writes that a
redelivery may repeat are upserts on the natural keys, and status changes name the status they
expect to leave."""

from dripiq_dispatcher.repository import campaign_states, forwards, identities, messages, rate_limits, suppressions

__all__ = ["campaign_states", "forwards", "identities", "messages", "rate_limits", "suppressions"]
