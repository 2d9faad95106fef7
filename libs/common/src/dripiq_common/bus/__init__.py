"""NATS JetStream for every process of the suite, in three parts.

- `contract`: what is on the bus: streams, subjects, consumer settings, dead-letter headers,
  payload decoding (the public contract of docs/streams.md).
- `client`: the connection and the plumbing around it: connect, publish in bulk, ensure
  streams, drain.
- `worker`: `PullWorker`, which consumes a durable pull consumer and acks, retries or
  dead-letters each message.
"""
