"""The bus set-up step: every stream and every durable consumer of the contract, created or
brought up to date, by a NATS user allowed to (`make run` runs it before the processes; in
Kubernetes a Job does). The processes' own users only bind to what it made.

    python -m dripiq_common.bus.setup [--nats-url URL]   # default: $NATS_URL
"""

from __future__ import annotations

import argparse
import asyncio
import os

from nats.js.errors import BadRequestError

from dripiq_common.bus.client import connect, ensure_streams
from dripiq_common.bus.contract import Consumers, Streams


async def set_up(
    nats_url: str, *, replicas: int = 1, duplicate_window_seconds: float | None = None, ca_file: str = ""
) -> list[str]:
    """Streams and consumers; the names of the consumers it created."""
    nc = await connect(nats_url, name="bus-setup", ca_file=ca_file)
    try:
        js = nc.jetstream()
        await ensure_streams(js, Streams.all(), replicas=replicas, duplicate_window_seconds=duplicate_window_seconds)
        created = []
        for consumer in Consumers.all():
            try:
                await js.add_consumer(consumer.stream.name, consumer.config())
                created.append(consumer.durable)
            except BadRequestError:
                # It exists with another configuration: kept, as the workers have always done.
                pass
        return created
    finally:
        await nc.drain()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dripiq_common.bus.setup", description=__doc__.splitlines()[0])
    parser.add_argument("--nats-url", default=os.environ.get("NATS_URL"), help="default: $NATS_URL")
    parser.add_argument("--replicas", type=int, default=int(os.environ.get("JETSTREAM_REPLICAS", "1")))
    parser.add_argument("--nats-ca-file", default=os.environ.get("NATS_CA_FILE", ""), help="default: $NATS_CA_FILE")
    args = parser.parse_args(argv)
    if not args.nats_url:
        raise SystemExit("NATS_URL is not set (or pass --nats-url)")
    asyncio.run(set_up(args.nats_url, replicas=args.replicas, ca_file=args.nats_ca_file))
    print(f"{len(Streams.all())} streams and {len(Consumers.all())} consumers in place")


if __name__ == "__main__":
    main()
