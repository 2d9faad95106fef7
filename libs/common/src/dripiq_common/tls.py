"""TLS for gRPC: server credentials that pick up rotated files, and channel credentials that
present our own certificate (mutual TLS between the suite's services).

Certificates are files (cert-manager writes them into a Secret volume and rotates them in place):
the server reads them again, for the next handshake, whenever one of them changes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: this process's certificate chain and key, and the CA that signs the suite's
    certificates (to verify peers)."""

    cert: Path
    key: Path
    ca: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        return self.cert.read_bytes(), self.key.read_bytes(), self.ca.read_bytes()

    def stamp(self) -> tuple[tuple[int, int], ...]:
        """What changes when any of the files is replaced or rewritten."""
        stats = [p.stat() for p in (self.cert, self.key, self.ca)]
        return tuple((s.st_mtime_ns, s.st_ino) for s in stats)


@dataclass
class ReloadingServerCredentials:
    """Server credentials whose certificate, key and client CA are read again when the files
    change; a half-written rotation (unreadable files) keeps the previous ones."""

    files: TlsFiles
    # On: only a client certificate the CA signed gets a connection (the internal port). Off:
    # no client certificate is asked for (the public port; callers bring a bearer token).
    require_client_cert: bool = False
    _stamp: tuple[tuple[int, int], ...] = field(default=(), init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(), self._fetch, require_client_authentication=self.require_client_cert
        )

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        cert, key, ca = self.files.read()
        self._stamp = self.files.stamp()
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        # gRPC asks before every handshake, from its own threads.
        with self._lock:
            try:
                if self.files.stamp() == self._stamp:
                    return None
                configuration = self._configuration()
            except (OSError, ValueError) as exc:
                log.warning("tls.reload_failed", cert=str(self.files.cert), error=repr(exc))
                return None
        log.info("tls.reloaded", cert=str(self.files.cert))
        return configuration


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """A client's credentials: the suite's CA to verify servers, and our certificate for mTLS."""
    cert, key, ca = files.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


class FixedChannel:
    """A channel that never changes (plaintext, or credentials that do not rotate)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel

    def get(self) -> grpc.aio.Channel:
        return self._channel

    async def close(self) -> None:
        await self._channel.close()


class ReloadingChannel:
    """A mutual-TLS channel whose certificate is read again when its files change: the first
    call after a rotation opens a new channel, and the old one is closed once the calls it
    carries have had `grace_seconds` to finish."""

    def __init__(
        self, address: str, files: TlsFiles, *, grace_seconds: float = 30.0, check_seconds: float = 5.0
    ) -> None:
        self.address = address
        self.files = files
        self.grace_seconds = grace_seconds
        # The files are looked at no more often than this: a call costs no file system access.
        self.check_seconds = check_seconds
        self._checked = time.monotonic()
        self._stamp = files.stamp()
        self._channel = grpc.aio.secure_channel(address, channel_credentials(files))
        self._retired: set[asyncio.Task[None]] = set()

    def get(self) -> grpc.aio.Channel:
        now = time.monotonic()
        if now - self._checked < self.check_seconds:
            return self._channel
        self._checked = now
        try:
            stamp = self.files.stamp()
        except OSError:
            return self._channel  # mid-rotation: keep the channel that works
        if stamp != self._stamp:
            try:
                fresh = grpc.aio.secure_channel(self.address, channel_credentials(self.files))
            except (OSError, ValueError) as exc:
                log.warning("tls.client_reload_failed", address=self.address, error=repr(exc))
                return self._channel
            old, self._channel, self._stamp = self._channel, fresh, stamp
            task = asyncio.get_running_loop().create_task(self._retire(old))
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)
            log.info("tls.client_reloaded", address=self.address, cert=str(self.files.cert))
        return self._channel

    async def _retire(self, channel: grpc.aio.Channel) -> None:
        await asyncio.sleep(self.grace_seconds)
        await channel.close()

    async def close(self) -> None:
        for task in list(self._retired):
            task.cancel()
        await self._channel.close()
