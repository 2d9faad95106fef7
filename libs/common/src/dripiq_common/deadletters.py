"""Dead letters for operators: see what could never be handled, and once the cause is fixed,
send it back to the consumer that gave up on it (or drop it).

    python -m dripiq_common.deadletters list [--consumer NAME] [--limit 50]
    python -m dripiq_common.deadletters replay SEQ [SEQ ...]
    python -m dripiq_common.deadletters replay --all [--consumer NAME]
    python -m dripiq_common.deadletters drop SEQ [SEQ ...]

It connects to `NATS_URL` (or `--nats-url`). A dead letter is the original payload on
`dripiq.dlq.<stream>.<consumer>` with the original headers and `Dripiq-Original-Subject`,
`Dripiq-Original-Sequence`, `Dripiq-Delivered` and `Dripiq-Error`. Replaying publishes the
payload and the original headers on the original subject again, waits for JetStream to hold
it, and only then deletes the dead letter: every handler is safe to repeat, so a replay that
is interrupted and run again does no harm.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from dripiq_common.bus.client import connect
from dripiq_common.bus.contract import (
    DEAD_LETTER_PREFIX,
    DELIVERED_HEADER,
    ERROR_HEADER,
    ORIGINAL_SEQUENCE_HEADER,
    ORIGINAL_SUBJECT_HEADER,
    Streams,
    own_headers,
)

STREAM = Streams.DEAD_LETTERS.name
REPLAYED_FROM = "Dripiq-Replayed-From"
# Written for the dead letter itself, not carried back to the original subject.
_DEAD_LETTER_HEADERS = frozenset({ORIGINAL_SUBJECT_HEADER, ORIGINAL_SEQUENCE_HEADER, DELIVERED_HEADER, ERROR_HEADER})


@dataclass(frozen=True)
class DeadLetter:
    sequence: int
    stream: str
    consumer: str
    original_subject: str
    error: str
    delivered: str
    at: datetime | None
    data: bytes
    headers: dict[str, str]

    def replay_headers(self) -> dict[str, str]:
        """The original headers, a new dedupe id (a second replay of this dead letter inside
        the duplicate window is dropped by JetStream) and where the message came back from."""
        kept = {k: v for k, v in own_headers(self.headers).items() if k not in _DEAD_LETTER_HEADERS}
        return {**kept, "Nats-Msg-Id": f"dlq-replay:{self.sequence}", REPLAYED_FROM: str(self.sequence)}


def _filter(consumer: str | None) -> str:
    return f"{DEAD_LETTER_PREFIX}.*.{consumer}" if consumer else f"{DEAD_LETTER_PREFIX}.>"


def _dead_letter(raw) -> DeadLetter:
    headers = dict(raw.headers or {})
    _, _, stream, consumer = (raw.subject.split(".", 3) + ["", "", "", ""])[:4]
    return DeadLetter(
        sequence=raw.seq,
        stream=stream,
        consumer=consumer,
        original_subject=headers.get(ORIGINAL_SUBJECT_HEADER, ""),
        error=headers.get(ERROR_HEADER, ""),
        delivered=headers.get(DELIVERED_HEADER, ""),
        at=raw.time,
        data=raw.data or b"",
        headers=headers,
    )


async def dead_letters(js: JetStreamContext, *, consumer: str | None = None, limit: int = 100) -> list[DeadLetter]:
    """Up to `limit` dead letters, oldest first, of one consumer or of all."""
    found: list[DeadLetter] = []
    sequence = max(1, (await js.stream_info(STREAM)).state.first_seq)
    while len(found) < limit:
        try:
            raw = await js.get_msg(STREAM, seq=sequence, subject=_filter(consumer), next=True)
        except NotFoundError:
            break
        found.append(_dead_letter(raw))
        if raw.seq is None:
            break
        sequence = raw.seq + 1
    return found


async def get(js: JetStreamContext, sequence: int) -> DeadLetter:
    """One dead letter by its sequence in DEAD_LETTERS; NotFoundError if there is none."""
    raw = await js.get_msg(STREAM, seq=sequence)
    if not raw.subject or not raw.subject.startswith(f"{DEAD_LETTER_PREFIX}."):
        raise NotFoundError
    return _dead_letter(raw)


async def replay(js: JetStreamContext, letter: DeadLetter) -> None:
    """Publish the dead letter on its original subject and, once JetStream holds it, delete it."""
    if not letter.original_subject:
        raise ValueError(f"dead letter {letter.sequence} does not name its original subject")
    await js.publish(letter.original_subject, letter.data, headers=letter.replay_headers())
    await js.delete_msg(STREAM, letter.sequence)


async def drop(js: JetStreamContext, sequence: int) -> None:
    await js.delete_msg(STREAM, sequence)


def _line(letter: DeadLetter) -> str:
    at = letter.at.strftime("%Y-%m-%d %H:%M:%S") if letter.at else "?"
    error = letter.error.replace("\n", " ")
    return (
        f"{letter.sequence:>8}  {at}  {letter.stream}/{letter.consumer}  {letter.original_subject}  "
        f"delivered {letter.delivered or '?'}  {len(letter.data)} B  {error[:200]}"
    )


async def _main(args: argparse.Namespace) -> int:
    nc = await connect(args.nats_url, name="dripiq-deadletters", ca_file=os.environ.get("NATS_CA_FILE", ""))
    js = nc.jetstream()
    try:
        if args.command == "list":
            letters = await dead_letters(js, consumer=args.consumer, limit=args.limit)
            for letter in letters:
                print(_line(letter))
            print(f"{len(letters)} dead letter(s)" + (" shown (--limit)" if len(letters) == args.limit else ""))
            return 0
        if args.command == "replay" and args.all:
            letters = await dead_letters(js, consumer=args.consumer, limit=args.limit)
        else:
            letters = []
            for sequence in args.sequences:
                try:
                    letters.append(await get(js, sequence))
                except NotFoundError:
                    print(f"no dead letter {sequence}", file=sys.stderr)
                    return 1
        unreplayable = 0
        for letter in letters:
            if args.command == "replay" and not letter.original_subject:
                # E.g. a timer the scheduler could never publish: fix its cause, then drop it.
                print(f"cannot replay {letter.sequence}: it names no original subject", file=sys.stderr)
                unreplayable += 1
            elif args.command == "replay":
                await replay(js, letter)
                print(f"replayed {letter.sequence} onto {letter.original_subject}")
            else:
                await drop(js, letter.sequence)
                print(f"dropped {letter.sequence} ({letter.original_subject})")
        return 1 if unreplayable else 0
    finally:
        await nc.drain()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dripiq_common.deadletters",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--nats-url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="show dead letters, oldest first")
    listing.add_argument("--consumer", help="only this consumer's (its durable name)")
    listing.add_argument("--limit", type=int, default=50)
    replaying = commands.add_parser("replay", help="publish dead letters on their original subjects again")
    replaying.add_argument("sequences", nargs="*", type=int, metavar="SEQ")
    replaying.add_argument("--all", action="store_true", help="every dead letter (of --consumer), up to --limit")
    replaying.add_argument("--consumer")
    replaying.add_argument("--limit", type=int, default=1000)
    dropping = commands.add_parser("drop", help="delete dead letters for good")
    dropping.add_argument("sequences", nargs="+", type=int, metavar="SEQ")
    args = parser.parse_args(argv)
    if args.command == "replay" and bool(args.sequences) == bool(args.all):
        parser.error("replay takes either sequence numbers or --all")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(_main(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
