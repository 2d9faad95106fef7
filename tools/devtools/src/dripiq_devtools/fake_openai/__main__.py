"""The fake OpenAI run as a process until SIGTERM: `python -m dripiq_devtools.fake_openai --port 8026`."""

from __future__ import annotations

import argparse
import asyncio

from dripiq_devtools.fake_openai.server import FakeOpenAI

DEFAULT_PORT = 8026


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dripiq_devtools.fake_openai",
        description="Local fake of OpenAI's Chat Completions API that answers with planner strategies "
        "and reply classifications.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--api-key", help="accept only this API key (default: any bearer token)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--retry-after", type=float, default=1.0, help="seconds a 429 asks clients to wait")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeOpenAI(api_key=args.api_key, latency_seconds=args.latency, retry_after_seconds=args.retry_after)

    def announce() -> None:
        print(f"fake OpenAI listening on {fake.url} (set OPENAI_BASE_URL={fake.url})", flush=True)

    await fake.serve_until_signal(args.host, args.port, announce=announce)


def main(argv: list[str] | None = None) -> int:
    asyncio.run(_serve(_parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
