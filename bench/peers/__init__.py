"""Peers for the scheduler benchmark: BullMQ and arq on a private Redis, same workload (see run_peers.py)."""
