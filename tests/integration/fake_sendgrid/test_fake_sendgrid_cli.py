"""The fake run as `python -m dripiq_devtools.fake_sendgrid`: it serves until SIGTERM and posts
events by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from fake_sendgrid_support import API_KEY, Receiver, valid_payload
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook
from waiting import eventually

from dripiq_devtools.fake_sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER, FakeSendGrid


@contextlib.asynccontextmanager
async def fake_process(*args: str) -> AsyncIterator[tuple[str, str]]:
    """The fake run as `python -m` on a free port, yielding the URL and public key it prints.

    It is stopped with SIGTERM and must exit 0."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dripiq_devtools.fake_sendgrid",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        url_line = await asyncio.wait_for(process.stdout.readline(), timeout=10)
        key_line = await asyncio.wait_for(process.stdout.readline(), timeout=5)
        yield url_line.decode().split()[-1], key_line.decode().split()[-1]
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        exit_code = await asyncio.wait_for(process.wait(), timeout=10)
    assert exit_code == 0


async def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    key_file = tmp_path / "sendgrid.pem"
    async with fake_process("--private-key-file", str(key_file)) as (url, printed_key):
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/_fake/public-key") as resp:
                public_key = (await resp.json())["public_key"]

    assert url.startswith("http://127.0.0.1:")
    assert printed_key == public_key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert FakeSendGrid(private_key_pem=key_file.read_bytes()).public_key_base64 == public_key


async def test_cli_posts_events_by_itself(receiver: Receiver) -> None:
    authenticated = ("--authenticate", f"{API_KEY}=dripiq.test")
    async with fake_process(*authenticated, "--webhook-url", receiver.url, "--auto-events-delay", "0.05") as (
        url,
        public_key,
    ):
        client = SendGridAPIClient(API_KEY, host=url)
        await asyncio.to_thread(client.client.mail.send.post, request_body=valid_payload())
        await eventually(lambda: len(receiver.events) == 2)

    assert [e["event"] for e in receiver.events] == ["processed", "delivered"]
    verifier = EventWebhook(public_key)
    assert all(
        verifier.verify_signature(p.body.decode(), p.headers[SIGNATURE_HEADER], p.headers[TIMESTAMP_HEADER])
        for p in receiver.requests
    )
