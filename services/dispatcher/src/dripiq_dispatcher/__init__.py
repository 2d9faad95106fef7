"""dripiq dispatcher service."""
